"""Graph-to-MLP distillation losses (notebook 02): a GNN teacher, an MLP student on node features.

Symbols (as in the notebook): z_i = teacher logits of node i (C classes), s_i = student logits,
E = the undirected edges, stored both ways in ``edge_index`` (2, |E|) as PyG does.

- GLNN (Zhang et al., ICLR 2022, arXiv 2110.08727) is Hinton KD on node logits:
  ``kd_loss(s, z, T=1, labels=y, alpha=1 - lambda)`` from ``cookbook.losses.logits``. No new
  function: the student sees soft labels on every node, hard labels where they exist.
- FF-G2M: ``low_frequency_loss``, ``high_frequency_loss`` and their mix ``ffg2m_loss``.
- VQGraph: ``soft_code_assignments`` and ``soft_code_loss`` over a tokenizer's codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.checks import (
    check_edge_index,
    check_labels,
    check_pair,
    check_temperature,
    check_tensor,
    check_unit_interval,
    check_values,
)


def _check_edges(edge_index: torch.Tensor, num_nodes: int) -> None:
    check_edge_index(edge_index, num_nodes,
                     f"the logits have {num_nodes} rows: edges must index rows of the logits")


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities (R, C) -> (R,)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def low_frequency_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, edge_index: torch.Tensor,
                       *, self_loops: bool = True) -> torch.Tensor:
    """FF-G2M low-frequency distillation: each node's student matches its neighbours' teacher.

        L_LFD = 1/|E'| sum_{(i,j) in E'} KL( softmax(z_j) || softmax(s_i) ),   E' = E + self loops

    Summed over the edges, this pulls s_i towards the teacher's predictions averaged over the
    neighbourhood N(i) + {i}: the smooth (low-frequency) part of the teacher's signal on the graph.
    With ``self_loops`` the node's own teacher is one of the targets (so isolated nodes still get
    plain KD); existing self loops in ``edge_index`` are not doubled.

    student_logits, teacher_logits: (N, C); edge_index: (2, E) int64 in 0..N-1. Returns the mean
    over the (E') edges, a scalar. The teacher is detached.

    Paper: Wu, Lin, Huang, Fan, Li, "Extracting Low-/High- Frequency Knowledge from Graph Neural
    Networks and Injecting it into MLPs: An Effective GNN-to-MLP Distillation Framework", AAAI 2023,
    arXiv 2305.10758.
    """
    check_pair(student_logits, teacher_logits)
    n = student_logits.shape[0]
    _check_edges(edge_index, n)
    src, dst = edge_index[:, edge_index[0] != edge_index[1]]
    if self_loops:
        loop = torch.arange(n, device=edge_index.device)
        src, dst = torch.cat([src, loop]), torch.cat([dst, loop])
    if src.numel() == 0:
        raise ValueError("low_frequency_loss got a graph without edges and self_loops=False: nothing to match")
    log_s = F.log_softmax(student_logits, -1)                      # (N, C)
    log_t = F.log_softmax(teacher_logits.detach(), -1)             # (N, C)
    return _kl_rows(log_t[dst], log_s[src]).mean()


def high_frequency_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, edge_index: torch.Tensor,
                        *, tau: float = 1.0) -> torch.Tensor:
    """FF-G2M high-frequency distillation: match the *differences* across each edge.

        L_HFD = 1/|E| sum_{(i,j) in E} KL( softmax(|z_i - z_j| / tau) || softmax(|s_i - s_j| / tau) )

    |z_i - z_j| (element-wise, C values) is the teacher's local contrast between neighbours: the
    high-frequency part of its signal, which plain node-wise KD can leave unmatched (the paper's
    "information drowning"). Self loops carry no difference and are dropped.

    student_logits, teacher_logits: (N, C); edge_index: (2, E) int64 in 0..N-1; tau > 0. Returns the
    mean over the edges without self loops, a scalar; a graph without such edges raises ValueError.
    The teacher is detached.

    Paper: Wu et al., "Extracting Low-/High- Frequency Knowledge from Graph Neural Networks and
    Injecting it into MLPs", AAAI 2023, arXiv 2305.10758.
    """
    check_temperature(tau)
    check_pair(student_logits, teacher_logits)
    _check_edges(edge_index, student_logits.shape[0])
    src, dst = edge_index[:, edge_index[0] != edge_index[1]]
    if src.numel() == 0:
        raise ValueError("high_frequency_loss needs at least one edge between two different nodes")
    t = teacher_logits.detach()
    log_p_t = F.log_softmax((t[src] - t[dst]).abs() / tau, -1)                              # (E, C)
    log_p_s = F.log_softmax((student_logits[src] - student_logits[dst]).abs() / tau, -1)    # (E, C)
    return _kl_rows(log_p_t, log_p_s).mean()


def ffg2m_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, edge_index: torch.Tensor,
               labels: torch.Tensor, *, lam: float = 0.4, tau: float = 1.5, ignore_index: int = -100) -> torch.Tensor:
    """FF-G2M's full objective: labels plus low- and high-frequency knowledge.

        L = lam * CE(s, y) + (1 - lam) * (L_LFD + L_HFD)

    CE averages over the labelled nodes (labels != ignore_index; 0 if none). Defaults are the
    authors' Cora/GCN setting (lam 0.4, tau 1.5). Shapes as in the two terms; labels (N,) int64.

    Paper: Wu et al., AAAI 2023, arXiv 2305.10758 (the loss of their released training script).
    """
    check_unit_interval(lam, "lam")
    check_temperature(tau)
    check_pair(student_logits, teacher_logits)
    if student_logits.dim() != 2:
        raise ValueError(f"logits must be (nodes, classes), got shape {tuple(student_logits.shape)}")
    check_labels(labels, student_logits.shape[1], ignore_index, shape=student_logits.shape[:1])
    labelled = labels != ignore_index
    ce = F.cross_entropy(student_logits, labels, ignore_index=ignore_index, reduction="sum") / labelled.sum().clamp(min=1)
    lfd = low_frequency_loss(student_logits, teacher_logits, edge_index)
    hfd = high_frequency_loss(student_logits, teacher_logits, edge_index, tau=tau)
    return lam * ce + (1 - lam) * (lfd + hfd)


def _neg_distances(embeddings: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """-||h_i - e_k||_2 (N, K) via ||h||^2 - 2 h.e + ||e||^2: one matmul (torch.cdist's backward is
    several times slower on CPU). The clamp keeps the square root's gradient finite at distance 0."""
    sq = (embeddings ** 2).sum(-1, keepdim=True) - 2 * embeddings @ codebook.t() + (codebook ** 2).sum(-1)
    return -sq.clamp(min=1e-12).sqrt()


def _check_codebook(embeddings: torch.Tensor, codebook: torch.Tensor) -> None:
    check_tensor("embeddings", embeddings)
    check_tensor("codebook", codebook)
    if embeddings.dim() != 2 or codebook.dim() != 2 or embeddings.shape[1] != codebook.shape[1]:
        raise ValueError(f"embeddings (N, D) and codebook (K, D) must share D, got {tuple(embeddings.shape)} "
                         f"and {tuple(codebook.shape)}")
    if embeddings.shape[0] == 0 or codebook.shape[0] == 0:
        raise ValueError("got no nodes or an empty codebook")
    check_values("embeddings", embeddings)
    check_values("codebook", codebook)


def soft_code_assignments(embeddings: torch.Tensor, codebook: torch.Tensor, *, T: float = 1.0) -> torch.Tensor:
    """How strongly each node belongs to each code of a VQ codebook.

        r_ik = softmax_k( -||h_i - e_k||_2 / T )

    embeddings h: (N, D); codebook e: (K, D). Returns probabilities (N, K). The hard code of a node is
    the argmax; the soft assignment keeps how close the node is to every other code, the "dark
    knowledge" of the structure-aware code space.

    Paper: Yang, Tian, Xu, Liu, Hong, Qu, Zhang, Cui, Zhang, Leskovec, "VQGraph: Rethinking Graph
    Representation Space for Bridging GNNs and MLPs", ICLR 2024, arXiv 2308.02117.
    """
    check_temperature(T)
    _check_codebook(embeddings, codebook)
    return F.softmax(_neg_distances(embeddings, codebook) / T, dim=-1)


def soft_code_loss(student_embeddings: torch.Tensor, teacher_assignments: torch.Tensor, codebook: torch.Tensor,
                   *, T: float = 4.0) -> torch.Tensor:
    """VQGraph's token-based distillation: the student's soft code assignments match the teacher's.

        L_code = T^2 / N * sum_i KL( r_i(teacher) || r_i(student) ),  r as in soft_code_assignments

    student_embeddings: (N, D), the MLP's hidden layer projected to the codebook's dimension;
    teacher_assignments: (N, K) = ``soft_code_assignments(teacher_embeddings, codebook, T=T)``,
    computed once from the tokenizer's embeddings (before quantization) with the *same* T;
    codebook: (K, D), frozen. Mean over nodes; T^2 as in Hinton KD. The teacher side is detached.

    Paper: Yang et al., "VQGraph", ICLR 2024, arXiv 2308.02117 (T = 4 in their released code).
    """
    check_temperature(T)
    _check_codebook(student_embeddings, codebook)
    check_tensor("teacher_assignments", teacher_assignments)
    if teacher_assignments.shape != (student_embeddings.shape[0], codebook.shape[0]):
        raise ValueError(f"teacher_assignments must be (N, K) = {(student_embeddings.shape[0], codebook.shape[0])}, "
                         f"got {tuple(teacher_assignments.shape)}: one distribution over the K codes per node")
    check_values("teacher_assignments", teacher_assignments)
    log_r_t = teacher_assignments.detach().clamp(min=1e-30).log()                               # (N, K)
    log_r_s = F.log_softmax(_neg_distances(student_embeddings, codebook.detach()) / T, -1)      # (N, K)
    return T**2 * _kl_rows(log_r_t, log_r_s).mean()
