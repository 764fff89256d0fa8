"""Speculative decoding (methods.speculative), its acceptance metrics (metrics) and the TVD loss
(losses.speculative): lossless greedy, exact sampling, traces, bad input."""

import math

import pytest
import torch
from scipy.stats import chisquare

from cookbook.losses.llm import TopKTeacher
from cookbook.losses.speculative import feature_draft_loss, tvd_loss
from cookbook.methods.speculative import (
    FeatureDrafter,
    ModelDrafter,
    PromptLookupDrafter,
    TokenRecyclingDrafter,
    TokenRouter,
    drafted_of,
    greedy_trace,
    greedy_verify,
    rejection_verify,
    routed_generate,
    router_features,
    speculative_generate,
    teacher_forced_acceptance,
)
from cookbook.metrics import acceptance_stats, expected_accepted_length
from cookbook.models.draft_head import FeatureDraftHead
from cookbook.models.lm import continue_ids, tiny_llama

V = 24


def _lm(seed, vocab=V, hidden=16):
    model = tiny_llama(vocab_size=vocab, hidden=hidden, intermediate=32, layers=2, heads=2, seed=seed).eval()
    # an untied, sharp head: a tied random head predicts the current token again (outputs 9 9 9 ...)
    gen = torch.Generator().manual_seed(100 + seed)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab, hidden, generator=gen))
    return model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny forwards on a shared CPU: several threads spin against each other (20x slower here)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair():
    target, draft = _lm(1), _lm(2)
    with torch.no_grad():   # a draft close to the target: long accepted runs, and some rejections
        for pd, pt in zip(draft.parameters(), target.parameters()):
            pd.copy_(pt + 0.4 * pd)
    return target, draft


PROMPT = torch.tensor([3, 7, 1, 9, 3, 7, 2])


# ----------------------------------------------------------------------------- the rules


def test_greedy_verify_keeps_the_matching_prefix_and_adds_the_targets_token():
    logits = torch.full((4, 5), -1.0)
    for i, t in enumerate([2, 4, 1, 3]):                     # the target's argmax per position
        logits[i, t] = 1.0
    assert greedy_verify(torch.tensor([2, 4, 0]), logits) == (2, 1)
    assert greedy_verify(torch.tensor([0, 4, 1]), logits) == (0, 2)
    assert greedy_verify(torch.tensor([2, 4, 1]), logits) == (3, 3)     # all kept: the bonus token
    assert greedy_verify(torch.tensor([], dtype=torch.long), logits[:1]) == (0, 2)


def test_rejection_rule_emits_the_target_distribution():
    # one draft token from q, then the rule: the emitted first token must follow p_1 exactly
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.5, 0.1, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.1, 0.6, 0.2, 0.1]])
    n, counts, kept = 20_000, torch.zeros(4), 0
    for _ in range(n):
        x = torch.multinomial(q[0], 1, generator=gen)
        k, nxt = rejection_verify(x, q, p, generator=gen)
        counts[int(x) if k == 1 else nxt] += 1
        kept += k
    assert chisquare(counts.numpy(), p[0].numpy() * n).pvalue > 1e-3
    assert kept / n == pytest.approx(torch.minimum(p[0], q[0]).sum().item(), abs=0.015)   # 1 - TVD


def test_rejection_rule_with_a_deterministic_drafter_is_exact():
    gen = torch.Generator().manual_seed(1)
    p = torch.tensor([[0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3]])
    n, counts = 12_000, torch.zeros(3)
    for _ in range(n):
        k, nxt = rejection_verify(torch.tensor([1]), None, p, generator=gen)
        counts[1 if k == 1 else nxt] += 1
    assert chisquare(counts.numpy(), p[0].numpy() * n).pvalue > 1e-3


