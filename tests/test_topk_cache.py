"""The teacher top-k cache: round trip, memory-mapped reads, checks, and what it costs in accuracy."""

import json

import numpy as np
import pytest
import torch

from cookbook.losses.llm import TopKTeacher, forward_kl
from cookbook.teachers.topk_cache import build_topk_cache, open_topk_cache, write_topk_cache


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
    # the same inputs and settings reuse the cache instead of running the teacher again
    again = build_topk_cache(None, ids, tmp_path / "c", k=5, T=1.0, teacher="bigram", progress=False)
    assert again.manifest == cache.manifest


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
