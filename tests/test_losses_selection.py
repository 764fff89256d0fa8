"""Token / data selection rules (cookbook.losses.selection): AdaSPEC, ssToken, DDK."""

import math

import pytest
import torch
from torch import nn

from cookbook.losses import selection as S


def values(n=10, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- top fraction / AdaSPEC


@pytest.mark.parametrize("ratio, kept", [(0.3, 3), (0.31, 4), (1.0, 10), (0.05, 1), (0.7, 7)])
def test_exact_fraction_kept(ratio, kept):
    assert int(S.top_fraction(values(), ratio).sum()) == kept


def test_ties_go_to_earlier_positions_and_masked_never_selected():
    assert S.top_fraction(torch.zeros(6), 0.5).tolist() == [True, True, True, False, False, False]
    scores = torch.tensor([9.0, 1.0, -math.inf, 8.0, 2.0])
    mask = torch.tensor([False, True, True, False, True])
    keep = S.top_fraction(scores, 1.0, mask)
    assert keep.tolist() == [False, True, True, False, True]  # even a valid -inf beats no token
    assert S.top_fraction(scores, 0.4, mask).tolist() == [False, True, False, False, True]


def test_adaspec_keeps_largest_gaps_and_matches_the_reference_quantile_rule():
    student, reference = values(50, 1).abs() * 3, values(50, 2).abs()
    gap = student - reference
    for k in (0.2, 0.4, 0.8):
        keep = S.adaspec_select(student, reference, k)
        assert int(keep.sum()) == math.ceil(k * 50)
        assert gap[keep].min() >= gap[~keep].max()  # monotone: a larger gap is kept first
        # the official trainer: delta >= quantile(delta, 1 - k)
        torch.testing.assert_close(keep, gap >= torch.quantile(gap, 1 - k))
    mask = torch.arange(50) % 3 != 0
    keep = S.adaspec_select(student, reference, 0.5, mask)
    assert not keep[~mask].any() and int(keep.sum()) == math.ceil(0.5 * int(mask.sum()))


def test_per_row_selection_for_sequences():
    scores = torch.stack([values(8, 3), values(8, 4)])
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.bool)
    keep = S.sstoken_select(scores, 0.6, mask)
    assert keep.sum(-1).tolist() == [5, 3] and not keep[~mask].any()


# ----------------------------------------------------------------------------- ssToken


def test_sstoken_scores_by_hand():
    current = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    history = torch.tensor([[3.0, 3.0, 3.0, 0.0]])  # REL = 2, 1, 0, masked
    attn = torch.tensor([[0.0, 0.8, 0.4, 0.9]])
    mask = torch.tensor([[True, True, True, False]])
    loss_only = S.sstoken_scores(current, history, gamma=1.0, mask=mask)
    torch.testing.assert_close(loss_only, torch.tensor([[1.0, 0.5, 0.0, 0.0]]), atol=1e-6, rtol=0)
    mixed = S.sstoken_scores(current, history, attn, gamma=0.5, mask=mask)
    torch.testing.assert_close(mixed, torch.tensor([[0.5, 0.65, 0.2, 0.0]]), atol=1e-6, rtol=0)
    assert S.sstoken_select(mixed, 0.5, mask).tolist() == [[True, True, False, False]]


def test_prompt_attention_scores():
    attn = torch.softmax(torch.randn(2, 3, 4, 4), -1)  # (B, H, L, L)
    prompt = torch.tensor([[True, True, False, False], [True, False, False, False]])
    got = S.prompt_attention_scores(attn, prompt)
    torch.testing.assert_close(got[0], attn[0].mean(0)[:, :2].sum(-1))
    torch.testing.assert_close(got[1], attn[1].mean(0)[:, 0])
    assert ((got >= 0) & (got <= 1 + 1e-6)).all()


