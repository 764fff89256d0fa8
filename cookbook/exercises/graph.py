"""Exercise checks of notebook 02 (graph to MLP: FF-G2M, VQGraph)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _graph_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(student_logits, teacher_logits, edge_index) on small random undirected graphs, one with a
    self loop and an isolated node."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for n, c, e, s in ((6, 4, 8, 1.0), (11, 7, 20, 3.0), (5, 26, 3, 0.3)):
        src, dst = torch.randint(0, n - 1, (2, e), generator=g)   # node n-1 stays isolated
        ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
        ei = torch.cat([ei, torch.tensor([[0], [0]])], 1)           # a self loop
        cases.append((torch.randn(n, c, generator=g) * s, torch.randn(n, c, generator=g) * s, ei))
    return cases


def check_high_frequency_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, edge_index, tau)`` -> FF-G2M's L_HFD (scalar):
    mean over edges (self loops dropped) of KL(softmax(|z_i - z_j|/tau) || softmax(|s_i - s_j|/tau))."""
    from cookbook.losses.graph import high_frequency_loss
    cases = [(s, t, ei, tau) for (s, t, ei), tau in zip(_graph_cases(), (1.0, 1.5, 0.5))]
    return check("high_frequency_loss", fn, lambda s, t, ei, tau: high_frequency_loss(s, t, ei, tau=tau), cases)


def check_soft_code_assignments(fn: Callable) -> bool | None:
    """Exercise: ``fn(embeddings, codebook, T)`` -> (N, K) softmax over codes of -||h_i - e_k|| / T."""
    from cookbook.losses.graph import soft_code_assignments
    g = torch.Generator().manual_seed(3)
    cases = [(torch.randn(n, d, generator=g), torch.randn(k, d, generator=g), T)
             for n, k, d, T in ((5, 8, 4, 1.0), (9, 3, 16, 0.1), (1, 32, 2, 4.0))]
    return check("soft_code_assignments", fn, lambda h, e, T: soft_code_assignments(h, e, T=T), cases)


def check_observed_subgraph(fn: Callable) -> bool | None:
    """Exercise: ``fn(edge_index, observed, num_nodes)`` -> the edges among ``observed`` nodes,
    re-indexed to positions in ``observed`` (2, E_obs), in the order the edges had."""
    from cookbook.data.graph_splits import observed_subgraph
    cases = []
    for seed, (_, _, ei) in enumerate(_graph_cases(4)):
        n = int(ei.max()) + 2
        g = torch.Generator().manual_seed(seed)
        cases.append((ei, torch.randperm(n, generator=g)[: n - 2], n))
    return check("observed_subgraph", fn, observed_subgraph, cases, atol=0)
