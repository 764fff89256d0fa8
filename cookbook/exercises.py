"""Exercise checks: compare a reader's function with the package's reference on fixed cases.

Each ``check_*`` prints ``pass`` or ``FAIL`` with the largest absolute difference, or ``not attempted
yet`` when the stub still raises NotImplementedError (so an untouched notebook runs green). It
returns True / False / None accordingly; solutions notebooks assert it is True.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def _max_diff(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf")
    return (a - b).abs().max().item() if a.numel() else 0.0


def check(name: str, fn: Callable, reference: Callable, cases: Sequence[tuple | dict], atol: float = 1e-5) -> bool | None:
    """Run ``fn`` and ``reference`` on every case (positional tuple or keyword dict) and compare."""
    worst = 0.0
    for case in cases:
        args, kwargs = (case, {}) if isinstance(case, tuple) else ((), case)
        try:
            got = fn(*args, **kwargs)
        except NotImplementedError:
            print(f"{name}: not attempted yet")
            return None
        want = reference(*args, **kwargs)
        if got is None:
            print(f"{name}: FAIL (returned None)")
            return False
        if torch.as_tensor(got).shape != torch.as_tensor(want).shape:
            print(f"{name}: FAIL (shape {tuple(torch.as_tensor(got).shape)}, expected {tuple(torch.as_tensor(want).shape)})")
            return False
        worst = max(worst, _max_diff(got, want))
    ok = worst <= atol
    print(f"{name}: {'pass' if ok else 'FAIL'} (max |difference| = {worst:.2e}, tolerance {atol:.0e})")
    return ok


def _logit_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, c, generator=g) * s, torch.randn(b, c, generator=g) * s)
            for b, c, s in ((4, 10, 1.0), (7, 3, 5.0), (1, 26, 0.1))]


# --- notebook 00: quickstart -------------------------------------------------------------------

def check_soft_targets(fn: Callable) -> bool | None:
    """Exercise: ``fn(logits, T)`` -> temperature softmax (B, C)."""
    from cookbook.losses import soft_targets
    cases = [(s, T) for (s, _), T in zip(_logit_cases(), (1.0, 4.0, 0.5))]
    return check("soft_targets", fn, soft_targets, cases)


def check_kd_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, T)`` -> T^2-scaled batch-mean KL (scalar)."""
    from cookbook.losses import kd_loss
    cases = [(s, t, T) for (s, t), T in zip(_logit_cases(1), (1.0, 4.0, 2.0))]
    return check("kd_loss", fn, lambda s, t, T: kd_loss(s, t, T=T), cases)


def check_semi_supervised_kd(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, T, alpha)`` where labels == -100 marks
    unlabelled images: alpha * KD on every image + (1 - alpha) * CE averaged over labelled ones."""
    from cookbook.losses import kd_loss
    g = torch.Generator().manual_seed(2)
    cases = []
    for (s, t), alpha in zip(_logit_cases(2), (0.5, 0.9, 0.1)):
        labels = torch.randint(0, s.shape[1], (s.shape[0],), generator=g)
        labels[torch.rand(s.shape[0], generator=g) < 0.5] = -100
        cases.append((s, t, labels, 2.0, alpha))
    return check("semi_supervised_kd", fn,
                 lambda s, t, y, T, a: kd_loss(s, t, T=T, labels=y, alpha=a), cases)


# --- notebook 02: graph to MLP -----------------------------------------------------------------

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


# --- notebook 01a: vision KD with logits -------------------------------------------------------

def _labelled_logit_cases(seed: int = 5) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(s, t, torch.randint(0, s.shape[1], (s.shape[0],), generator=g)) for s, t in _logit_cases(seed)]


def check_pld_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels)`` -> PLD's batch-mean list-wise loss."""
    from cookbook.losses import pld_loss
    return check("pld_loss", fn, lambda s, t, y: pld_loss(s, t, y), _labelled_logit_cases(), atol=1e-4)


def check_tckd_nckd(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, T)`` -> (TCKD, NCKD) batch means, no T^2."""
    from cookbook.losses import dkd_loss

    def reference(s, t, y, T):
        return torch.stack([dkd_loss(s, t, y, alpha=1.0, beta=0.0, T=T) / T**2,
                            dkd_loss(s, t, y, alpha=0.0, beta=1.0, T=T) / T**2])
    def as_pair(*args):
        out = fn(*args)
        return None if out is None else torch.stack([torch.as_tensor(v) for v in out])

    cases = [(s, t, y, T) for (s, t, y), T in zip(_labelled_logit_cases(6), (1.0, 4.0, 2.0))]
    return check("tckd_nckd", as_pair, reference, cases)


def check_dual_head_probs(fn: Callable) -> bool | None:
    """Exercise: ``fn(ce_logits, kd_logits, alpha, beta)`` -> (1-alpha) softmax(ce) + alpha softmax(kd / beta)."""
    from cookbook.losses import dual_head_probs
    cases = [(s, t, a, b) for (s, t), a, b in zip(_logit_cases(7), (0.0, 0.35, 1.0), (1.0, 2.0, 0.5))]
    return check("dual_head_probs", fn, lambda s, t, a, b: dual_head_probs(s, t, alpha=a, beta=b), cases)


def check_relation_gram(fn: Callable) -> bool | None:
    """Exercise: ``fn(feats)`` -> DisWOT's (B, B) sample-relation matrix (normalised rows, Frobenius-normalised)."""
    from cookbook.diswot import relation_gram
    g = torch.Generator().manual_seed(8)
    cases = [(torch.randn(*shape, generator=g),) for shape in ((4, 8, 7, 7), (9, 16), (2, 3, 5, 5))]
    return check("relation_gram", fn, relation_gram, cases)


