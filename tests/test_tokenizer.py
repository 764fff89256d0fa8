"""Notebook 08b's tokenizer science: bits per byte, BPE pair counts, P69's mixture LP, P60's StochasTok."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from cookbook import metrics
from cookbook.data.gpt2_bpe import gpt2_tokenizer, load_gpt2_merges
from cookbook.data.textmix import CATEGORIES, is_language, load_textmix, strip_groff
from cookbook.methods import tokenizer as T

# ---------------------------------------------------------------- bits per byte


def test_bits_per_byte_uniform_byte_model_is_8():
    text = "héllo wörld"  # 13 UTF-8 bytes, 11 characters: the denominator is bytes
    n = len(text.encode("utf-8"))
    assert metrics.bits_per_byte(n * math.log(256), n) == pytest.approx(8.0)


def test_bits_per_byte_does_not_depend_on_the_segmentation():
    # the same probability of a text split into 1 token or into 4: same bpb, different per-token ppl
    p_text = 0.01
    one = -math.log(p_text)
    four = [-math.log(p_text ** 0.25)] * 4
    assert metrics.bits_per_byte(one, 8) == pytest.approx(metrics.bits_per_byte(sum(four), 8))
    assert metrics.perplexity(one / 1) != pytest.approx(metrics.perplexity(sum(four) / 4))


@pytest.mark.parametrize("nll, n", [(1.0, 0), (1.0, -3), (1.0, 2.5), (-0.1, 4), (float("nan"), 4), (float("inf"), 4)])
def test_bits_per_byte_bad_input(nll, n):
    with pytest.raises(ValueError):
        metrics.bits_per_byte(nll, n)


def test_bits_per_byte_accepts_a_tensor_sum():
    assert metrics.bits_per_byte(torch.tensor(2 * math.log(2)), 2) == pytest.approx(1.0)


# ---------------------------------------------------------------- data


def test_textmix_categories_and_pools_are_disjoint():
    tm = load_textmix()
    assert set(tm.docs) == set(CATEGORIES)
    for c in CATEGORIES:
        assert tm.nbytes(c, "train") > 100_000 and tm.nbytes(c, "count") > 50_000
        assert not set(tm.docs[c]["train"]) & set(tm.docs[c]["count"])
    with pytest.raises(ValueError, match="category"):
        tm.text("klingon")


def test_strip_groff_and_language_filter():
    page = '.TH LS 1\n.\\" a comment\n.SH BESCHREIBUNG\n\\fBls\\fP zeigt die Dateien und \\(:ubrigen Verzeichnisse.\n.de XX\nbody\n..\n'
    text = strip_groff(page)
    assert text == "BESCHREIBUNG\nls zeigt die Dateien und übrigen Verzeichnisse."
    assert is_language("der die und ist nicht " * 10, "german")
    assert not is_language("the and is of to " * 10 + "der die", "german")


def test_gpt2_tokenizer_gives_the_canonical_ids():
    assert load_gpt2_merges()[:2] == [("Ġ", "t"), ("Ġ", "a")]
    assert gpt2_tokenizer().encode("Hello world").ids == [15496, 995]


# ---------------------------------------------------------------- BPE replay and P69


def _by_hand_pairs(words: Counter) -> Counter:
    out = Counter()
    for w, f in words.items():
        for p in zip(w, w[1:]):
            out[p] += f
    return out


def test_merge_pair_counts_matches_a_recount_after_each_merge():
    text = "the cat sat on the mat; the rat ate the hat. " * 3 + "aaaa aaa"
    tok = T.train_bpe([text], 12, min_frequency=1)
    merges = T.merge_list(tok)
    counts = T.merge_pair_counts(text, merges, tok.pre_tokenizer)
    words = T.pretoken_counts(tok.pre_tokenizer, text)
    segs = {w: list(w) for w in words}
    running = dict(counts.initial)
    for t, (a, b) in enumerate(merges[:-1]):
        for w, s in segs.items():  # apply merge t by hand, left to right
            out, k = [], 0
            while k < len(s):
                if k + 1 < len(s) and (s[k], s[k + 1]) == (a, b):
                    out.append(a + b)
                    k += 2
                else:
                    out.append(s[k])
                    k += 1
            segs[w] = out
        running.update(counts.deltas[t])
        expected = _by_hand_pairs(Counter({tuple(s): words[w] for w, s in segs.items()}))
        assert {p: c for p, c in running.items() if c} == dict(expected)
    assert counts.num_bytes == len(text.encode())


def test_merge_list_is_the_training_order():
    tok = T.train_bpe(["ab ab ab ab abc abc"], 3, min_frequency=1)
    assert T.merge_list(tok)[0] == ("a", "b")




def test_infer_mixture_recovers_the_weights_of_a_real_bpe_run():
    tm = load_textmix()
    cats = ["english", "python", "german"]
    alpha = {"english": 0.6, "python": 0.3, "german": 0.1}
    budget = 60_000
    docs = [tm.text(c, "train").encode()[: int(alpha[c] * budget)].decode(errors="ignore") for c in cats]
    tok = T.train_bpe(docs, 120)
    merges = T.merge_list(tok)
    counts = {c: T.merge_pair_counts(tm.text(c, "count")[:80_000], merges, tok.pre_tokenizer) for c in cats}
    est = T.infer_mixture(merges, counts)
    assert sum(est.weights.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in est.weights.values())
    assert T.mixture_error(alpha, est.weights) < 0.01
    assert max(est.weights, key=est.weights.get) == "english"


def test_infer_mixture_is_exact_when_counts_are_the_training_data():
    # with the tokenizer's own training text as the "sample", every constraint holds with zero slack
    texts = {"a": "aaab aaab abab abab " * 20, "b": "cdcd cdcd ccdd cccd " * 20}
    alpha = {"a": 0.5, "b": 0.5}
    tok = T.train_bpe(list(texts.values()), 6, min_frequency=1)
    merges = T.merge_list(tok)
    counts = {c: T.merge_pair_counts(t, merges, tok.pre_tokenizer) for c, t in texts.items()}
    est = T.infer_mixture(merges, counts)
    assert est.objective == pytest.approx(0.0, abs=1e-9)
    assert T.mixture_error(alpha, est.weights) < 0.05


def test_infer_mixture_bad_input():
    with pytest.raises(ValueError, match="at least one category"):
        T.infer_mixture([("a", "b")], {})
    with pytest.raises(ValueError, match="categories differ"):
        T.mixture_error({"a": 1.0}, {"b": 1.0})


# ---------------------------------------------------------------- P60 StochasTok


def test_stochastok_expansions_are_every_in_vocab_split():
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}
    exp = T.stochastok_expansions(vocab)
    assert sorted(exp[5]) == [(0, 4), (3, 2)]
    assert exp[3] == [(0, 1)] and 0 not in exp


def test_stochastok_expand_keeps_the_text_and_lengthens():
    tok = gpt2_tokenizer()
    vocab = tok.get_vocab()
    exp = T.stochastok_expansions({s: i for s, i in vocab.items() if len(s) <= 6})
    text = "The quick brown fox jumps over the lazy dog while counting strawberries." * 4
    ids = tok.encode(text).ids
    rng = np.random.default_rng(0)
    out = T.stochastok_expand(ids, exp, 0.5, rng)
    assert tok.decode(out) == tok.decode(ids) == text
    assert len(ids) < len(out) <= len(ids) + int(len(ids) * 0.5)
    assert T.stochastok_expand(ids, exp, 0.0, rng) == ids
    with pytest.raises(ValueError, match="p"):
        T.stochastok_expand(ids, exp, 1.5, rng)


def test_addition_task_streams_and_scores():
    tok = gpt2_tokenizer()
    task = T.addition_task(tok, 2, 300, 20, seed=0)
    train = {tuple(p) for p in task.train_pairs.tolist()}
    assert not train & {tuple(p) for p in task.test_pairs.tolist()}
    base = T.addition_stream(task, "base")
    char = T.addition_stream(task, "char")
    sto = T.addition_stream(task, "stochastok", p=0.5, seed=0)  # same seed: same line order
    assert task.decode(base.tolist()) == task.decode(char.tolist()) == task.decode(sto.tolist())
    assert len(base) < len(sto) < len(char)
    assert int(max(base.max(), sto.max(), char.max())) < task.vocab_size
    with pytest.raises(ValueError, match="mode"):
        T.addition_stream(task, "bytes")
    with pytest.raises(ValueError, match="pairs"):
        T.addition_task(tok, 1, 90, 20)
    from cookbook.models.lm import tiny_llama

    model = tiny_llama(vocab_size=task.vocab_size, hidden=16, layers=1, heads=2, intermediate=32, max_len=32)
    scores = T.addition_scores(model, task, "base", n=5)
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert scores["bpb"] > 0  # an untrained model: about log2(vocab) bits per token spread over the bytes


# ---------------------------------------------------------------- P10 hierarchical model


def test_split_and_pack_words_round_trip():
    from cookbook.models.hierarchical import BYTE_PAD, pack_words, split_words

    text = "Tab\tand  two spaces,\nnewline; über-long-word-that-is-cut "
    words = split_words(text)
    assert b"".join(words) == text.encode("utf-8")
    packed = pack_words(words, 8)
    assert packed.shape[1] == 8 and (packed == BYTE_PAD).any()
    assert bytes(b for b in packed.flatten().tolist() if b != BYTE_PAD) == text.encode("utf-8")


def test_hierarchical_lm_is_causal_over_words_and_learns():
    from cookbook.models.hierarchical import HierarchicalLM

    torch.manual_seed(0)
    model = HierarchicalLM(dim=16, backbone_dim=32, heads=2, max_words=8, max_bytes=6)
    words = T.word_windows("the cat sat on the mat and the dog sat on the log " * 4, 8, 6)
    nll, n = model(words)
    assert torch.isfinite(nll) and n == int((words[:, 1:] != 256).sum())
    # the NLL of word k+1 must not depend on later words: perturb the last word only
    model.eval()
    changed = torch.cat([words[:, :-1], torch.full_like(words[:, -1:], 97)], 1)
    a, b = model.word_nll(words)[0], model.word_nll(changed)[0]
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5) and not torch.allclose(a[:, -1], b[:, -1])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = model(words)[0] / n
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    with pytest.raises(ValueError, match="max_bytes"):
        model(torch.zeros(1, 3, 5, dtype=torch.long))


def test_bits_per_byte_of_a_token_model_uses_token_bytes():
    from cookbook.models.lm import tiny_llama

    tok = T.train_bpe(["hello world, hello tokens " * 20], 20, min_frequency=1)
    ids, nbytes = T.token_windows(tok, "hello world, hello tokens " * 10, 8)
    assert int(nbytes.sum()) == sum(len(t) for t in tok.encode("hello world, hello tokens " * 10).tokens[: ids.numel()])
    model = tiny_llama(vocab_size=tok.get_vocab_size(), hidden=16, layers=1, heads=2, intermediate=32, max_len=8)
    bpb = T.bits_per_byte_of(model, ids, nbytes)
    assert 0 < bpb < 3 * math.log2(tok.get_vocab_size())


def test_merge_list_rejects_a_non_bpe_tokenizer():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match="BPE"):
        T.merge_list(Tokenizer(models.WordLevel({"a": 0}, unk_token="a")))
    with pytest.raises(ValueError, match="num_merges"):
        T.train_bpe(["abc"], 0)


def test_addition_stream_epochs_reshuffle_and_redraw():
    task = T.addition_task(gpt2_tokenizer(), 2, 200, 10, seed=0)
    one = T.addition_stream(task, "stochastok", p=0.5, seed=0)
    two = T.addition_stream(task, "stochastok", p=0.5, seed=0, epochs=2)
    text = task.decode(two.tolist())
    assert sorted(text.splitlines()) == sorted(task.decode(one.tolist()).splitlines() * 2)
    assert text[: len(text) // 2] != text[len(text) // 2:]  # the second pass is a new order
