"""Tokenizer science: BPE training, data-mixture inference from a merge list (P69), StochasTok (P60).

- :func:`train_bpe` trains a byte-level BPE tokenizer with HF ``tokenizers`` (GPT-2's
  pre-tokenizer), :func:`merge_list` reads its ordered merges.
- :func:`merge_pair_counts` replays a merge list on one category's text and records, before
  every merge t, the count c_{i,t}(p) of every byte pair p (as deltas, the way the official
  code stores them); :func:`infer_mixture` solves the paper's linear program for the mixture
  weights alpha from those counts (Hayase, Liu et al., "Data Mixture Inference: What do BPE
  Tokenizers Reveal about their Training Data?", NeurIPS 2024, arXiv 2407.16607).
- :func:`stochastok_expansions` and :func:`stochastok_expand`: StochasTok's random splitting of
  tokens into two in-vocabulary parts (Sims et al., "StochasTok: Improving Fine-Grained Subword
  Understanding in LLMs", 2025, arXiv 2506.01687).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from cookbook.checks import check_int

Pair = tuple[str, str]
_LP_METHOD = "highs"


# ----------------------------------------------------------------------------------------------
# BPE with HF tokenizers


def train_bpe(texts, num_merges: int, *, min_frequency: int = 2):
    """A byte-level BPE ``tokenizers.Tokenizer`` with at most ``num_merges`` merges.

    ``texts``: an iterable of strings (documents). Pre-tokenizer and alphabet are GPT-2's
    (``ByteLevel``, regex split, no prefix space): 256 byte symbols, then one token per merge.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_int("num_merges", num_merges, 1)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=256 + num_merges, min_frequency=min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def merge_list(tokenizer) -> list[Pair]:
    """The ordered merges ``[(left, right), ...]`` of a BPE ``tokenizers.Tokenizer``."""
    model = json.loads(tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"need a BPE tokenizer, got model type {model.get('type')!r}")
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]


def pretoken_counts(pre_tokenizer, text: str, chunk_chars: int = 100_000) -> Counter:
    """How often each pre-token (in the tokenizer's byte-level alphabet) occurs in ``text``."""
    counts: Counter = Counter()
    lines = text.splitlines(keepends=True)
    chunk: list[str] = []
    size = 0
    for line in lines + [None]:
        if line is not None:
            chunk.append(line)
            size += len(line)
        if (line is None or size >= chunk_chars) and chunk:
            counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str("".join(chunk)))
            chunk, size = [], 0
    return counts


# ----------------------------------------------------------------------------------------------
# P69: data mixture inference


@dataclass
class PairCounts:
    """Byte-pair counts of one category's text while a merge list is replayed on it.

    ``initial``: {pair: count} before the first merge; ``deltas[t]``: {pair: new count} for
    every pair whose count changed when merge t was applied (so ``deltas[t]`` gives the counts
    seen before merge t+1); ``num_bytes``: UTF-8 bytes of the text (the normaliser d_i).
    """

    initial: dict[Pair, int]
    deltas: list[dict[Pair, int]]
    num_bytes: int


def merge_pair_counts(text: str, merges: list[Pair], pre_tokenizer) -> PairCounts:
    """Apply ``merges`` in order to ``text`` (split by ``pre_tokenizer``) and record pair counts.

    The standard incremental BPE bookkeeping: an index from each pair to the words holding it, so
    merge t only rewrites the words that contain its pair. Pairs never cross pre-token
    boundaries, as in BPE training.
    """
    words = pretoken_counts(pre_tokenizer, text)
    symbols = [list(w) for w in words]
    freq = list(words.values())
    counts: defaultdict[Pair, int] = defaultdict(int)
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for i, sym in enumerate(symbols):
        for p in zip(sym, sym[1:]):
            counts[p] += freq[i]
            where[p].add(i)
    initial = dict(counts)
    deltas = []
    for a, b in merges[:-1]:  # counts after the last merge are never compared
        changed: dict[Pair, int] = {}
        for i in list(where.pop((a, b), ())):
            sym, f = symbols[i], freq[i]
            for p in zip(sym, sym[1:]):
                counts[p] -= f
                changed[p] = counts[p]
            new, k = [], 0
            while k < len(sym):
                if k + 1 < len(sym) and sym[k] == a and sym[k + 1] == b:
                    new.append(a + b)
                    k += 2
                else:
                    new.append(sym[k])
                    k += 1
            symbols[i] = new
            for p in zip(new, new[1:]):
                counts[p] += f
                changed[p] = counts[p]
                where[p].add(i)
        deltas.append(changed)
    return PairCounts(initial, deltas, len(text.encode("utf-8")))


