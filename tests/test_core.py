"""config, utils, train, results, exercises, plotting: the package core."""

import json

import pytest
import torch
from torch import nn

from cookbook import config, plotting, results, utils
from cookbook.exercises import quickstart as exercises
from cookbook.losses import kd_loss, soft_targets
from cookbook.train import batches, evaluate, fit, predict


def test_pick_follows_env(monkeypatch):
    monkeypatch.setenv("COOKBOOK_FAST", "1")
    assert config.pick(full=10, fast=1) == 1 and config.mode() == "FAST"
    monkeypatch.setenv("COOKBOOK_FAST", "0")
    assert config.pick(full=10, fast=1) == 10 and config.mode() == "FULL"
    monkeypatch.delenv("COOKBOOK_FAST")
    assert not config.is_fast()


def test_offline_defaults_are_set():
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_set_seed_is_reproducible():
    utils.set_seed(3)
    a = torch.randn(4)
    utils.set_seed(3)
    assert torch.equal(a, torch.randn(4))


def test_env_report(capsys):
    info = utils.env_report()
    assert info["mode"] in ("FAST", "FULL") and "torch=" in capsys.readouterr().out


def test_batches():
    x, y = torch.arange(10), torch.arange(10) * 2
    out = list(batches(x, y, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b[0]) for b in out] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in out]).sort().values, x)
    assert all(torch.equal(b[1], b[0] * 2) for b in out)
    with pytest.raises(ValueError, match="same first dimension"):
        list(batches(x, y[:3], batch_size=2))


def _toy(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    return X, (X[:, 0] + X[:, 1] > 0).long()


def test_fit_learns_and_is_deterministic():
    X, y = _toy()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        hist = fit(model, lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb), (X, y), epochs=5, lr=0.1,
                   batch_size=32, seed=0, eval_fn=lambda m: {"acc": evaluate(m, X, y)}, keep_best="acc",
                   device=torch.device("cpu"))
        runs.append((hist, model.weight.detach().clone()))
    hist = runs[0][0]
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.final("acc") > 0.9 and hist.best_epoch is not None
    assert torch.equal(runs[0][1], runs[1][1])


def test_fit_with_kd_loss_moves_student_to_teacher():
    X, _ = _toy(1)
    teacher = nn.Linear(2, 3)
    t_logits = predict(teacher, X)
    student = nn.Linear(2, 3)
    before = kd_loss(predict(student, X), t_logits, T=2.0).item()
    fit(student, lambda m, xb, tb: kd_loss(m(xb), tb, T=2.0), (X, t_logits), epochs=20, lr=0.05,
        device=torch.device("cpu"))
    assert kd_loss(predict(student, X), t_logits, T=2.0).item() < 0.1 * before


def test_fit_rejects_bad_arguments():
    X, y = _toy()
    with pytest.raises(ValueError, match="optimizer"):
        fit(nn.Linear(2, 2), lambda m, a, b: m(a).sum(), (X, y), epochs=1, lr=0.1, optimizer="lamb")
    with pytest.raises(ValueError, match="keep_best"):
        fit(nn.Linear(2, 2), lambda m, a, b: m(a).sum(), (X, y), epochs=1, lr=0.1, keep_best="acc")


def test_fit_stops_on_nan():
    X, y = _toy()
    with pytest.raises(FloatingPointError):
        fit(nn.Linear(2, 2), lambda m, a, b: m(a).sum() * float("nan"), (X, y), epochs=1, lr=0.1)


def test_results_record_replace_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_RESULTS", str(tmp_path))
    monkeypatch.setenv("COOKBOOK_FAST", "1")
    results.record("00_demo", "scratch", "test_acc", [0.80, 0.82, 0.81], paper="n/a")
    results.record("00_demo", "scratch", "test_acc", [0.70, 0.72])          # replaces the FAST row
    monkeypatch.setenv("COOKBOOK_FAST", "0")
    results.record("00_demo", "kd", "test_acc", 0.85, paper="+1 pt")
    rows = json.loads((tmp_path / "00_demo.json").read_text())
    assert len(rows) == 2
    fast = next(r for r in rows if r["mode"] == "FAST")
    assert fast["seeds"] == 2 and fast["value"] == pytest.approx(0.71) and fast["std"] == pytest.approx(0.014142, rel=1e-4)
    text = results.write_summary().read_text()
    assert "| 00_demo | kd | test_acc | 0.8500 | +1 pt | FULL |" in text
    assert text.index("FULL") < text.index("FAST")
    with pytest.raises(ValueError, match="non-finite"):
        results.record("00_demo", "x", "y", float("nan"))
    results.clear("00_demo", "FAST")                                         # a fresh FAST run starts clean
    assert [r["mode"] for r in results.load("00_demo")] == ["FULL"]