def test_ema_history_model():
    model = nn.Linear(3, 2)
    ema = S.EMA(model, decay=0.75)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, start + 1.0)  # 0.75 w0 + 0.25 (w0 + 4)
    assert not any(p.requires_grad for p in ema.module.parameters())
    other = nn.Linear(3, 2)
    ema.copy_to(other)
    torch.testing.assert_close(other.weight, ema.module.weight)
    fixed = S.EMA(model, decay=1.0)
    before = fixed.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    fixed.update(model)
    torch.testing.assert_close(fixed.module.weight, before)


# ----------------------------------------------------------------------------- DDK


def test_ddk_initial_weights_by_hand():
    student, teacher = torch.tensor([2.0, 3.0, 2.5]), torch.tensor([1.5, 1.5, 2.5])
    ratio = (student - teacher).exp()  # perplexity ratios l_S / l_T
    w = S.ddk_domain_weights(student, teacher)
    torch.testing.assert_close(w, torch.softmax(ratio.double(), 0))
    assert w.sum().item() == pytest.approx(1.0) and w.argmax() == 1  # the largest gap


def test_ddk_factor_smooth_update():
    student, teacher = torch.tensor([2.0, 3.0, 2.5]), torch.tensor([1.5, 1.5, 2.5])
    previous = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    w = S.ddk_domain_weights(student, teacher, previous, smoothing=0.5)
    psi = previous * (student - teacher).double().exp().exp()
    torch.testing.assert_close(w, 0.5 * psi / psi.sum() + 0.5 / 3)
    assert w.sum().item() == pytest.approx(1.0)
    # equal gaps: the update only mixes the previous weights with uniform
    same = torch.full((3,), 2.0)
    torch.testing.assert_close(S.ddk_domain_weights(same, same, previous, 0.5), 0.5 * previous + 0.5 / 3)
    torch.testing.assert_close(S.ddk_domain_weights(student, teacher, previous, 0.0),
                               torch.full((3,), 1 / 3, dtype=torch.float64))
    # the history pulls the weights toward the previous mixture
    fresh = S.ddk_domain_weights(student, teacher, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert w[0] > fresh[0]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: S.adaspec_select(values(), values(seed=1), 0.0), "keep_ratio"),
        (lambda: S.adaspec_select(values(), values(seed=1), 1.5), "keep_ratio"),
        (lambda: S.adaspec_select(values(), values(9), 0.5), "same shape"),
        (lambda: S.adaspec_select(values()[None], values()[None], 0.5), r"\(N,\)"),
        (lambda: S.adaspec_select(values() * float("nan"), values(), 0.5), "NaN"),
        (lambda: S.adaspec_select(values(), values(), 0.5, torch.zeros(10, dtype=torch.bool)), "masked"),
        (lambda: S.adaspec_select(values(), values(), 0.5, torch.ones(9, dtype=torch.bool)), "mask"),
        (lambda: S.sstoken_scores(values(), values(seed=1)), "attention_scores"),
        (lambda: S.sstoken_scores(values(), values(seed=1), values(9)), "shape"),
        (lambda: S.sstoken_scores(values(), values(seed=1), gamma=1.5), "gamma"),
        (lambda: S.sstoken_select(values(), -0.1), "keep_ratio"),
        (lambda: S.prompt_attention_scores(torch.rand(2, 4, 4), torch.ones(2, 3, dtype=torch.bool)), "prompt_mask"),
        (lambda: S.EMA(nn.Linear(2, 2), decay=1.5), "decay"),
        (lambda: S.ddk_domain_weights(values(3), values(4)), "equal shape"),
        (lambda: S.ddk_domain_weights(values(3) * float("nan"), values(3)), "finite"),
        (lambda: S.ddk_domain_weights(values(3), values(3), torch.tensor([0.5, 0.6, 0.1])), "probability"),
        (lambda: S.ddk_domain_weights(values(3), values(3), smoothing=2.0), "smoothing"),
        (lambda: S.ddk_domain_weights(torch.tensor([800.0]), torch.tensor([0.0])), "overflows"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