@pytest.mark.parametrize("call, match", [
    (lambda: greedy_verify(torch.tensor([1, 2]), torch.zeros(2, 5)), "g \\+ 1 = 3"),
    (lambda: greedy_verify(torch.tensor([1, 9]), torch.zeros(3, 5)), "draft tokens must be in"),
    (lambda: rejection_verify(torch.tensor([1]), torch.ones(1, 4) / 4, torch.ones(2, 5) / 5), "draft_probs must be"),
    (lambda: rejection_verify(torch.tensor([1]), torch.tensor([[1.0, 0, 0]]), torch.ones(2, 3) / 3), "probability 0"),
    (lambda: speculative_generate(_lm(0), None, torch.tensor([[1, 2], [3, 4]]), 3), "one sequence"),
    (lambda: speculative_generate(_lm(0), None, torch.tensor([]), 3), "non-empty"),
    (lambda: speculative_generate(_lm(0), None, torch.tensor([1.0, 2.0]), 3), "token ids"),
    (lambda: speculative_generate(_lm(0), None, PROMPT, 0), "max_new_tokens"),
    (lambda: speculative_generate(_lm(0), None, PROMPT, 3, temperature=0.0), "temperature"),
    (lambda: PromptLookupDrafter(max_ngram=1, min_ngram=2), "max_ngram"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_input_types_raise():
    with pytest.raises(TypeError, match="torch.Tensor"):
        greedy_verify([1, 2], torch.zeros(3, 5))
    with pytest.raises(TypeError, match="gamma"):
        speculative_generate(_lm(0), None, PROMPT, 3, gamma=1.5)


# ----------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_greedy_speculative_output_is_the_targets_greedy_output(pair, gamma):
    target, draft = pair
    want = continue_ids(target, PROMPT[None], 30)[0, len(PROMPT):]
    trace = speculative_generate(target, ModelDrafter(draft), PROMPT, 30, gamma=gamma)
    assert torch.equal(trace.tokens, want)
    assert sum(trace.accepted) + trace.target_calls == 30
    assert max(trace.accepted) >= min(gamma, 3) and min(trace.accepted) == 0   # long runs and rejections
    assert len(set(want.tolist())) > 5                                  # not a degenerate repeat
    plain = speculative_generate(target, None, PROMPT, 30)
    assert torch.equal(plain.tokens, want) and plain.target_calls == 30 and sum(plain.drafted) == 0


def test_prompt_lookup_is_lossless_and_finds_repeats(pair):
    target, _ = pair
    want = continue_ids(target, PROMPT[None], 20)[0, len(PROMPT):]
    trace = speculative_generate(target, PromptLookupDrafter(), PROMPT, 20, gamma=4)
    assert torch.equal(trace.tokens, want)
    look = PromptLookupDrafter(max_ngram=2)
    assert look.find(torch.tensor([5, 1, 2, 8, 9, 6, 1, 2]), 3).tolist() == [8, 9, 6]   # the bigram (1, 2)
    assert look.find(torch.tensor([5, 1, 2, 8, 3, 2]), 3).tolist() == [8, 3, 2]          # then the unigram (2,)
    assert look.find(torch.tensor([5, 1, 2, 8, 2]), 3).tolist() == [8, 2]                # fewer near the end
    assert look.find(torch.tensor([1, 2, 3]), 3).tolist() == []


def test_greedy_trace_from_teacher_forcing_equals_the_real_trace(pair):
    target, draft = pair
    for gamma in (2, 4):
        trace = speculative_generate(target, ModelDrafter(draft), PROMPT, 25, gamma=gamma)
        ids = torch.cat([PROMPT, trace.tokens])
        with torch.no_grad():
            pred = draft(ids[None]).logits[0].argmax(-1)            # (L,) prediction of the next token
        matches = pred[len(PROMPT) - 1:-1] == trace.tokens
        assert greedy_trace(matches, gamma) == trace.accepted
        assert drafted_of(trace.accepted, 25, gamma) == trace.drafted


def _exact_two_token_distribution(model, prompt, temperature):
    with torch.no_grad():
        p1 = (model(prompt[None]).logits[0, -1] / temperature).softmax(-1)
        out = torch.zeros(model.config.vocab_size, model.config.vocab_size)
        for a in range(model.config.vocab_size):
            ids = torch.cat([prompt, torch.tensor([a])])
            out[a] = p1[a] * (model(ids[None]).logits[0, -1] / temperature).softmax(-1)
    return out


def test_sampled_speculative_output_follows_the_targets_distribution():
    # a 4-token vocabulary, two new tokens: 16 outcomes, chi-square against the exact joint law
    target, draft = _lm(3, vocab=4, hidden=8), _lm(4, vocab=4, hidden=8)
    prompt, temp, n = torch.tensor([0, 1, 2]), 1.5, 1500
    law = _exact_two_token_distribution(target, prompt, temp).flatten()
    gen, counts, rejected = torch.Generator().manual_seed(0), torch.zeros(16), 0
    drafter = ModelDrafter(draft)
    for _ in range(n):
        trace = speculative_generate(target, drafter, prompt, 2, gamma=3, greedy=False,
                                     temperature=temp, generator=gen)
        a, b = trace.tokens.tolist()
        counts[4 * a + b] += 1
        rejected += trace.accepted[0] == 0
    keep = law * n >= 5                                             # chi-square needs expected counts >= 5
    observed = torch.cat([counts[keep], counts[~keep].sum()[None]])
    expected = torch.cat([law[keep], law[~keep].sum()[None]]) * n
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
    assert 0 < rejected < n                                         # both branches of the rule ran


# ----------------------------------------------------------------------------- metrics


def test_acceptance_stats_on_a_hand_written_trace():
    # 4 target calls with gamma = 4: kept 4, 0, 2, then 1 of a shortened block of 2
    s = acceptance_stats(accepted=[4, 0, 2, 1], drafted=[4, 4, 4, 2])
    assert s["acceptance_rate"] == pytest.approx(7 / 14)
    assert s["mean_accepted"] == pytest.approx(7 / 4)             # without the bonus token
    assert s["mean_accepted_length"] == pytest.approx(11 / 4)     # with it: tokens per target call
    assert s["tokens"] == 11 and s["calls"] == 4
    assert math.isnan(acceptance_stats([0, 0], [0, 0])["acceptance_rate"])    # nothing proposed


@pytest.mark.parametrize("accepted, drafted, match", [
    ([1, 2], [3], "one entry per target call"), ([], [], "empty"), ([3], [2], "accepted <= drafted"),
    ([-1], [2], "0 <= accepted")])
def test_acceptance_stats_bad_input(accepted, drafted, match):
    with pytest.raises(ValueError, match=match):
        acceptance_stats(accepted, drafted)


def test_expected_accepted_length_formula():
    assert expected_accepted_length(0.0, 4) == 1.0
    assert expected_accepted_length(1.0, 4) == 5.0
    alpha, gamma = 0.6, 3
    assert expected_accepted_length(alpha, gamma) == pytest.approx(sum(alpha ** i for i in range(gamma + 1)))
    with pytest.raises(ValueError):
        expected_accepted_length(1.2, 3)


def test_greedy_trace_by_hand():
    m = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0, 0, 1], dtype=torch.bool)
    # gamma 3: keep 2 (+1) | keep 3 (+1) at position 3 | keep 0 (+1) at 7 | position 8: budget 1, kept 0 | 9: budget 0
    assert greedy_trace(m, 3) == [2, 3, 0, 0, 0]
    assert drafted_of([2, 3, 0, 0, 0], 10, 3) == [3, 3, 2, 1, 0]
    assert greedy_trace(m, 0) == [0] * 10


# ----------------------------------------------------------------------------- TVD


def test_tvd_is_one_minus_the_acceptance_probability():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 11, generator=gen), torch.randn(6, 11, generator=gen)
    p, q = t.softmax(-1), s.softmax(-1)
    got = tvd_loss(s, t, reduction="none")
    assert torch.allclose(got, 1 - torch.minimum(p, q).sum(-1), atol=1e-6)
    assert tvd_loss(s, s).item() == pytest.approx(0.0, abs=1e-7)
    assert tvd_loss(s, t, T=2.0).item() < tvd_loss(s, t).item()      # a flatter pair is closer
    full = TopKTeacher.from_logits(t, 11)
    assert torch.allclose(tvd_loss(s, full, reduction="none"), got, atol=1e-5)
    assert (tvd_loss(s, TopKTeacher.from_logits(t, 3), reduction="none") <= got + 1e-6).all()   # a lower bound
    s.requires_grad_(True)
    tvd_loss(s, t).backward()
    assert s.grad.abs().sum() > 0


