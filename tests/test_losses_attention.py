"""MiniLMv2 self-attention relation distillation (cookbook.losses.attention)."""

import math

import pytest
import torch
import torch.nn.functional as F

from cookbook.losses.attention import attention_relation_loss, attention_relations


def proj(b=2, length=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, length, d, generator=g)


def qkv(d=8, seed=0):
    return tuple(proj(d=d, seed=seed + i) for i in range(3))


def test_relations_by_hand_and_causal():
    x = proj()
    rel = attention_relations(x, 2, causal=False)
    assert rel.shape == (2, 2, 5, 5)
    head = x[:, :, 4:]  # second relation head: units 4..7
    expected = F.log_softmax(head @ head.transpose(-1, -2) / math.sqrt(4), dim=-1)
    torch.testing.assert_close(rel[:, 1], expected)
    causal = attention_relations(x, 2).exp()
    torch.testing.assert_close(causal.sum(-1), torch.ones(2, 2, 5))
    assert (causal.triu(1) == 0).all()
    torch.testing.assert_close(causal[..., 0, 0], torch.ones(2, 2))  # token 0 sees only itself


def test_causal_rows_ignore_the_future_and_padding_is_ignored():
    x = proj()
    y = x.clone()
    y[:, 3:] += 5.0  # change the future of token 2
    torch.testing.assert_close(attention_relations(x, 4)[..., :3, :3], attention_relations(y, 4)[..., :3, :3])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    s, t = qkv(seed=0), qkv(d=12, seed=3)
    noisy = tuple(torch.where(mask[..., None], a, a + 10.0) for a in s)
    torch.testing.assert_close(attention_relation_loss(s, t, 4, mask=mask),
                               attention_relation_loss(noisy, t, 4, mask=mask))


def test_zero_on_identical_and_positive_otherwise():
    s = qkv()
    assert attention_relation_loss(s, s, 4).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_relation_loss(s, qkv(seed=7), 4).item() > 0
    assert attention_relation_loss(s, qkv(seed=7), 4, causal=False).item() > 0


def test_invariant_to_permuting_units_within_a_relation_head():
    s, t = qkv(d=8), qkv(d=12, seed=5)  # student and teacher hidden sizes differ
    base = attention_relation_loss(s, t, 4)
    within = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])  # swaps inside each 2-unit head
    torch.testing.assert_close(attention_relation_loss(tuple(a[..., within] for a in s), t, 4), base)
    across = torch.tensor([2, 1, 0, 3, 4, 5, 6, 7])  # mixes heads 0 and 1: a different relation
    assert not torch.allclose(attention_relation_loss(tuple(a[..., across] for a in s), t, 4), base)


def test_gradients_reach_the_student_only():
    s = tuple(a.requires_grad_() for a in qkv())
    t = tuple(a.requires_grad_() for a in qkv(d=12, seed=5))
    attention_relation_loss(s, t, 2).backward()
    assert all(torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0 for a in s)
    assert all(a.grad is None for a in t)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, t: attention_relation_loss(s, t, 3), "divide"),
        (lambda s, t: attention_relation_loss(s, t, 0), "divide"),
        (lambda s, t: attention_relation_loss(s[:2], t, 4), "triple"),
        (lambda s, t: attention_relation_loss(s, tuple(a[:, :4] for a in t), 4), "share"),
        (lambda s, t: attention_relation_loss(tuple(a[0] for a in s), t, 4), r"\(B, L, D\)"),
        (lambda s, t: attention_relation_loss(tuple(a * float("nan") for a in s), t, 4), "NaN"),
        (lambda s, t: attention_relation_loss(s, t, 4, mask=torch.ones(2, 4, dtype=torch.bool)), "mask"),
        (lambda s, t: attention_relation_loss(s, t, 4, mask=torch.zeros(2, 5, dtype=torch.bool)), "padding"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(qkv(), qkv(d=12, seed=5))