# --- notebook 05: LLM distillation -------------------------------------------------------------

def _llm_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student_logits, teacher_logits) (N, V), including a peaked teacher and a single token."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, v, generator=g) * s, torch.randn(n, v, generator=g) * s)
            for n, v, s in ((6, 11, 1.0), (4, 50, 6.0), (1, 7, 0.3))]


def check_reverse_kl_from_logprobs(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logprobs, teacher_logprobs)`` -> per-token reverse KL(q || p) (N,)
    from log-probabilities (N, V)."""
    from cookbook.losses.llm import reverse_kl
    cases = [(s.log_softmax(-1), t.log_softmax(-1)) for s, t in _llm_cases(5)]
    return check("reverse_kl_from_logprobs", fn,
                 lambda lq, lp: reverse_kl(lq, lp, reduction="none"), cases)


def check_taid_target(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, t)`` -> TAID's interpolated target (N, V):
    softmax((1 - t) log q + t log p) of the detached student and the teacher."""
    from cookbook.losses.llm import taid_target
    cases = [(s, te, t) for (s, te), t in zip(_llm_cases(6), (0.4, 0.0, 1.0))]
    return check("taid_target", fn, lambda s, te, t: taid_target(s, te, t=t), cases)


def check_topk_tail_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, topk_indices, topk_logprobs)`` -> mean over tokens of the
    forward KL over the k + 1 outcomes (the teacher's top-k tokens plus one tail bin)."""
    from cookbook.losses.llm import TopKTeacher, forward_kl
    cases = []
    for (s, t), k in zip(_llm_cases(7), (3, 10, 7)):
        top = TopKTeacher.from_logits(t, k)
        cases.append((s, top.indices, top.logprobs))
    return check("topk_tail_loss", fn,
                 lambda s, idx, lp: forward_kl(s, TopKTeacher(idx, lp)), cases)


def check_two_heads(fn: Callable) -> bool | None:
    """Exercise: ``fn(model, x)`` -> (CLS logits, DIST logits) of a timm DeiT model."""
    from cookbook.models import cls_dist_logits, tiny_vit

    torch.manual_seed(0)
    model = tiny_vit(distilled=True).eval()
    x = torch.randn(3, 1, 28, 28)
    return check("two_heads", lambda m, xb: torch.stack(fn(m, xb)),
                 lambda m, xb: torch.stack(cls_dist_logits(m, xb)), [(model, x)])


def check_ofa_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, gamma)`` -> OFA loss (T = 1, batch mean)."""
    from cookbook.losses import ofa_loss

    g = torch.Generator().manual_seed(1)
    cases = [(s, t, torch.randint(0, s.shape[1], (s.shape[0],), generator=g), gamma)
             for (s, t), gamma in zip(_logit_cases(), (1.0, 1.5, 3.0))]
    return check("ofa_loss", fn, lambda s, t, y, gamma: ofa_loss(s, t, y, gamma=gamma), cases)


def check_lt_weights(fn: Callable) -> bool | None:
    """Exercise: ``fn(n_max, imbalance, beta)`` -> (counts, class-balanced weights with mean 1)."""
    from cookbook.data import class_balanced_weights, long_tailed_counts

    def reference(n_max, imbalance, beta):
        counts = long_tailed_counts(n_max, imbalance)
        return counts, class_balanced_weights(counts, beta)

    def flat(f):
        return lambda *a: torch.cat([torch.as_tensor(a_, dtype=torch.float32) for a_ in f(*a)])
    return check("lt_weights", flat(fn), flat(reference), [(1000, 100, 0.999), (500, 10, 0.99), (5000, 50, 0.9999)])


def check_visible_feature_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_feats, teacher_tokens, keep)`` -> DMAE's visible-patch L1 loss."""
    from cookbook.losses import visible_feature_loss
    from cookbook.models import random_keep

    g = torch.Generator().manual_seed(2)
    cases = []
    for b, n, d, ratio in ((4, 16, 8, 0.75), (2, 49, 5, 0.9), (3, 16, 64, 0.95)):
        keep = random_keep(b, n, ratio, generator=g)
        cases.append((torch.randn(b, keep.shape[1], d, generator=g), torch.randn(b, n, d, generator=g) * 3, keep))
    return check("visible_feature_loss", fn, visible_feature_loss, cases)