def test_tvd_bad_input():
    with pytest.raises(ValueError, match="vocabularies"):
        tvd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2-D"):
        tvd_loss(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="every token is masked"):
        tvd_loss(torch.zeros(2, 3), torch.zeros(2, 3), mask=torch.zeros(2, dtype=torch.bool))



def test_teacher_forced_acceptance_matches_decoding(pair):
    target, draft = pair
    prompts = torch.stack([PROMPT, PROMPT.flip(0)])
    out = teacher_forced_acceptance(target, {"d": draft, "self": target}, prompts, 12, gamma=3,
                                    generator=torch.Generator().manual_seed(0), batch_size=1)
    traces = [speculative_generate(target, ModelDrafter(draft), row, 12, gamma=3) for row in prompts]
    want = acceptance_stats(sum((t.accepted for t in traces), []), sum((t.drafted for t in traces), []))
    assert out["d"]["greedy"] == want
    assert out["self"]["alpha"] == pytest.approx(1.0) and out["self"]["greedy"]["acceptance_rate"] == 1.0
    assert 0 < out["d"]["alpha"] < 1
    with pytest.raises(ValueError, match="drafts is empty"):
        teacher_forced_acceptance(target, {}, prompts, 4, gamma=2)


def test_exercise_checks_accept_the_references_and_reject_a_wrong_answer():
    from cookbook.exercises import speculative as ex

    assert ex.check_residual(lambda p, q: (p - q).clamp_min(0) / (p - q).clamp_min(0).sum().clamp_min(1e-30)
                             if (p - q).clamp_min(0).sum() > 0 else p) is True
    assert ex.check_residual(lambda p, q: p) is False
    assert ex.check_acceptance_metrics(lambda a, d: (sum(a) / sum(d), sum(a) / len(a), sum(a) / len(a) + 1)) is True
    assert ex.check_acceptance_metrics(lambda a, d: (sum(a) / sum(d), sum(a) / len(a), sum(a) / len(a))) is False
    assert ex.check_greedy_trace(greedy_trace) is True
    assert ex.check_greedy_trace(lambda m, g: [0] * len(m)) is False

    def stub(*args):
        raise NotImplementedError

    assert ex.check_greedy_trace(stub) is None

    def update(matrix, tokens, logits):
        for i, t in enumerate(tokens.tolist()):
            matrix[t] = logits[i].topk(matrix.shape[1]).indices
        return matrix

    assert ex.check_recycling_update(update) is True
    assert ex.check_recycling_update(lambda m, t, lg: m) is False