@dataclass
class MixtureEstimate:
    """The LP's answer: ``weights`` (category -> alpha_i, summing to 1) and its diagnostics."""

    weights: dict[str, float]
    objective: float
    rounds: int
    constraints: int
    missing_merges: int


def infer_mixture(merges: list[Pair], counts: dict[str, PairCounts], *, num_merges: int | None = None,
                  candidates_per_merge: int = 10, max_rounds: int = 50, tol: float = 1e-9) -> MixtureEstimate:
    """Solve P69's linear program for the category weights alpha of a BPE training set.

    With c_{i,t}(p) the count of pair p in category i's sample before merge t, d_i its bytes and
    m_t the t-th merge, BPE chose m_t because it was the most frequent pair of the mixture:
        sum_i alpha_i c_{i,t}(m_t)/d_i >= sum_i alpha_i c_{i,t}(p)/d_i   for all p != m_t.
    Samples are finite, so each inequality gets slack (v_t per merge, v_p per pair):
        min  sum_t v_t + sum_p v_p
        s.t. sum_i alpha_i (c_{i,t}(m_t) - c_{i,t}(p))/d_i + v_t + v_p >= 0,  alpha in the simplex,
             v >= 0.
    All (t, p) constraints are too many, so as in the official code they are added lazily: solve,
    find for every t the ``candidates_per_merge`` pairs that violate the constraint most at the
    current alpha, add them, solve again, until none is violated. Solved with HiGHS
    (``scipy.optimize.linprog``); the official code uses Gurobi, which gives the same optimum.
    """
    from scipy import sparse
    from scipy.optimize import linprog

    cats = list(counts)
    if not cats:
        raise ValueError("need the pair counts of at least one category")
    T = min(len(merges), num_merges or len(merges), *(len(c.deltas) + 1 for c in counts.values()))
    check_int("num_merges", T, 1)
    n = len(cats)
    denom = np.array([counts[c].num_bytes for c in cats], dtype=np.float64)

    pair_id: dict[Pair, int] = {}

    def pid(p: Pair) -> int:
        return pair_id.setdefault(p, len(pair_id))

    init = [{pid(p): v for p, v in counts[c].initial.items()} for c in cats]
    deltas = []  # per step: (ids, (n, k) counts after the change)
    for t in range(T - 1):
        step: dict[int, np.ndarray] = {}
        for j, c in enumerate(cats):
            for p, v in counts[c].deltas[t].items():
                step.setdefault(pid(p), np.full(n, np.nan))[j] = v
        ids = np.fromiter(step, dtype=np.int64, count=len(step))
        deltas.append((ids, np.stack([step[k] for k in ids], 1) if len(ids) else np.zeros((n, 0))))
    merge_ids = [pair_id.get(tuple(m), -1) for m in merges[:T]]
    P = len(pair_id)

    C0 = np.zeros((n, P))
    for j in range(n):
        C0[j, list(init[j])] = list(init[j].values())

    def history(w: np.ndarray):
        """Yield (t, counts (n, P) before merge t, mixture score w @ counts), updated by the deltas.

        A NaN in a delta means "this category's count did not change at this step".
        """
        C = C0.copy()
        score = w @ C
        for t in range(T):
            yield t, C, score
            if t < T - 1:
                ids, vals = deltas[t]
                sub = C[:, ids]
                keep = ~np.isnan(vals)
                sub[keep] = vals[keep]
                C[:, ids] = sub
                score[ids] = w @ sub

    alpha = np.full(n, 1.0 / n)
    v_t = np.zeros(T)
    v_p: dict[int, float] = {}
    rows: list[tuple[int, int, np.ndarray]] = []  # (t, pair, coefficient vector (n,))
    seen: set[tuple[int, int]] = set()
    objective, rounds = 0.0, 0
    missing = sum(m < 0 for m in merge_ids)
    for _ in range(max_rounds):
        rounds += 1
        w = alpha / denom
        pen = np.zeros(P)
        if v_p:
            pen[list(v_p)] = list(v_p.values())
        added = 0
        for t, C, mixed in history(w):
            m = merge_ids[t]
            if m < 0:
                continue
            score = mixed - pen  # (P,) mixture frequency of every pair, less its slack
            cutoff = mixed[m] + v_t[t] + tol
            over = np.flatnonzero(score > cutoff)
            over = over[over != m]
            if len(over) > candidates_per_merge:
                over = over[np.argpartition(-score[over], candidates_per_merge)[:candidates_per_merge]]
            for p in over:
                if (t, p) not in seen:
                    seen.add((t, int(p)))
                    rows.append((t, int(p), (C[:, m] - C[:, p]) / denom))
                    added += 1
        if added == 0:
            break
        # variables: alpha (n) | v_t (T) | v_p (one per pair that appears in a constraint)
        vp_index = {p: k for k, p in enumerate(sorted({p for _, p, _ in rows}))}
        nv = n + T + len(vp_index)
        r = len(rows)
        coef = np.stack([c for _, _, c in rows])                       # (r, n)
        i_idx = np.concatenate([np.repeat(np.arange(r), n), np.arange(r), np.arange(r)])
        j_idx = np.concatenate([np.tile(np.arange(n), r), n + np.array([t for t, _, _ in rows]),
                                n + T + np.array([vp_index[p] for _, p, _ in rows])])
        vals = np.concatenate([-coef.ravel(), -np.ones(r), -np.ones(r)])  # -(...) <= 0
        A = sparse.csr_matrix((vals, (i_idx, j_idx)), shape=(r, nv))
        cost = np.r_[np.zeros(n), np.ones(T + len(vp_index))]
        A_eq = sparse.csr_matrix((np.ones(n), (np.zeros(n, int), np.arange(n))), shape=(1, nv))
        res = linprog(cost, A_ub=A, b_ub=np.zeros(r), A_eq=A_eq, b_eq=[1.0],
                      bounds=[(0, 1)] * n + [(0, None)] * (nv - n), method=_LP_METHOD)
        if res.status != 0:
            raise RuntimeError(f"the mixture LP failed: {res.message}")
        alpha = np.clip(res.x[:n], 0, None)
        alpha /= alpha.sum()
        v_t = res.x[n:n + T]
        v_p = {p: res.x[n + T + k] for p, k in vp_index.items()}
        objective = float(res.fun)
    return MixtureEstimate(dict(zip(cats, alpha.tolist())), objective, rounds, len(rows), missing)


