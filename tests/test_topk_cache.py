"""The teacher top-k cache: round trip, memory-mapped reads, checks, and what it costs in accuracy."""

import json

import numpy as np
import pytest
import torch

from cookbook.losses.llm import TopKTeacher, forward_kl
from cookbook.teachers.topk_cache import build_topk_cache, open_topk_cache, write_topk_cache
from cookbook.utils import weights_fingerprint


class Bigram(torch.nn.Module):
    """A tiny 'causal LM': the next-token logits depend on the current token only."""

    def __init__(self, vocab=50, seed=0):
        super().__init__()
        self.table = torch.nn.Parameter(3 * torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)))

    def forward(self, ids):
        return self.table[ids]  # (B, L, V)


def test_build_round_trip_matches_the_teacher(tmp_path):
    model, ids = Bigram(), torch.randint(50, (10, 7), generator=torch.Generator().manual_seed(1))
    cache = build_topk_cache(model, ids, tmp_path / "c", k=5, T=1.0, dtype=torch.float32,
                             batch_size=3, teacher="bigram", vocab_size=50, progress=False,
                             extras={"domain": torch.arange(10) % 2})
    assert len(cache) == 10 and cache.k == 5 and cache.vocab_size == 50
    assert isinstance(cache.input_ids, np.memmap)
    rows = [2, 7]
    dense = torch.log_softmax(model(ids[rows]), -1).flatten(0, 1)
    top = cache.teacher(rows)
    want = TopKTeacher.from_logits(model(ids[rows]).flatten(0, 1), 5)
    torch.testing.assert_close(top.logprobs, want.logprobs)
    assert torch.equal(top.indices, want.indices)
    target = cache.get("target_logprobs", rows)
    torch.testing.assert_close(target[:, :-1].flatten(), dense.view(2, 7, 50)[:, :-1].gather(
        -1, ids[rows][:, 1:, None]).flatten())
    assert torch.isnan(target[:, -1]).all()
    assert cache.get("domain", rows).tolist() == [0, 1]
    assert cache.teacher(rows, k=2).indices.shape == (14, 2)
    # the same teacher, inputs and settings reuse the cache instead of running the teacher again
    again = build_topk_cache(model, ids, tmp_path / "c", k=5, T=1.0, teacher="bigram", progress=False)
    assert again.manifest == cache.manifest
    assert cache.manifest["teacher_fingerprint"] == weights_fingerprint(model)


