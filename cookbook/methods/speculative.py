r"""Speculative decoding, implemented once (notebook 06a): draft, verify, keep the target's output.

A cheap *drafter* proposes $\gamma$ tokens $x_1..x_\gamma$; the target scores the prefix and all
of them in **one** forward, giving $p_1..p_{\gamma+1}$; a verification rule keeps a prefix of the
drafts and adds one token of its own, so every target call yields between 1 and $\gamma + 1$ tokens.

- **Greedy verification** keeps $x_i$ while $x_i = \arg\max p_i$ and then emits $\arg\max p_{n+1}$:
  the output is the target's greedy output, token for token.
- **Speculative sampling** (Leviathan, Kalman & Matias, ICML 2023, arXiv 2211.17192, Alg. 1;
  Chen et al., 2023, arXiv 2302.01318, Alg. 2): keep $x_i$ with probability
  $\min(1, p_i(x_i) / q_i(x_i))$; at the first rejection emit a token from the residual
  $\mathrm{norm}(\max(0, p_i - q_i))$; if all $\gamma$ are kept, emit the *bonus* token from
  $p_{\gamma+1}$. Every emitted token is distributed exactly as the target's sample would be.

Drafters: :class:`ModelDrafter` (a small LM with its own KV cache), :class:`PromptLookupDrafter`
(copy the tokens that followed the last n-gram's earlier occurrence: "prompt lookup decoding",
Saxena 2023, the ``prompt_lookup_num_tokens`` of transformers) and :class:`TokenRecyclingDrafter`
(the target's own past top-k candidates, in an adjacency matrix; it ``observe``s every target
call) and :class:`FeatureDrafter` (a feature-level head, EAGLE / FSPAD, reading the target's
hidden states, also through ``observe``). A deterministic drafter has $q = $ one-hot, for which the rule above is still exact.

Not lossless, and not speculative decoding: :func:`routed_generate` (R2R, small-large token
routing) lets the draft write every token a trained router does not send to the target.

The loop keeps both KV caches and rolls them back (``DynamicCache.crop``) after a rejection, so a
call costs one target forward of $\gamma + 1$ new positions. It decodes one sequence (batch 1),
the setting of the speed-up numbers of the papers and of Spec-Bench. The trace it returns
(accepted drafts per target call) feeds ``cookbook.metrics.acceptance_stats``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cookbook.checks import check_int, check_temperature, check_tensor

# ----------------------------------------------------------------------------- the verification rules


def greedy_verify(draft_tokens: Tensor, target_logits: Tensor) -> tuple[int, int]:
    """Greedy verification: (number of drafts kept, the target's next token after them).

    draft_tokens (g,) int; target_logits (g + 1, V): row i scores the position of draft i, the
    last row the position after all g drafts (the bonus token).
    """
    _check_block(draft_tokens, target_logits)
    pred = target_logits.argmax(-1)                                         # (g + 1,)
    n = int((pred[:-1] == draft_tokens).int().cumprod(0).sum())
    return n, int(pred[n])


def rejection_verify(draft_tokens: Tensor, draft_probs: Tensor | None, target_probs: Tensor, *,
                     generator: torch.Generator | None = None) -> tuple[int, int]:
    r"""The speculative-sampling rule: (number of drafts kept, the token emitted after them).

    Keep $x_i$ if $r_i < p_i(x_i) / q_i(x_i)$, $r_i \sim U(0, 1)$; at the first rejection emit a
    token from $\max(0, p_i - q_i)$ renormalised; after $g$ acceptances emit one from $p_{g+1}$.
    draft_tokens (g,); draft_probs (g, V), or None for a deterministic drafter (q = one-hot on
    x_i); target_probs (g + 1, V). Leviathan et al. 2023 Alg. 1 / Chen et al. 2023 Alg. 2.
    """
    _check_block(draft_tokens, target_probs)
    g = len(draft_tokens)
    if draft_probs is not None and draft_probs.shape != (g, target_probs.shape[1]):
        raise ValueError(f"draft_probs must be (g, V) = {(g, target_probs.shape[1])}, got {tuple(draft_probs.shape)}")
    for i in range(g):
        x = int(draft_tokens[i])
        q = draft_probs[i] if draft_probs is not None else torch.zeros_like(target_probs[i]).index_fill_(0, torch.tensor([x]), 1.0)
        if q[x] <= 0:
            raise ValueError(f"draft token {x} at position {i} has draft probability 0: it cannot have been sampled")
        r = torch.rand((), generator=generator, dtype=torch.float64)
        if r * q[x] < target_probs[i, x]:
            continue
        residual = (target_probs[i] - q).clamp_min(0)
        if residual.sum() <= 0:             # p == q up to rounding: rejection had probability ~0
            residual = target_probs[i]
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    return g, int(torch.multinomial(target_probs[g], 1, generator=generator))


def _check_block(draft_tokens: Tensor, target: Tensor) -> None:
    check_tensor("draft_tokens", draft_tokens, ndim=1)
    check_tensor("target scores", target, ndim=2)
    if target.shape[0] != len(draft_tokens) + 1:
        raise ValueError(f"the target must score g + 1 = {len(draft_tokens) + 1} positions (the drafts and "
                         f"the bonus), got {target.shape[0]}")
    if len(draft_tokens) and (draft_tokens.min() < 0 or draft_tokens.max() >= target.shape[1]):
        raise ValueError(f"draft tokens must be in [0, V={target.shape[1]})")


# ----------------------------------------------------------------------------- KV caches


def _cache(out):
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


def _crop(cache, length: int) -> None:
    """Keep the first ``length`` positions of a transformers DynamicCache (a no-op if shorter)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


class _Cached:
    """A causal LM with a KV cache over a growing sequence: ``logits(ids)`` feeds only the
    positions not yet cached and returns their logits; ``rollback(n)`` forgets positions >= n."""

    def __init__(self, model: nn.Module, keep_hidden: bool = False):
        self.model, self.cache, self.keep_hidden, self.hidden = model, None, keep_hidden, None

    def __len__(self) -> int:
        return 0 if self.cache is None else self.cache.get_seq_length()

    def logits(self, ids: Tensor) -> Tensor:
        new = ids[len(self):]                                                    # (n_new,)
        if len(new) == 0:
            raise ValueError("every position is cached already: roll back first")
        kw = {} if self.cache is None else {"cache": self.cache}
        out = self.model(new[None], use_cache=True, output_hidden_states=self.keep_hidden, **kw)
        self.cache = _cache(out)
        if self.keep_hidden:
            self.hidden = out.hidden_states[-1][0].float()                        # (n_new, H), after the final norm
        return out.logits[0].float()                                              # (n_new, V)

    def rollback(self, length: int) -> None:
        if self.cache is not None:
            _crop(self.cache, length)


def _probs(logits: Tensor, temperature: float) -> Tensor:
    return (logits / temperature).softmax(-1)


def _pick(logits: Tensor, greedy: bool, temperature: float, generator) -> int:
    if greedy:
        return int(logits.argmax())
    return int(torch.multinomial(_probs(logits, temperature), 1, generator=generator))


# ----------------------------------------------------------------------------- drafters


class ModelDrafter:
    """A small LM (same tokenizer as the target) that drafts autoregressively with its KV cache."""

    def __init__(self, model: nn.Module):
        self.lm = _Cached(model.eval())

    def reset(self) -> None:
        self.lm = _Cached(self.lm.model)

    def propose(self, ids: Tensor, gamma: int, *, greedy: bool, temperature: float,
                generator) -> tuple[Tensor, Tensor | None]:
        """gamma draft tokens after ids (n,), and (sampling) their draft distributions (gamma, V)."""
        tokens, probs, ctx = [], [], ids
        for _ in range(gamma):
            logits = self.lm.logits(ctx)[-1]                                      # (V,)
            tokens.append(_pick(logits, greedy, temperature, generator))
            probs.append(None if greedy else _probs(logits, temperature))
            ctx = torch.cat([ctx, ctx.new_tensor(tokens[-1:])])
        return ids.new_tensor(tokens), None if greedy else torch.stack(probs)

    def rollback(self, length: int) -> None:
        self.lm.rollback(length)


class PromptLookupDrafter:
    """Prompt lookup decoding: find the last ``n``-gram (n = max_ngram down to min_ngram) earlier
    in the sequence and propose the tokens that followed it (none if it never occurred).

    Training-free and model-free; strong where outputs copy their input (code, edits, extraction).
    As in transformers' ``PromptLookupCandidateGenerator`` (``generate(prompt_lookup_num_tokens=
    gamma)``, ``max_matching_ngram_size`` 2 by default): the longest n-gram first, its earliest
    occurrence that is followed by at least one token.
    """

    def __init__(self, max_ngram: int = 2, min_ngram: int = 1):
        check_int("min_ngram", min_ngram, 1)
        check_int("max_ngram", max_ngram, min_ngram)
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def reset(self) -> None:
        pass

    def find(self, ids: Tensor, gamma: int) -> Tensor:
        """Up to gamma tokens that followed the earliest earlier occurrence of the longest suffix n-gram."""
        seq = ids.tolist()
        for n in range(min(self.max_ngram, len(seq) - 1), self.min_ngram - 1, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n):                                       # earliest match first
                if seq[start:start + n] == tail:
                    return ids[start + n:start + n + gamma]
        return ids[:0]

    def propose(self, ids: Tensor, gamma: int, *, greedy: bool, temperature: float,
                generator) -> tuple[Tensor, None]:
        return self.find(ids, gamma), None

    def rollback(self, length: int) -> None:
        pass


class TokenRecyclingDrafter:
    r"""Token Recycling (Luo et al., ACL 2025, arXiv 2408.08696): draft from the target's own
    discarded candidates, stored in an adjacency matrix.

    $M \in \mathbb{Z}^{V \times k}$ holds, for every token $x$, the top-$k$ next tokens the target
    predicted the last time $x$ was one of its inputs: after every target call, each fed token's row
    is *replaced* by the target's top-$k$ at that position (``observe``; the prompt's positions
    included). The matrix persists across prompts ("hot start"; ``clear`` for a cold start),
    k = 8 and < 2 MB as in the paper (int32: 49,152 x 8 x 4 bytes = 1.6 MB). Drafting: the paper
    expands a static 80-node tree from $M$ by BFS and verifies it with tree attention; here the
    draft is the tree's first branch, the chain $x \to M[x, 0] \to M[M[x, 0], 0] \dots$ (an
    empty row ends it), verified by the same loop as every other drafter.
    """

    def __init__(self, vocab_size: int, k: int = 8):
        check_int("vocab_size", vocab_size, 1)
        check_int("k", k, 1)
        self.k, self.matrix = k, torch.full((vocab_size, k), -1, dtype=torch.int32)

    def reset(self) -> None:
        pass                                       # hot start: the matrix carries over to the next prompt

    def clear(self) -> None:
        self.matrix.fill_(-1)

    def observe(self, tokens: Tensor, target_logits: Tensor, hidden: Tensor | None = None) -> None:
        """Replace the rows of the fed ``tokens`` (n,) by the target's top-k at their positions (n, V);
        a token fed twice keeps its later position's candidates (``hidden`` is not used)."""
        check_tensor("tokens", tokens, ndim=1)
        if target_logits.shape[0] != len(tokens):
            raise ValueError(f"one row of target logits per fed token: {target_logits.shape[0]} vs {len(tokens)}")
        top = target_logits.topk(self.k, dim=-1).indices.to(torch.int32)              # (n, k)
        for i, token in enumerate(tokens.tolist()):                                     # in order: later wins
            self.matrix[token] = top[i]

    def propose(self, ids: Tensor, gamma: int, *, greedy: bool, temperature: float,
                generator) -> tuple[Tensor, None]:
        out, x = [], int(ids[-1])
        for _ in range(gamma):
            x = int(self.matrix[x, 0])
            if x < 0:
                break
            out.append(x)
        return ids.new_tensor(out), None

    def rollback(self, length: int) -> None:
        pass


class FeatureDrafter:
    """Chain drafts from a feature-level head (``cookbook.models.draft_head.FeatureDraftHead``:
    EAGLE, FSPAD) fed with the target's own last hidden states.

    The loop hands it the target's features of every position it feeds (``observe``; rejected
    positions are forgotten by ``rollback``). With n committed tokens the features f_0..f_{n-2} are
    known (the newest token was never fed); the head reads them with tokens x_1..x_{n-1}, predicts
    f_{n-1}, reads the draft token off the target's LM head, and continues from its own
    ``regress`` output. The paper drafts a tree (EAGLE's); this is its first branch.
    """

    needs_hidden = True

    def __init__(self, head: nn.Module):
        self.head, self.features = head.eval(), None

    def reset(self) -> None:
        self.features = None

    def observe(self, tokens: Tensor, target_logits: Tensor, hidden: Tensor | None = None) -> None:
        if hidden is None or len(hidden) != len(tokens):
            raise ValueError("FeatureDrafter needs the target's hidden state of every fed token")
        self.features = hidden if self.features is None else torch.cat([self.features, hidden])

    def rollback(self, length: int) -> None:
        if self.features is not None:
            self.features = self.features[:length]

    def propose(self, ids: Tensor, gamma: int, *, greedy: bool, temperature: float,
                generator) -> tuple[Tensor, Tensor | None]:
        if self.features is None or len(self.features) < len(ids) - 1:
            return ids[:0], None                         # the target has not read the prompt yet
        feats, nxt = self.features[:len(ids) - 1], ids[1:]                              # f_0..f_{n-2}, x_1..x_{n-1}
        tokens, probs = [], []
        for _ in range(gamma):
            predict, regress = self.head(feats[None], nxt[None])
            logits = self.head.logits(predict[0, -1]).float()                             # (V,)
            tokens.append(_pick(logits, greedy, temperature, generator))
            probs.append(None if greedy else _probs(logits, temperature))
            feats, nxt = torch.cat([feats, regress[0, -1:]]), torch.cat([nxt, nxt.new_tensor(tokens[-1:])])
        return ids.new_tensor(tokens), None if greedy else torch.stack(probs)


# ----------------------------------------------------------------------------- the decoding loop


@dataclass
class DecodeTrace:
    """What one decoding produced: the new tokens, and per target call the drafts it was shown
    and how many it kept (``cookbook.metrics.acceptance_stats`` reads these)."""

    tokens: Tensor                                   # (n_new,) the generated tokens
    drafted: list[int] = field(default_factory=list)   # per target call
    accepted: list[int] = field(default_factory=list)  # per target call, <= drafted
    seconds: float = 0.0                             # wall clock of the whole decoding

    @property
    def target_calls(self) -> int:
        return len(self.accepted)


def _check_decode(prompt: Tensor, max_new_tokens: int, gamma: int, temperature: float) -> Tensor:
    check_tensor("prompt", prompt)
    if prompt.dim() == 2:
        if prompt.shape[0] != 1:
            raise ValueError(f"speculative decoding here decodes one sequence: prompt (L,) or (1, L), got {tuple(prompt.shape)}")
        prompt = prompt[0]
    if prompt.dim() != 1 or len(prompt) == 0 or prompt.is_floating_point():
        raise ValueError(f"prompt must be a non-empty (L,) tensor of token ids, got {prompt.dtype} {tuple(prompt.shape)}")
    check_int("max_new_tokens", max_new_tokens, 1)
    check_int("gamma", gamma, 0)
    check_temperature(temperature)
    return prompt


@torch.no_grad()
def speculative_generate(target: nn.Module, drafter, prompt: Tensor, max_new_tokens: int, *,
                         gamma: int = 4, greedy: bool = True, temperature: float = 1.0,
                         generator: torch.Generator | None = None) -> DecodeTrace:
    """Decode ``max_new_tokens`` after ``prompt`` (L,) with the target, ``drafter`` proposing up
    to ``gamma`` tokens per target call; greedy verification or speculative sampling at
    ``temperature``. The block is shortened near the end so that exactly max_new_tokens come out.
    ``drafter=None`` (or gamma=0) is plain autoregressive decoding through the same code.
    """
    prompt = _check_decode(prompt, max_new_tokens, gamma, temperature)
    start = time.perf_counter()
    tgt = _Cached(target.eval(), keep_hidden=getattr(drafter, "needs_hidden", False))
    ids, trace = prompt.clone(), DecodeTrace(prompt[:0])
    if drafter is not None:
        drafter.reset()
    while len(ids) - len(prompt) < max_new_tokens:
        budget = min(gamma, max_new_tokens - (len(ids) - len(prompt)) - 1)
        drafts, q = ids[:0], None
        if drafter is not None and budget > 0:
            drafts, q = drafter.propose(ids, budget, greedy=greedy, temperature=temperature, generator=generator)
        seq = torch.cat([ids, drafts])
        fed = seq[len(tgt):]                                                           # positions fed now
        all_logits = tgt.logits(seq)                                                   # (len(fed), V)
        if hasattr(drafter, "observe"):
            drafter.observe(fed, all_logits, tgt.hidden)
        logits = all_logits[-(len(drafts) + 1):]                                       # (g + 1, V)
        if greedy:
            n, nxt = greedy_verify(drafts, logits)
        else:
            n, nxt = rejection_verify(drafts, q, _probs(logits, temperature), generator=generator)
        ids = torch.cat([ids, drafts[:n], ids.new_tensor([nxt])])
        tgt.rollback(len(ids) - 1)                  # the newest token is fed with the next block
        if drafter is not None:
            drafter.rollback(len(ids) - 1)
        trace.drafted.append(len(drafts))
        trace.accepted.append(n)
    trace.tokens, trace.seconds = ids[len(prompt):], time.perf_counter() - start
    return trace


def greedy_trace(matches: Tensor, gamma: int) -> list[int]:
    """The accepted-drafts trace greedy speculative decoding would produce, from teacher forcing.

    Under greedy verification the output is the target's greedy continuation y, so a model
    drafter's proposals at a block starting at position j are its greedy predictions given y_<j,
    y_<j+1, ... as long as they are right. ``matches`` (n,) bool: does the drafter's argmax given
    y_<i equal y_i, for the n generated positions (one teacher-forced forward of the drafter over
    prompt + y). Walks the blocks exactly as :func:`speculative_generate` does (the last blocks
    shortened so n tokens come out). Returns accepted drafts per target call.
    """
    check_tensor("matches", matches, ndim=1)
    check_int("gamma", gamma, 0)
    m, pos, accepted = matches.bool().tolist(), 0, []
    while pos < len(m):
        budget = min(gamma, len(m) - pos - 1)
        n = 0
        while n < budget and m[pos + n]:
            n += 1
        accepted.append(n)
        pos += n + 1
    return accepted


def drafted_of(accepted: list[int], n_tokens: int, gamma: int) -> list[int]:
    """The drafts shown per target call for a :func:`greedy_trace` (gamma, shortened at the end)."""
    out, pos = [], 0
    for a in accepted:
        out.append(min(gamma, n_tokens - pos - 1))
        pos += a + 1
    return out


@torch.no_grad()
def teacher_forced_acceptance(target: nn.Module, drafts: dict, prompts: Tensor, n_new: int, *, gamma: int,
                              temperature: float = 1.0, generator: torch.Generator | None = None,
                              batch_size: int = 8) -> dict[str, dict]:
    r"""Acceptance of several draft models from one set of target continuations, without decoding.

    - **greedy**: the target's greedy continuation y of each prompt (B, L0) is decoded once; each
      draft reads prompt + y in one forward, and :func:`greedy_trace` turns its argmax matches into
      the exact trace greedy speculative decoding would produce -> ``acceptance_stats`` fields
      (exact up to floating-point near-ties: the target decodes ``batch_size`` prompts at once).
    - **sampled**: the target *samples* a continuation at ``temperature``; per generated position
      the draft's token would be accepted with probability $\beta = \sum_v \min(p_v, q_v)$
      (Leviathan et al. 2023, Def. 3.1). Returns its mean ``alpha`` (the per-token acceptance rate
      of speculative sampling, DistillSpec's metric) over every position.
    Returns {name: {"greedy": acceptance_stats dict, "alpha": float}}.
    """
    from cookbook.metrics import acceptance_stats
    from cookbook.models.lm import continue_ids

    check_tensor("prompts", prompts, ndim=2)
    check_int("n_new", n_new, 1)
    check_int("gamma", gamma, 0)
    check_temperature(temperature)
    if not drafts:
        raise ValueError("drafts is empty: give {name: model}")
    start = prompts.shape[1]
    accepted = {k: [] for k in drafts}
    drafted = {k: [] for k in drafts}
    beta_sum, count = dict.fromkeys(drafts, 0.0), 0
    for s in range(0, len(prompts), batch_size):
        rows = prompts[s:s + batch_size]
        greedy = continue_ids(target, rows, n_new)                                     # (b, L0 + n)
        sampled = continue_ids(target, rows, n_new, greedy=False, temperature=temperature, generator=generator)
        p = (target(sampled).logits[:, start - 1:-1].float() / temperature).softmax(-1)  # (b, n, V)
        count += p.shape[0] * p.shape[1]
        for name, draft in drafts.items():
            draft.eval()
            matches = draft(greedy).logits[:, start - 1:-1].argmax(-1) == greedy[:, start:]   # (b, n)
            for row in matches:
                trace = greedy_trace(row, gamma)
                accepted[name] += trace
                drafted[name] += drafted_of(trace, n_new, gamma)
            q = (draft(sampled).logits[:, start - 1:-1].float() / temperature).softmax(-1)
            beta_sum[name] += torch.minimum(p, q).sum(-1).sum().item()
    return {k: {"greedy": acceptance_stats(accepted[k], drafted[k]), "alpha": beta_sum[k] / count}
            for k in drafts}


# ----------------------------------------------------------------------------- token routing (R2R)


def router_features(draft_logits: Tensor, draft_hidden: Tensor) -> Tensor:
    """What R2R's router reads at each position: the small model's last hidden state, its top-1
    probability and its entropy (the paper also feeds the top-k logits and the token embedding).
    draft_logits (N, V), draft_hidden (N, H) -> (N, H + 2)."""
    check_tensor("draft_logits", draft_logits, ndim=2)
    check_tensor("draft_hidden", draft_hidden, ndim=2)
    if len(draft_logits) != len(draft_hidden):
        raise ValueError(f"one hidden state per logits row: {len(draft_hidden)} vs {len(draft_logits)}")
    logp = draft_logits.float().log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1, keepdim=True)                           # (N, 1)
    return torch.cat([draft_hidden.float(), logp.max(-1, keepdim=True).values.exp(), entropy], dim=-1)