def test_token_recycling_matrix_update_and_chain():
    tr = TokenRecyclingDrafter(6, k=2)
    logits = torch.tensor([[0.0, 5, 1, 0, 0, 0], [0, 0, 0, 4, 0, 3], [9, 0, 0, 0, 0, 8]])
    tr.observe(torch.tensor([2, 1, 3]), logits)
    assert tr.matrix[2].tolist() == [1, 2] and tr.matrix[1].tolist() == [3, 5] and tr.matrix[3].tolist() == [0, 5]
    assert tr.matrix[0].tolist() == [-1, -1]                                       # never fed: empty
    assert tr.propose(torch.tensor([4, 2]), 5, greedy=True, temperature=1.0, generator=None)[0].tolist() == [1, 3, 0]
    tr.observe(torch.tensor([2]), torch.tensor([[0.0, 0, 0, 0, 7, 6]]))           # replaced, not merged
    assert tr.matrix[2].tolist() == [4, 5]
    tr.clear()
    assert (tr.matrix == -1).all()
    with pytest.raises(ValueError, match="one row of target logits per fed token"):
        tr.observe(torch.tensor([1, 2]), logits)


def test_token_recycling_is_lossless_and_learns_with_a_hot_start(pair):
    target, _ = pair
    tr = TokenRecyclingDrafter(V, k=4)
    want = continue_ids(target, PROMPT[None], 24)[0, len(PROMPT):]
    first = speculative_generate(target, tr, PROMPT, 24, gamma=4)
    again = speculative_generate(target, tr, PROMPT, 24, gamma=4)                # the matrix carried over
    assert torch.equal(first.tokens, want) and torch.equal(again.tokens, want)
    assert sum(again.accepted) > sum(first.accepted)


def test_routing_endpoints_are_the_two_models_greedy_outputs(pair):
    target, draft = pair
    big = routed_generate(target, draft, lambda f: True, PROMPT, 15)
    small = routed_generate(target, draft, lambda f: False, PROMPT, 15)
    assert torch.equal(big.tokens, continue_ids(target, PROMPT[None], 15)[0, len(PROMPT):]) and big.call_rate == 1.0
    assert torch.equal(small.tokens, continue_ids(draft, PROMPT[None], 15)[0, len(PROMPT):]) and small.call_rate == 0.0
    every_other = iter([True, False] * 10)
    mixed = routed_generate(target, draft, lambda f: next(every_other), PROMPT, 10)
    assert mixed.routed == [True, False] * 5