def mixture_error(true: dict[str, float], estimate: dict[str, float]) -> float:
    """Mean squared error over categories between true and estimated weights (the paper's metric)."""
    if set(true) != set(estimate):
        raise ValueError(f"categories differ: {sorted(true)} vs {sorted(estimate)}")
    return float(np.mean([(true[c] - estimate[c]) ** 2 for c in true]))


# ----------------------------------------------------------------------------------------------
# P60: StochasTok


def stochastok_expansions(vocab: dict[str, int]) -> dict[int, list[tuple[int, int]]]:
    """Every way to split each multi-symbol token into two tokens that are both in ``vocab``.

    ``vocab``: token string -> id (a tokenizer's ``get_vocab()``; byte-level symbols). As in the
    official ``StochastokProcessor.build_expansions``: for token s, each cut point j with
    s[:j] and s[j:] in the vocabulary gives one expansion (id(s[:j]), id(s[j:])).
    """
    out: dict[int, list[tuple[int, int]]] = {}
    for s, i in vocab.items():
        splits = [(vocab[s[:j]], vocab[s[j:]]) for j in range(1, len(s)) if s[:j] in vocab and s[j:] in vocab]
        if splits:
            out[i] = splits
    return out


def stochastok_expand(ids: list[int], expansions: dict[int, list[tuple[int, int]]], p: float,
                      rng: np.random.Generator) -> list[int]:
    """StochasTok: try ``int(len(ids) * p)`` times to split a random token into a random expansion.

    Each try picks a position uniformly in the current (growing) sequence; a token without an
    expansion (a single byte) is left as it is, and a piece made by an earlier split can be split
    again. The text is unchanged: only its segmentation is (Sims et al. 2025, Alg. 1; ``p`` is
    their ``expand_prop``, 0.1 in the paper's pretraining runs).
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p (the share of tokens to try splitting) must be in [0, 1], got {p}")
    ids = list(ids)
    for _ in range(int(len(ids) * p)):
        k = int(rng.integers(len(ids)))
        choices = expansions.get(ids[k])
        if choices:
            ids[k:k + 1] = choices[int(rng.integers(len(choices)))]
    return ids


# ----------------------------------------------------------------------------------------------
# P60's multi-digit addition experiment


MODES = ("base", "stochastok", "char")


@dataclass
class AdditionTask:
    """Lines ``"a+b=c\\n"`` under a byte-level BPE, as in StochasTok's multi-digit addition runs.

    ``train_pairs`` / ``test_pairs``: (N, 2) int arrays of disjoint operand pairs. ``ids``: every
    token id the task can produce (deterministic tokens of all lines, single characters, and the
    StochasTok pieces they split into) mapped to a compact range so a tiny LM's head stays small;
    ``vocab_size`` is that range.
    """

    tokenizer: object
    expansions: dict[int, list[tuple[int, int]]]
    train_pairs: np.ndarray
    test_pairs: np.ndarray
    ids: dict[int, int]

    @property
    def vocab_size(self) -> int:
        return len(self.ids)

    def encode(self, text: str, mode: str) -> list[int]:
        """Compact ids of ``text``: the tokenizer's segmentation ("base"), or one token per character ("char")."""
        if mode == "char":
            return [self.ids[self.tokenizer.encode(ch).ids[0]] for ch in text]
        return [self.ids[i] for i in self.tokenizer.encode(text).ids]

    def decode(self, ids: list[int]) -> str:
        inverse = {k: i for i, k in self.ids.items()}
        return self.tokenizer.decode([inverse[k] for k in ids])


