"""The LLM distillation runs of notebooks 05a/05b (methods.llm), the pre-trained student, and 05b's exercises."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cookbook.losses.llm import TopKTeacher, shift_labels, token_ce
from cookbook.methods.llm import (
    AdaptiveOffPolicy,
    Runs,
    ce_loss,
    divergence_loss,
    on_policy_batch,
    run_seeds,
    step_seconds,
)
from cookbook.models.lm import tiny_llama
from cookbook.teachers.topk_cache import build_topk_cache

V = 30


def _tiny(seed=0):
    return tiny_llama(vocab_size=V, hidden=16, intermediate=32, layers=1, heads=2, seed=seed)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    teacher = _tiny(seed=7).eval()
    ids = torch.randint(V, (12, 9), generator=torch.Generator().manual_seed(0))
    return build_topk_cache(teacher, ids, tmp_path_factory.mktemp("c") / "cache", k=4, progress=False)


def test_ce_loss_is_the_next_token_cross_entropy(cache):
    student, rows = _tiny(), torch.tensor([0, 3, 5])
    ids = cache.ids(rows.numpy())
    want = token_ce(student(ids).logits, ids).sum() / (3 * 8)
    assert ce_loss(cache)(student, rows, 0, None).item() == pytest.approx(want.item(), rel=1e-4)


def test_runs_are_seeded_and_start_from_the_same_student(cache):
    start = _tiny(seed=1)
    make = lambda: _tiny(seed=1)   # noqa: E731
    kw = dict(seeds=[0, 1], steps=4, lr=1e-2, batch=3, n_rows=len(cache), val=cache, val_rows=np.arange(4),
              eval_every=2, progress=False)
    a = run_seeds("fkl", lambda s: divergence_loss(cache), make, **kw)
    b = run_seeds("fkl", lambda s: divergence_loss(cache), make, **kw)
    assert a.seeds == [0, 1] and isinstance(a, Runs)
    for s in a.seeds:
        for pa, pb in zip(a.students[s].parameters(), b.students[s].parameters()):
            assert torch.equal(pa, pb)                              # same seed, same run
    assert not torch.equal(a.students[0].lm_head.weight, a.students[1].lm_head.weight)
    assert not torch.equal(a.students[0].lm_head.weight, start.lm_head.weight)
    steps, values = a.curve()
    assert steps == [0, 2, 4] and values.shape == (2, 3)           # before steps 0 and 2, and after the last
    assert 0 < step_seconds(a.runs[0]) <= a.runs[0].seconds_per_step
    assert a.runs[0].logs["val_ppl"][-1] < a.runs[0].logs["val_ppl"][0]


def test_paired_table_pairs_seeds():
    scores = {"base": {0: {"ppl": 10.0, "agreement": 0.5, "rouge_l": 0.2, "exact_match": 0.1},
                       1: {"ppl": 12.0, "agreement": 0.4, "rouge_l": 0.3, "exact_match": 0.0}},
              "method": {0: {"ppl": 9.0, "agreement": 0.55, "rouge_l": 0.2, "exact_match": 0.1},
                         1: {"ppl": 12.5, "agreement": 0.42, "rouge_l": 0.3, "exact_match": 0.0}}}
    from cookbook.methods.llm import METRICS
    from cookbook.results import paired_table
    table = paired_table(scores, {"method": "base"}, METRICS, gain_metrics=("ppl", "agreement"), seconds={"method": 0.5})
    row = table.splitlines()[-1]
    assert "-0.25 (-1.00, +0.50) vs base" in row and "+3.50 (+5.0, +2.0) vs base" in row and row.endswith("| 2 | 0.50 |")


def test_adaptive_off_policy_follows_distillms_rule():
    sched = AdaptiveOffPolicy(total_steps=100, loss_eps=0.1, seed=0)
    assert sched.update(2.0) == 0.0                                 # the first validation is the reference
    assert sched.update(2.05) == 0.0 and sched.update(1.5) == 0.0   # not worse by 0.1: no change
    assert all(sched.choose(s) == "data" for s in range(50))        # threshold 0: always the data
    assert sched.update(2.1) == pytest.approx(0.1)                  # worse than the reference by >= 0.1
    assert sched.reference == 2.1 and sched.update(2.15) == pytest.approx(0.1)
    for _ in range(20):
        sched.update(sched.reference + 1)
    assert sched.threshold == 1.0                                   # capped
    assert sched.choose(0) == "fresh"                               # empty buffer: sample fresh
    sched.store("x")
    assert sched.replay() == "x"
    with pytest.raises(ValueError):
        AdaptiveOffPolicy(0)


def test_on_policy_batch_masks_the_generated_positions():
    student, teacher = _tiny(seed=2), _tiny(seed=3).eval()
    ids = torch.randint(V, (2, 10), generator=torch.Generator().manual_seed(1))
    new, target, mask = on_policy_batch(student, teacher, ids, prompt_len=4, k=5,
                                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(new[:, :4], ids[:, :4]) and new.shape == ids.shape
    assert isinstance(target, TopKTeacher) and target.indices.shape == (20, 5)
    assert mask.view(2, 10)[0].tolist() == [False] * 3 + [True] * 6 + [False]
    assert student.training


def test_fused_linear_ce_equals_token_ce():
    from cookbook.kernels import fused_linear_ce

    g = torch.Generator().manual_seed(0)
    h, w, ids = torch.randn(14, 8, generator=g, requires_grad=True), torch.randn(V, 8, generator=g), \
        torch.randint(V, (2, 7), generator=g)
    loss = fused_linear_ce(h, w, shift_labels(ids))
    want = token_ce((h @ w.T).view(2, 7, V), ids).sum() / 12
    assert loss.item() == pytest.approx(want.item(), abs=1e-4)
    loss.backward()
    assert torch.isfinite(h.grad).all() and h.grad[6].abs().sum() == 0          # the last position is ignored
    with pytest.raises(ValueError):
        fused_linear_ce(h, w, shift_labels(ids).view(2, 7))


def test_exercises_of_05b_accept_the_reference_and_reject_a_wrong_answer():
    from cookbook.exercises import llm_tokens as ex
    from cookbook.losses.selection import adaspec_select, ddk_domain_weights

    def dac(s, t, keep):
        lq = s.masked_fill(~keep, -math.inf).log_softmax(-1)
        lp = t.masked_fill(~keep, -math.inf).log_softmax(-1)
        return torch.where(keep, lp.exp() * (lp - lq), torch.zeros_like(lp)).sum(-1)

    assert ex.check_dac_kl_on_kept_set(dac) is True
    assert ex.check_dac_kl_on_kept_set(lambda s, t, keep: dac(s, t, torch.ones_like(keep))) is False
    assert ex.check_adaspec_select(adaspec_select) is True
    assert ex.check_adaspec_select(lambda d, r, k: adaspec_select(-d, -r, k)) is False
    assert ex.check_ddk_update(lambda s, t, p, alpha: ddk_domain_weights(s, t, previous=p, smoothing=alpha)) is True
    assert ex.check_ddk_update(lambda s, t, p, alpha: p) is False

    def stub(*args, **kwargs):
        raise NotImplementedError

    assert ex.check_ddk_update(stub) is None


def test_registry_stores_tied_weights_once_in_fp16(tmp_path, monkeypatch):
    from cookbook import assets, teachers
    from cookbook.teachers import registry

    monkeypatch.setattr(registry, "ASSETS", tmp_path)
    monkeypatch.setattr(assets, "ASSETS", tmp_path)
    monkeypatch.setattr(assets, "MANIFEST", tmp_path / "MANIFEST")
    monkeypatch.setattr(registry, "REGISTRY", {})
    trained = _tiny(seed=4)
    teachers.register(teachers.TeacherSpec("tiny-lm", lambda: _tiny(seed=9), lambda seed: (trained, {"ppl": 1.0}),
                                           "ppl", "a tied tiny LM", storage_dtype=torch.float16))
    card = registry.build("tiny-lm")
    from safetensors.torch import load_file
    stored = load_file(str(tmp_path / "teachers/tiny-lm.safetensors"))
    assert "lm_head.weight" not in stored and all(v.dtype == torch.float16 for v in stored.values())
    assert card["bytes"] < 4 * sum(p.numel() for p in trained.parameters())
    model = registry.load("tiny-lm")
    assert model.lm_head.weight is model.model.embed_tokens.weight          # still tied
    torch.testing.assert_close(model.lm_head.weight, trained.lm_head.weight.half().float())
    assert not any(p.requires_grad for p in model.parameters())
    broken = {k: v for k, v in stored.items() if "layers.0" not in k}
    from safetensors.torch import save_file
    save_file(broken, str(tmp_path / "teachers/tiny-lm.safetensors"))
    assets.register(tmp_path / "teachers/tiny-lm.safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        registry.load("tiny-lm")


def test_pretrained_student_is_registered_trainable_and_competent():
    from cookbook import teachers
    from cookbook.teachers.lm_student import NAME

    card = teachers.card(NAME)
    student = teachers.load(NAME, trainable=True)
    assert student.training and all(p.requires_grad for p in student.parameters())
    assert sum(p.numel() for p in student.parameters()) == card["parameters"]
    m = card["metrics"]
    assert {"test_ppl", "teacher_test_ppl", "steps", "tokens", "data"} <= set(m)
    assert isinstance(student, nn.Module) and student.config.vocab_size == 49_152
    frozen = teachers.load(NAME)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
