"""metrics.py, the shared training core (train.Stepper, train_student), paired gains, class-aware
subsets and the token teacher: the helpers notebooks used to define more than once."""

import math

import pytest
import torch
from torch import nn

from cookbook import metrics
from cookbook.data import balanced_subset
from cookbook.models import CNNTokens, SmallCNN, cnn_tokens
from cookbook.results import paired_gain
from cookbook.train import (
    Stepper,
    evaluate,
    fit,
    lr_factor,
    train_lm,
    train_student,
    uniform_sampler,
)


def test_accuracy_from_logits_or_labels():
    logits = torch.tensor([[2.0, 0.1], [0.0, 1.0], [3.0, -1.0], [0.2, 0.1]])
    y = torch.tensor([0, 1, 1, 0])
    assert metrics.accuracy(logits, y) == 0.75
    assert metrics.accuracy(logits.argmax(-1), y) == 0.75
    with pytest.raises(ValueError, match="align"):
        metrics.accuracy(logits, y[:3])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_per_class_accuracy_means_to_balanced_accuracy():
    pred = torch.tensor([0, 0, 0, 1, 1, 2])
    y = torch.tensor([0, 0, 1, 1, 1, 1])
    per = metrics.per_class_accuracy(pred, y, num_classes=3)
    torch.testing.assert_close(per[:2], torch.tensor([1.0, 2 / 4]))
    assert math.isnan(per[2])                                     # no example of class 2
    assert metrics.per_class_accuracy(pred, y).shape == (2,)       # classes inferred from labels


def test_perplexity_and_agreement():
    assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
    logits = torch.tensor([[[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]]])    # (1, 2, 3)
    assert metrics.top1_agreement(logits, torch.tensor([[1, 2]])).tolist() == [[True, False]]


def test_evaluate_is_metrics_accuracy_of_predictions():
    torch.manual_seed(0)
    model, X, y = nn.Linear(5, 3), torch.randn(50, 5), torch.randint(0, 3, (50,))
    assert evaluate(model, X, y) == metrics.accuracy(model(X), y)


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, 10) == 1.0 and lr_factor(10, 10) == pytest.approx(0.0)
    assert lr_factor(0, 100, warmup=4) == 0.25 and lr_factor(3, 100, warmup=4) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 3 / 100)))
    assert lr_factor(50, 100, schedule="constant", warmup=0) == 1.0


def test_stepper_is_the_step_of_fit_and_train_lm():
    w = nn.Parameter(torch.tensor([3.0]))
    stepper = Stepper([w], total=5, lr=0.1, clip_norm=0.5, progress=False)
    stepper.step((w ** 2).sum(), "step 0")
    assert w.item() < 3.0
    with pytest.raises(FloatingPointError, match="at step 1"):
        stepper.step(w.sum() * float("nan"), "step 1")
    with pytest.raises(ValueError, match="optimizer"):
        Stepper([w], total=5, lr=0.1, optimizer="adam-typo")
    with pytest.raises(ValueError, match="schedule"):
        Stepper([w], total=5, lr=0.1, schedule="linear")


def test_train_lm_and_fit_share_the_schedule():
    # one parameter, loss = w: both loops must apply the same warm-up-free cosine step sizes
    def run_fit():
        w = nn.Linear(1, 1, bias=False)
        nn.init.ones_(w.weight)
        fit(w, lambda m, x: m(x).sum(), (torch.ones(4, 1),), epochs=1, lr=0.1, batch_size=1, progress=False,
            device=torch.device("cpu"))
        return w.weight.item()

    def run_lm():
        w = nn.Linear(1, 1, bias=False)
        nn.init.ones_(w.weight)
        train_lm(w, lambda m, rows, step, run: m(torch.ones(1, 1)).sum(), uniform_sampler(4, 1), steps=4, lr=0.1,
                 warmup=0, progress=False)
        return w.weight.item()
    assert run_fit() == pytest.approx(run_lm(), abs=1e-6)


def test_train_student_seeds_builds_and_keeps_the_best_epoch():
    X, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 2
    X[:, 0] += 2 * y                                                   # learnable

    def loss(m, xb, yb):
        return nn.functional.cross_entropy(m(xb), yb)
    a, hist = train_student(lambda: nn.Linear(4, 2), loss, (X, y), seed=3, val=(X, y), epochs=3, lr=0.05,
                            batch_size=16, progress=False)
    b, _ = train_student(lambda: nn.Linear(4, 2), loss, (X, y), seed=3, val=(X, y), epochs=3, lr=0.05,
                         batch_size=16, progress=False)
    assert torch.equal(a.weight, b.weight)                             # same seed, same student
    assert len(hist.metrics["val_acc"]) == 3 and hist.final("val_acc") == max(hist.metrics["val_acc"])
    given = nn.Linear(4, 2)
    c, hist_c = train_student(given, loss, (X, y), seed=0, epochs=1, lr=0.05, progress=False)
    assert c is given and not hist_c.metrics                          # a module is trained as it is


def test_paired_gain():
    g = paired_gain([0.80, 0.82, 0.79], [0.78, 0.83, 0.77])
    assert g.per_seed == pytest.approx((2.0, -1.0, 2.0)) and g.mean == pytest.approx(1.0) and g.wins == 2
    assert str(g) == "+1.00 pts (per seed +2.0, -1.0, +2.0)"
    with pytest.raises(ValueError, match="same non-zero number of seeds"):
        paired_gain([0.1, 0.2], [0.1])


def test_balanced_subset():
    y = torch.arange(1000) % 10
    idx = balanced_subset(y, 100, seed=0)
    assert torch.bincount(y[idx]).tolist() == [10] * 10 and len(set(idx.tolist())) == 100
    assert torch.equal(idx, balanced_subset(y, 100, seed=0))
    assert not torch.equal(idx, balanced_subset(y, 100, seed=1))
    with pytest.raises(ValueError, match="fewer than one"):
        balanced_subset(y, 5)
    with pytest.raises(ValueError, match="class 3 has"):
        balanced_subset(torch.tensor([0, 1, 2] * 10 + [3]), 40)


def test_cnn_tokens_module_is_cnn_tokens_of_the_stage():
    torch.manual_seed(0)
    cnn, x = SmallCNN(width=8).eval(), torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        want = cnn_tokens(cnn.stage3(cnn.stage2(cnn.stage1(x))), 4)
        torch.testing.assert_close(CNNTokens(cnn, grid=4)(x), want)                 # (2, 16, 32)
        assert CNNTokens(cnn, grid=4, stages=2)(x).shape == (2, 16, 16)
    with pytest.raises(ValueError, match="stages"):
        CNNTokens(cnn, stages=4)


def test_adam_is_l2_and_adamw_is_decoupled():
    # one step from w = 1 with zero loss gradient: AdamW shrinks by lr * wd; Adam's L2 gradient
    # wd * w is normalised by its own magnitude, so the first step is a full lr
    from cookbook.train import make_optimizer

    steps = {}
    for name in ("adam", "adamw"):
        w = torch.nn.Parameter(torch.ones(1))
        opt = make_optimizer([w], name, lr=0.1, weight_decay=5e-4)
        w.grad = torch.zeros(1)
        opt.step()
        steps[name] = 1.0 - w.item()
    assert abs(steps["adamw"] - 0.1 * 5e-4) < 1e-7  # fp32
    assert abs(steps["adam"] - 0.1) < 1e-4