def addition_task(tokenizer, digits: int, n_train: int, n_test: int, seed: int = 0) -> AdditionTask:
    """Random operand pairs below 10**digits, split into disjoint train and test sets (no pair in both)."""
    check_int("digits", digits, 1)
    rng = np.random.default_rng(seed)
    space = 10 ** (2 * digits)
    if n_train + n_test > space:
        raise ValueError(f"only {space} pairs of {digits}-digit numbers, asked for {n_train + n_test}")
    flat = rng.choice(space, size=n_train + n_test, replace=False)
    pairs = np.stack([flat // 10 ** digits, flat % 10 ** digits], 1)
    expansions = stochastok_expansions(tokenizer.get_vocab())
    used = {tokenizer.encode(ch).ids[0] for ch in "0123456789+=\n"}
    for a, b in pairs:
        used.update(tokenizer.encode(f"{a}+{b}={a + b}\n").ids)
    todo = list(used)
    while todo:  # close under splitting: StochasTok may produce any piece of any token used
        for piece in (x for pair in expansions.get(todo.pop(), []) for x in pair):
            if piece not in used:
                used.add(piece)
                todo.append(piece)
    ids = {i: k for k, i in enumerate(sorted(used))}
    return AdditionTask(tokenizer, expansions, pairs[:n_train], pairs[n_train:], ids)


def addition_stream(task: AdditionTask, mode: str, *, p: float = 0.1, seed: int = 0,
                    lines_per_doc: int = 50, epochs: int = 1):
    """The training stream (1-d LongTensor of compact ids): ``epochs`` passes over the train lines.

    Each pass shuffles the lines and groups them in documents of ``lines_per_doc``; "stochastok"
    expands each document's deterministic tokens with :func:`stochastok_expand` (a fresh draw per
    pass: the official code expands its one-pass data once, and a short run that repeats a fixed
    expansion would memorise it); "char" uses one token per character.
    """
    import torch

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_int("epochs", epochs, 1)
    rng = np.random.default_rng(seed)
    inverse = {k: i for i, k in task.ids.items()}
    out: list[int] = []
    for _ in range(epochs):
        pairs = task.train_pairs[rng.permutation(len(task.train_pairs))]
        for start in range(0, len(pairs), lines_per_doc):
            text = "".join(f"{a}+{b}={a + b}\n" for a, b in pairs[start:start + lines_per_doc])
            doc = task.encode(text, "char" if mode == "char" else "base")
            if mode == "stochastok":
                doc = [task.ids[i] for i in stochastok_expand([inverse[k] for k in doc], task.expansions, p, rng)]
            out += doc
    return torch.tensor(out, dtype=torch.long)


def addition_scores(model, task: AdditionTask, mode: str, n: int | None = None) -> dict[str, float]:
    """Exact-match accuracy of greedy answers and bits per byte on held-out lines.

    Prompts ``"a+b="`` are tokenized deterministically (one token per character for "char"
    models), answers decoded to text and compared with ``str(a + b)``. Bits per byte score the
    whole line ``"a+b=c\\n"`` after a ``"\\n"`` context token, so models with different
    segmentations are compared per byte (:func:`cookbook.metrics.bits_per_byte`).
    """
    import torch

    from cookbook.metrics import bits_per_byte
    from cookbook.models.lm import continue_ids

    enc_mode = "char" if mode == "char" else "base"
    pairs = task.test_pairs[:n]
    groups: dict[int, list[tuple[list[int], str]]] = defaultdict(list)
    for a, b in pairs:
        prompt = task.encode(f"{a}+{b}=", enc_mode)
        groups[len(prompt)].append((prompt, str(a + b)))
    correct, nll, nbytes = 0, 0.0, 0
    width = len(str(2 * 10 ** len(str(pairs.max())))) + 1
    model.eval()
    with torch.no_grad():
        for items in groups.values():
            ids = torch.tensor([p for p, _ in items])
            out = continue_ids(model, ids, width)[:, ids.shape[1]:]
            for row, (_, answer) in zip(out.tolist(), items):
                correct += task.decode(row).split("\n", 1)[0] == answer
        newline = task.encode("\n", enc_mode)
        for a, b in pairs:
            line = f"{a}+{b}={a + b}\n"
            x = torch.tensor([newline + task.encode(line, enc_mode)])
            logp = model(x).logits[0, :-1].float().log_softmax(-1)
            nll -= logp.gather(1, x[0, 1:, None]).sum().item()
            nbytes += len(line.encode())
    return {"accuracy": correct / len(pairs), "bpb": bits_per_byte(nll, nbytes)}


# ----------------------------------------------------------------------------------------------
# P10: a byte/word hierarchical model against a BPE model, both in bits per byte


def token_windows(tokenizer, text: str, seq_len: int):
    """(N, seq_len) token ids of ``text`` and (N, seq_len) bytes per token (byte-level BPE: one symbol = one byte)."""
    import torch

    enc = tokenizer.encode(text)
    n = len(enc.ids) // seq_len * seq_len
    ids = torch.tensor(enc.ids[:n], dtype=torch.long).view(-1, seq_len)
    nbytes = torch.tensor([len(t) for t in enc.tokens[:n]], dtype=torch.long).view(-1, seq_len)
    return ids, nbytes


def word_windows(text: str, words_per_row: int, max_bytes: int):
    """(N, words_per_row, max_bytes) byte ids of ``text``'s words (``cookbook.models.hierarchical``)."""
    from cookbook.models.hierarchical import pack_words, split_words

    packed = pack_words(split_words(text), max_bytes)
    n = len(packed) // words_per_row * words_per_row
    return packed[:n].view(-1, words_per_row, max_bytes)


def bits_per_byte_of(model, windows, token_bytes=None, batch_size: int = 32) -> float:
    """Held-out bits per byte of a token LM (``token_bytes`` given) or a ``HierarchicalLM`` (None).

    Token LM: NLL of tokens 2..L of every window over the bytes of those tokens. Hierarchical: its
    own NLL of words 2..W (bytes and end-of-word symbols) over their bytes. Either way the first
    unit of a window is context only, and the denominator is bytes (``metrics.bits_per_byte``).
    """
    import torch

    from cookbook.metrics import bits_per_byte

    nll, nbytes = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            x = windows[start:start + batch_size]
            if token_bytes is None:
                part, count = model(x)
                nll, nbytes = nll + float(part), nbytes + count
            else:
                logp = model(x).logits[:, :-1].float().log_softmax(-1)
                nll -= logp.gather(-1, x[:, 1:, None]).sum().item()
                nbytes += int(token_bytes[start:start + batch_size, 1:].sum())
    return bits_per_byte(nll, nbytes)
