"""Node splits for graph-to-MLP distillation: the Planetoid split and GLNN's inductive split.

- ``planetoid_split``: ``per_class`` labelled training nodes per class, ``num_val`` validation
  nodes, every other node a test node (the semi-supervised regime of Cora/CiteSeer/PubMed).
- ``inductive_split``: GLNN's production setting. A fraction ``rate`` of the test nodes is held
  out; the *observed* graph is the subgraph induced by the other nodes. Teachers and students train
  on the observed graph only; the held-out nodes (``test_ind``) appear at inference, the GNN with
  their edges back in the full graph, the MLP with their features alone.
- ``check_graph``: the errors a user can make with (x, edge_index, y), each as a clear ValueError.

Paper (inductive protocol): Zhang, Liu, Sun, Shah, "Graph-less Neural Networks: Teaching Old MLPs
New Tricks via Distillation", ICLR 2022, arXiv 2110.08727 (their ``graph_split``, rate 0.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cookbook.checks import check_edge_index


def check_graph(num_nodes: int, edge_index: torch.Tensor, x: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> None:
    """Raise a ValueError naming the mistake if the graph's pieces do not fit together.

    edge_index: int64 (2, E) with entries in 0..num_nodes-1; x: (num_nodes, F); y: (num_nodes,).
    Isolated nodes are allowed (GCN gives them their self loop only, SAGE a zero neighbour mean).
    """
    check_edge_index(edge_index, num_nodes, f"the graph has {num_nodes} nodes "
                     f"(node ids 0..{num_nodes - 1}; x and y need one row per node)")
    if x is not None and x.shape[0] != num_nodes:
        raise ValueError(f"x has {x.shape[0]} rows but the graph has {num_nodes} nodes: one feature row per node")
    if y is not None and y.shape[0] != num_nodes:
        raise ValueError(f"y has {y.shape[0]} labels but the graph has {num_nodes} nodes: one label per node")


@dataclass
class NodeSplit:
    """Indices (int64, sorted) into the graph's nodes: train, val and test are disjoint."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def __repr__(self) -> str:
        return f"NodeSplit(train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"


def planetoid_split(y: torch.Tensor, *, per_class: int = 20, num_val: int = 500, seed: int = 0) -> NodeSplit:
    """``per_class`` random training nodes per class, ``num_val`` random validation nodes, the rest test.

    A class with fewer than ``per_class + 1`` nodes gives half of its nodes (at least one stays
    out of training), so rare classes of a subgraph never empty the test set. Deterministic in ``seed``.
    """
    if per_class < 1 or num_val < 0:
        raise ValueError(f"per_class must be >= 1 and num_val >= 0, got {per_class}, {num_val}")
    g = torch.Generator().manual_seed(seed)
    train = []
    for c in torch.unique(y).tolist():
        nodes = (y == c).nonzero()[:, 0]
        k = min(per_class, len(nodes) // 2)
        train.append(nodes[torch.randperm(len(nodes), generator=g)[:k]])
    train = torch.cat(train)
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[train] = False
    rest = rest.nonzero()[:, 0]
    if num_val >= len(rest):
        raise ValueError(f"num_val={num_val} leaves no test nodes ({len(rest)} nodes are not in training)")
    rest = rest[torch.randperm(len(rest), generator=g)]
    return NodeSplit(train.sort().values, rest[:num_val].sort().values, rest[num_val:].sort().values)


def observed_subgraph(edge_index: torch.Tensor, observed: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Edges among the ``observed`` nodes, re-indexed to 0..len(observed)-1 in the order of ``observed``.

    An edge survives only if both of its ends are observed; this is what removes every trace of a
    held-out node from the training graph.
    """
    check_graph(num_nodes, edge_index)
    new_id = torch.full((num_nodes,), -1, dtype=torch.long)
    new_id[observed] = torch.arange(len(observed))
    src, dst = new_id[edge_index[0]], new_id[edge_index[1]]
    keep = (src >= 0) & (dst >= 0)
    return torch.stack([src[keep], dst[keep]])


@dataclass
class InductiveSplit:
    """GLNN's inductive setting.

    observed: ids (in the full graph) of the observed nodes = train + val + transductive test;
    test_ind: ids of the held-out test nodes (never seen in training, not even as neighbours);
    obs_edge_index: the observed graph's edges, re-indexed to positions in ``observed``;
    obs_train, obs_val, obs_test: positions in ``observed`` (index ``x[observed]`` with them).
    """

    observed: torch.Tensor
    test_ind: torch.Tensor
    obs_edge_index: torch.Tensor
    obs_train: torch.Tensor
    obs_val: torch.Tensor
    obs_test: torch.Tensor

    def __repr__(self) -> str:
        return (f"InductiveSplit(observed={len(self.observed)} nodes / {self.obs_edge_index.shape[1] // 2} "
                f"undirected edges, train={len(self.obs_train)}, val={len(self.obs_val)}, "
                f"test_tran={len(self.obs_test)}, test_ind={len(self.test_ind)})")


def inductive_split(split: NodeSplit, edge_index: torch.Tensor, num_nodes: int, *, rate: float = 0.2,
                    seed: int = 0) -> InductiveSplit:
    """Hold out ``rate`` of ``split.test`` as inductive test nodes and cut them out of the graph."""
    if not 0 < rate < 1:
        raise ValueError(f"rate (the fraction of test nodes held out) must be in (0, 1), got {rate}")
    g = torch.Generator().manual_seed(seed)
    perm = split.test[torch.randperm(len(split.test), generator=g)]
    cut = int(round(rate * len(perm)))
    test_ind, test_tran = perm[:cut].sort().values, perm[cut:].sort().values
    observed = torch.cat([split.train, split.val, test_tran])
    n1, n2 = len(split.train), len(split.val)
    pos = torch.arange(len(observed))
    return InductiveSplit(observed=observed, test_ind=test_ind,
                          obs_edge_index=observed_subgraph(edge_index, observed, num_nodes),
                          obs_train=pos[:n1], obs_val=pos[n1:n1 + n2], obs_test=pos[n1 + n2:])