class TokenRouter(nn.Module):
    r"""R2R's router (Fu et al., 2025, arXiv 2505.21600): a small feed-forward net on the small model's
    features (:func:`router_features`) -> the logit of "this token diverges, call the large model".
    Trained with class-weighted binary cross-entropy on labels from the small/large pair."""

    def __init__(self, n_features: int, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, width), nn.GELU(), nn.Linear(width, 1))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)                                          # (N,)


@dataclass
class RouteTrace:
    """A routed decoding: the new tokens and, per token, whether the large model produced it."""

    tokens: Tensor
    routed: list[bool] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def call_rate(self) -> float:
        return sum(self.routed) / max(1, len(self.routed))


@torch.no_grad()
def routed_generate(target: nn.Module, draft: nn.Module, route, prompt: Tensor, max_new_tokens: int) -> RouteTrace:
    """Greedy small-large token routing (R2R): the draft writes every token unless
    ``route(features (1, H + 2)) -> bool`` sends it to the target, which then reads every token it
    has not seen (one forward) and writes this one. Not lossless: the output follows the target only
    where the router calls it. ``route = lambda f: True`` is the target's greedy decoding,
    ``lambda f: False`` the draft's."""
    prompt = _check_decode(prompt, max_new_tokens, 0, 1.0)
    start = time.perf_counter()
    tgt, small, ids, trace = _Cached(target.eval()), draft.eval(), prompt.clone(), RouteTrace(prompt[:0])
    cache = None
    for _ in range(max_new_tokens):
        new = ids if cache is None else ids[-1:]
        out = small(new[None], use_cache=True, output_hidden_states=True, **({} if cache is None else {"cache": cache}))
        cache = _cache(out)
        logits = out.logits[0, -1:].float()                                              # (1, V)
        call = bool(route(router_features(logits, out.hidden_states[-1][0, -1:])))
        nxt = int(tgt.logits(ids)[-1].argmax()) if call else int(logits.argmax())
        ids = torch.cat([ids, ids.new_tensor([nxt])])
        trace.routed.append(call)
    trace.tokens, trace.seconds = ids[len(prompt):], time.perf_counter() - start
    return trace