def test_router_features_and_router():
    logits, hidden = torch.tensor([[0.0, 0.0], [10.0, -10.0]]), torch.zeros(2, 3)
    f = router_features(logits, hidden)
    assert f.shape == (2, 5)
    assert f[0, 3].item() == pytest.approx(0.5) and f[0, 4].item() == pytest.approx(math.log(2))
    assert f[1, 3].item() == pytest.approx(1.0, abs=1e-6) and f[1, 4].item() == pytest.approx(0.0, abs=1e-6)
    assert TokenRouter(5)(f).shape == (2,)
    with pytest.raises(ValueError, match="one hidden state per logits row"):
        router_features(logits, torch.zeros(3, 3))


# ----------------------------------------------------------------------------- feature-level heads (FSPAD)


def _head(target, partial=True, seed=0):
    w = target.lm_head.weight
    return FeatureDraftHead(target.get_input_embeddings().weight, w, heads=2, intermediate=32, partial=partial, seed=seed)


def test_feature_head_shapes_and_partial_alignment(pair):
    target, _ = pair
    f, ids = torch.randn(2, 5, 16), torch.randint(V, (2, 5))
    predict, regress = _head(target)(f, ids)
    assert predict.shape == regress.shape == (2, 5, 16) and not torch.equal(predict, regress)
    p2, r2 = _head(target, partial=False)(f, ids)
    assert p2 is r2                                                         # EAGLE: one output for both
    assert _head(target).logits(predict).shape == (2, 5, V)
    assert sum(p.numel() for p in _head(target).parameters()) > 0
    assert not any(p is target.lm_head.weight for p in _head(target).parameters())    # frozen, not trained
    with pytest.raises(ValueError, match="need features"):
        _head(target)(f[:, :, :8], ids)
    with pytest.raises(ValueError, match="must divide"):
        FeatureDraftHead(torch.zeros(5, 6), torch.zeros(5, 6), heads=4)


def test_feature_draft_loss_by_hand_and_gradient():
    gen = torch.Generator().manual_seed(0)
    pl, tl = torch.randn(4, 7, generator=gen, requires_grad=True), torch.randn(4, 7, generator=gen)
    reg, tf = torch.randn(4, 3, generator=gen, requires_grad=True), torch.randn(4, 3, generator=gen)
    got = feature_draft_loss(pl, reg, tf, tl, v_w=1.0, p_w=0.1)
    d = (reg - tf).abs()
    smooth = torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean(-1)
    want = (smooth + 0.1 * -(tl.softmax(-1) * pl.log_softmax(-1)).sum(-1)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    assert pl.grad.abs().sum() > 0 and reg.grad.abs().sum() > 0
    masked = feature_draft_loss(pl, reg, tf, tl, mask=torch.tensor([True, False, False, False]))
    assert masked.item() == pytest.approx((smooth + 0.1 * -(tl.softmax(-1) * pl.log_softmax(-1)).sum(-1))[0].item(), rel=1e-6)
    with pytest.raises(ValueError, match="must match"):
        feature_draft_loss(pl, reg, tf, tl[:, :5])
    with pytest.raises(ValueError, match="need regress"):
        feature_draft_loss(pl, reg[:3], tf[:3], tl)


def test_feature_drafter_is_lossless_and_learns(pair):
    target, _ = pair
    want = continue_ids(target, PROMPT[None], 20)[0, len(PROMPT):]
    head = _head(target)
    before = speculative_generate(target, FeatureDrafter(head), PROMPT, 20, gamma=3)
    assert torch.equal(before.tokens, want) and before.drafted[0] == 0         # nothing to draft before the prompt is read
    # distil the head on the target's own features along its greedy path (the EAGLE / FSPAD loss)
    ids = continue_ids(target, torch.stack([PROMPT, PROMPT.flip(0), PROMPT.roll(2)]), 25)   # (3, 32)
    with torch.no_grad():
        out = target(ids, output_hidden_states=True)
    feats, logits = out.hidden_states[-1], out.logits
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(150):
        predict, regress = head(feats[:, :-1], ids[:, 1:])
        loss = feature_draft_loss(head.logits(predict).flatten(0, 1), regress.flatten(0, 1),
                                  feats[:, 1:].flatten(0, 1), logits[:, 1:].flatten(0, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = speculative_generate(target, FeatureDrafter(head), PROMPT, 20, gamma=3)
    assert torch.equal(after.tokens, want)
    assert sum(after.accepted) > sum(before.accepted)
    sampled = speculative_generate(target, FeatureDrafter(head), PROMPT, 10, gamma=3, greedy=False,
                                   generator=torch.Generator().manual_seed(0))
    assert len(sampled.tokens) == 10