def test_topk_loss_error_shrinks_with_k(tmp_path):
    model, ids = Bigram(seed=3), torch.randint(50, (4, 6), generator=torch.Generator().manual_seed(2))
    student = torch.randn(24, 50, generator=torch.Generator().manual_seed(4))
    dense = forward_kl(student, model(ids).flatten(0, 1).detach())
    errors = []
    for k in (1, 5, 20, 50):
        top = build_topk_cache(model, ids, tmp_path / f"k{k}", k=k, dtype=torch.float32,
                               vocab_size=50, progress=False).teacher(slice(None))
        errors.append(float((dense - forward_kl(student, top)).abs()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-4


def test_bad_caches(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        open_topk_cache(tmp_path / "missing")
    ids = torch.zeros(2, 3, dtype=torch.long)
    idx, lp = torch.zeros(2, 3, 1, dtype=torch.long), torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="vocab_size"):
        write_topk_cache(tmp_path / "a", ids, idx + 9, lp, vocab_size=5, temperature=1, teacher="x")
    with pytest.raises(ValueError, match=r"\(S, L, k\)"):
        write_topk_cache(tmp_path / "a", ids, idx[:1], lp, vocab_size=5, temperature=1, teacher="x")
    with pytest.raises(ValueError, match="float16 or float32"):
        write_topk_cache(tmp_path / "a", ids, idx, lp.double(), vocab_size=5, temperature=1, teacher="x")
    cache = write_topk_cache(tmp_path / "b", ids, idx, lp, vocab_size=5, temperature=1, teacher="x")
    with pytest.raises(ValueError, match=r"k must be in \[1, 1\]"):
        cache.teacher([0], k=2)
    np.save(tmp_path / "b" / "topk_logprobs.npy", np.ones((2, 3, 1), np.float32))  # tampered
    with pytest.raises(ValueError, match="sha256"):
        open_topk_cache(tmp_path / "b")
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(dict(man, format="v0")))
    with pytest.raises(ValueError, match="cookbook-topk-v2"):
        open_topk_cache(tmp_path / "b")


# ----------------------------------------------------------------------------- stale or broken caches


def _tiny(tmp_path, model=None, **kw):
    model = model or Bigram()
    ids = torch.randint(50, (4, 6), generator=torch.Generator().manual_seed(1))
    args = {"k": 4, "T": 1.0, "teacher": "", "vocab_size": 50, "progress": False, **kw}
    return build_topk_cache(model, ids, tmp_path / "c", **args), model, ids


@pytest.mark.parametrize("change", ["weights", "k", "T", "teacher", "tokenizer", "inputs"])
def test_build_refuses_a_folder_built_by_another_teacher_or_setting(tmp_path, change):
    cache, model, ids = _tiny(tmp_path)
    other = {"weights": {"model": Bigram(seed=9)}, "k": {"k": 3}, "T": {"T": 2.0},
             "teacher": {"teacher": "someone"}, "tokenizer": {"tokenizer": "abc"}, "inputs": {}}[change]
    model_ = other.pop("model", model)
    ids_ = ids.flip(0) if change == "inputs" else ids
    args = {"k": 4, "T": 1.0, "teacher": "", "vocab_size": 50, "progress": False, **other}
    with pytest.raises(ValueError, match="holds another teacher cache"):
        build_topk_cache(model_, ids_, tmp_path / "c", **args)
    rebuilt = build_topk_cache(model_, ids_, tmp_path / "c", overwrite=True, **args)
    assert rebuilt.manifest["teacher_fingerprint"] == weights_fingerprint(model_)


def _arrays(k=4, V=50, S=3, L=5):
    ids = torch.randint(V, (S, L), generator=torch.Generator().manual_seed(0))
    top = torch.randn(S, L, V, generator=torch.Generator().manual_seed(1)).log_softmax(-1).topk(k, -1)
    return ids, top.indices, top.values


@pytest.mark.parametrize("bad, match", [
    ("nan", "NaN or inf"), ("logits", "not log-probabilities"), ("T0", "temperature"), ("Tinf", "temperature"),
    ("dup", "same token id twice"), ("order", "most likely first"), ("k>V", "k = "), ("float_ids", "integer"),
    ("range", r"\[0, vocab_size"), ("mask", "mask must be"), ("extra", "extra array"), ("target", "target_logprobs"),
])
def test_write_refuses_arrays_that_would_corrupt_training(tmp_path, bad, match):
    ids, idx, lp = _arrays()
    kw = {"vocab_size": 50, "temperature": 1.0, "teacher": "t"}
    if bad == "nan":
        lp[0, 0, 0] = float("nan")
    elif bad == "logits":
        lp = lp + 5.0
    elif bad in ("T0", "Tinf"):
        kw["temperature"] = 0.0 if bad == "T0" else float("inf")
    elif bad == "dup":
        idx[1, 2, 1] = idx[1, 2, 0]
    elif bad == "order":
        lp = lp.flip(-1)
    elif bad == "k>V":
        kw["vocab_size"] = 3
        idx = idx % 3
    elif bad == "float_ids":
        idx = idx.float()
    elif bad == "range":
        idx[0, 0, 0] = 50
    elif bad == "mask":
        kw["mask"] = torch.ones(3, 4, dtype=torch.bool)
    elif bad == "extra":
        kw["extras"] = {"domain": torch.zeros(2)}
    elif bad == "target":
        kw["target_logprobs"] = torch.full((3, 5), 0.5)
    with pytest.raises(ValueError, match=match):
        write_topk_cache(tmp_path / "w", ids, idx, lp, **kw)


def test_open_refuses_arrays_of_inconsistent_shapes(tmp_path):
    cache, _, _ = _tiny(tmp_path)
    np.save(cache.path / "topk_logprobs.npy", np.zeros((4, 6, 3), np.float16))   # k = 3, manifest says 4
    with pytest.raises(ValueError, match="not a consistent teacher cache"):
        open_topk_cache(cache.path, verify=False)
