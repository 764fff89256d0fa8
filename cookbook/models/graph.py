"""Graph teachers (GCN, GraphSAGE via PyG), the MLP student, and VQGraph's graph tokenizer.

All models take node features ``x`` as a dense (N, F) tensor or a sparse CSR matrix: the WordNet
gloss features are 2,000-d with ~4 non-zeros per node, and a sparse first layer is ~20x faster on
a CPU than a dense one. Every model's first operation is therefore a linear map of ``x``
(``F.linear`` accepts both layouts); nothing else ever touches the raw features.

Needs the graph extra (``torch-geometric``); ``NodeMLP`` alone does not.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cookbook.data.graph_splits import check_graph


def sparse_features(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a sparse CSR matrix, the fast input layout for every model here (torch's "CSR
    support is in beta" warning is silenced: the two operations we use, ``F.linear`` and
    ``@``, are covered by the tests)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return x.to_sparse_csr()


class NodeMLP(nn.Module):
    """[Linear -> ReLU -> Dropout] * len(hidden) -> Linear: the graph-free student.

    Unlike the vision ``MLP`` it has dropout (2,000-d sparse inputs and a few hundred labels
    overfit at once without it) and no Flatten (which sparse inputs do not support).
    ``code_dim`` adds VQGraph's projection of the last hidden layer into the teacher's codebook
    space; it is used in training only (``embed``), never at inference.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (128,),
                 dropout: float = 0.5, code_dim: int | None = None):
        super().__init__()
        dims = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], num_classes)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dims[-1], code_dim) if code_dim else None

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, C), last hidden layer (N, H))."""
        h = x
        for layer in self.hidden:
            h = self.dropout(F.relu(layer(h)))
        return self.head(h), h

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor | None = None) -> torch.Tensor:
        """(N, F) -> (N, C). ``edge_index`` is accepted and ignored, so students and teachers share a call."""
        return self.embed(x)[0]


def _sage_conv():
    from torch_geometric.nn import SAGEConv

    class LinearFirstSAGEConv(SAGEConv):
        """PyG's ``SAGEConv`` (mean aggregation) computed as mean_j(W x_j) instead of W mean_j(x_j).

        Equal by linearity (a test checks it against ``SAGEConv``), with the same parameters, but
        ``x`` may be a sparse matrix and the neighbourhood mean runs over out_channels values instead
        of in_channels: out_i = W_l mean_{j in N(i)} x_j + b + W_r x_i. Isolated nodes get b + W_r x_i.
        """

        def forward(self, x, edge_index, size=None):
            h = F.linear(x, self.lin_l.weight)                       # (N, out) without bias
            out = self.propagate(edge_index, x=(h, h), size=size)    # neighbour mean
            if self.lin_l.bias is not None:
                out = out + self.lin_l.bias
            return out + self.lin_r(x) if self.root_weight else out

    return LinearFirstSAGEConv


class GNN(nn.Module):
    """A ``num_layers``-layer GCN or GraphSAGE (PyG convolutions), ReLU and dropout in between.

    kind: "gcn" (``GCNConv``: symmetric normalisation with self loops) or "sage" (``SAGEConv``,
    mean aggregator, computed linear-first). forward(x (N, F), edge_index (2, E)) -> logits (N, C).
    """

    def __init__(self, kind: str, in_features: int, num_classes: int, hidden: int = 128,
                 num_layers: int = 2, dropout: float = 0.5):
        super().__init__()
        from torch_geometric.nn import GCNConv

        if kind not in ("gcn", "sage"):
            raise ValueError(f"kind must be 'gcn' or 'sage', got {kind!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        conv = GCNConv if kind == "gcn" else _sage_conv()
        dims = [in_features] + [hidden] * (num_layers - 1) + [num_classes]
        self.kind = kind
        self.convs = nn.ModuleList(conv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        check_graph(x.shape[0], edge_index, x)
        h = x
        for k, conv in enumerate(self.convs):
            h = conv(h, edge_index)
            if k < len(self.convs) - 1:
                h = self.dropout(F.relu(h))
        return h


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantization with an EMA codebook (VQ-VAE, van den Oord et al. 2017).

    forward(h (N, D)) -> (quantized (N, D) with straight-through gradient, codes (N,), commitment
    loss beta * ||h - sg(e)||^2). Codes are unit vectors (VQGraph's released code uses a cosine
    codebook too): feed unit-norm h, so the nearest code is the most similar direction. In training
    the codebook follows the running mean of the vectors assigned to each code (decay 0.8, as in
    VQGraph's code), renormalised; it is initialised from random inputs on the first call, and a code
    whose running count falls below ``dead_below`` is restarted at a random input vector (without
    restarts many codes are never used on small graphs).
    """

    def __init__(self, num_codes: int, dim: int, *, decay: float = 0.8, beta: float = 0.25,
                 dead_below: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be >= 1, got {num_codes}, {dim}")
        self.decay, self.beta, self.dead_below, self.eps = decay, beta, dead_below, eps
        self.register_buffer("codebook", torch.zeros(num_codes, dim))
        self.register_buffer("ema_count", torch.zeros(num_codes))
        self.register_buffer("ema_sum", torch.zeros(num_codes, dim))
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    def assign(self, h: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each unit-norm row of h: (N, D) -> (N,).

        For unit vectors the nearest code in Euclidean distance is the one of largest cosine."""
        return (h @ self.codebook.t()).argmax(-1)

    @torch.no_grad()
    def _update(self, h: torch.Tensor, codes: torch.Tensor) -> None:
        count = torch.bincount(codes, minlength=self.num_codes).to(h.dtype)                 # (K,)
        total = torch.zeros_like(self.ema_sum).index_add_(0, codes, h)                        # (K, D)
        self.ema_count.lerp_(count, 1 - self.decay)
        self.ema_sum.lerp_(total, 1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n   # Laplace smoothing
        self.codebook.copy_(F.normalize(self.ema_sum / count[:, None], dim=-1))
        dead = (self.ema_count < self.dead_below).nonzero()[:, 0]
        if len(dead):
            pick = h[torch.randint(len(h), (len(dead),), device=h.device)]
            self.codebook[dead], self.ema_sum[dead], self.ema_count[dead] = pick, pick, 1.0

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training and not self.initialised:
            with torch.no_grad():
                pick = h[torch.randint(len(h), (self.num_codes,), device=h.device)]
                self.codebook.copy_(pick)
                self.ema_sum.copy_(pick)
                self.ema_count.fill_(1.0)
                self.initialised.fill_(True)
        codes = self.assign(h.detach())
        q = self.codebook[codes]                                              # (N, D)
        if self.training:
            self._update(h.detach(), codes)
        commit = self.beta * F.mse_loss(h, q.detach())
        return h + (q - h).detach(), codes, commit


@dataclass
class TokenizerOutput:
    """What one forward pass of ``GraphTokenizer`` gives.

    logits (N, C); embeddings (N, D): encoder output before quantization (the soft-code target);
    codes (N,): each node's token; losses: {"commit", "feature", "edge"} scalars (training terms).
    """

    logits: torch.Tensor
    embeddings: torch.Tensor
    codes: torch.Tensor
    losses: dict[str, torch.Tensor]


class GraphTokenizer(nn.Module):
    """VQGraph's structure-aware tokenizer: a GCN with a vector-quantized bottleneck.

        h = normalize(GCNConv(x))              encoder, D = code_dim, unit vectors
        e = VQ(h)                              the node's token: the nearest of K codes
        h_hat = W_h e                          node decoder: reconstruct the node's embedding
        u = W_u e;  A_hat_ij = sigmoid(u_i . u_j)   edge decoder: reconstruct the local structure
        logits = Linear(ReLU(GCNConv(u)))      classifier on the decoded tokens

    Training loss: CE on labelled nodes + the three terms ``run`` returns in ``losses`` (notebook 02
    weights all four by 1): "feature" = mean ||h - h_hat||^2, "edge" = mean (A_ij - A_hat_ij)^2
    over the edges and as many random non-edges, "commit" = the VQ commitment term.
    The teacher that VQGraph distils is this model: its logits (soft labels) and its codebook.

    Two departures, both for a 2-core CPU and a sparse 2,000-d input: the node decoder reconstructs
    the encoder output h, as the released code does (the paper writes the raw features); the edge
    term is estimated on sampled pairs instead of the dense N x N adjacency (900 MB at N = 15,000).

    Paper: Yang et al., "VQGraph: Rethinking Graph Representation Space for Bridging GNNs and
    MLPs", ICLR 2024, arXiv 2308.02117.
    """

    def __init__(self, in_features: int, num_classes: int, *, code_dim: int = 64, num_codes: int = 512,
                 hidden: int = 64, dropout: float = 0.5, beta: float = 0.25, decay: float = 0.8):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.encoder = GCNConv(in_features, code_dim)
        self.vq = VectorQuantizer(num_codes, code_dim, decay=decay, beta=beta)
        self.node_decoder = nn.Linear(code_dim, code_dim)
        self.edge_decoder = nn.Linear(code_dim, code_dim)
        self.conv = GCNConv(code_dim, hidden)
        self.head = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, D) unit-norm code vectors."""
        return self.vq.codebook

    def encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Unit-norm node embeddings h (N, D): what the codebook quantizes."""
        check_graph(x.shape[0], edge_index, x)
        return F.normalize(self.encoder(x, edge_index), dim=-1)

    def run(self, x: torch.Tensor, edge_index: torch.Tensor, *, num_edge_samples: int | None = None) -> TokenizerOutput:
        """The forward pass with everything a training step or an analysis needs (see TokenizerOutput)."""
        h = self.encode(x, edge_index)                                       # (N, D)
        q, codes, commit = self.vq(h)
        u = self.edge_decoder(q)                                             # (N, D)
        logits = self.head(self.dropout(F.relu(self.conv(self.dropout(u), edge_index))))
        losses = {"commit": commit}
        if self.training:
            losses["feature"] = F.mse_loss(self.node_decoder(q), h)
            losses["edge"] = self._edge_loss(u, edge_index, num_edge_samples)
        return TokenizerOutput(logits, h, codes, losses)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.run(x, edge_index).logits

    def _edge_loss(self, u: torch.Tensor, edge_index: torch.Tensor, num_samples: int | None) -> torch.Tensor:
        from torch_geometric.utils import negative_sampling

        pos = edge_index
        if num_samples is not None and pos.shape[1] > num_samples:
            pos = pos[:, torch.randperm(pos.shape[1], device=u.device)[:num_samples]]
        if pos.shape[1] == 0:
            return u.sum() * 0
        neg = negative_sampling(edge_index, num_nodes=u.shape[0], num_neg_samples=pos.shape[1])
        a_pos = torch.sigmoid((u[pos[0]] * u[pos[1]]).sum(-1))
        a_neg = torch.sigmoid((u[neg[0]] * u[neg[1]]).sum(-1))
        return torch.cat([(1 - a_pos) ** 2, a_neg ** 2]).mean()