def test_exercise_checks(capsys):
    assert exercises.check_soft_targets(soft_targets) is True
    assert exercises.check_kd_loss(lambda s, t, T: kd_loss(s, t, T=T)) is True
    assert exercises.check_semi_supervised_kd(lambda s, t, y, T, a: kd_loss(s, t, T=T, labels=y, alpha=a)) is True
    assert exercises.check_gradient_exponent(lambda: -2) is True          # the T^2 factor undoes T^-2
    assert exercises.check_gradient_exponent(lambda: -1) is False

    def stub(*args):
        raise NotImplementedError

    assert exercises.check_kd_loss(stub) is None
    assert "not attempted yet" in capsys.readouterr().out
    # a classic mistake: forgetting T^2 must fail, and say by how much
    assert exercises.check_kd_loss(lambda s, t, T: kd_loss(s, t, T=T) / T**2) is False
    assert "FAIL" in capsys.readouterr().out


def test_plotting_smoke():
    ax = plotting.curves({"a": [1, 2, 3], "b": [[1, 2, 3], [2, 3, 4]]}, ylabel="acc")
    assert len(ax.lines) == 2
    plotting.bars(["x", "y"], [0.8, 0.9], [0.01, 0.02], reference={"teacher": 0.93})
    ax = plotting.heatmap([[0.1, 0.5], [0.3, 0.2]], [1, 2], ["a", "b"])
    assert len(ax.patches) == 1


def test_paired_gains_plot():
    from cookbook.results import paired_gain

    ax = plotting.paired_gains({"a": paired_gain([0.9, 0.8], [0.85, 0.82]), "b": [-1.0, -2.0, -0.5]},
                               paper={"a": 3.0})
    assert len(ax.patches) == 2                                  # one mean bar per comparison
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.patches[1].get_facecolor()[:3] != ax.patches[0].get_facecolor()[:3]   # losses in another colour
    with pytest.raises(ValueError, match="at least one"):
        plotting.paired_gains({})


def test_paired_gains_claims_set_direction():
    # perplexity: lower is better, so a negative mean is the good colour and the arrow points left
    ax = plotting.paired_gains({"CE+KL": [-1.0, -2.0], "RKL": [3.0, 4.0]}, claims={"CE+KL": -1, "RKL": -1})
    good, bad = (p.get_facecolor()[:3] for p in ax.patches)
    assert good != bad
    assert [t.get_text() for t in ax.texts] == ["\u2190 paper", "\u2190 paper"]
    same = plotting.paired_gains({"x": [-1.0, -2.0]}, higher_is_better=False)
    assert same.patches[0].get_facecolor()[:3] == good
    with pytest.raises(ValueError, match="claims"):
        plotting.paired_gains({"x": [1.0]}, claims={"x": 2})


def test_sweeps_plot():
    axes = plotting.sweeps({"all": {"KD": {"T=1": 0.8, "T=4": 0.9}, "PLD": {"T=1": 0.85}},
                            "1k": {"KD": {"T=1": 0.7, "T=4": 0.6}}}, chosen={("all", "KD"): "T=4"})
    assert axes.shape == (2, 2)
    assert [t.get_text() for t in axes[0, 0].get_xticklabels()] == ["T=1", "T=4"]
    assert len(axes[0, 0].lines) == 2 and len(axes[1, 0].lines) == 1      # the chosen point is circled
    with pytest.raises(ValueError, match="at least one"):
        plotting.sweeps({})


def test_torchvision_timm_transformers_import_after_cookbook():
    # CPU torch + PyPI's CUDA torchvision: the import hook in cookbook._compat must make all three work
    import subprocess
    import sys

    code = ("import cookbook, sys; assert 'torchvision' not in sys.modules; "
            "import timm, torchvision; from transformers import LlamaConfig; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
