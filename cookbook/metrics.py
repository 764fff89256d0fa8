"""Evaluation metrics, one definition each: accuracy, per-class accuracy, perplexity, bits per byte, agreement.

Classification metrics take logits (N, C) or predicted labels (N,); LM metrics read a top-k
teacher cache of held-out sequences (``cookbook.teachers.topk_cache``). Every notebook and the
training loop score with these, so two notebooks cannot disagree on what "accuracy" means.
Generated code lines are scored by exact match and ROUGE-L (``torchmetrics``).
Group fairness gaps (demographic parity, equalised odds) take hard binary predictions and a
group id per example. Ranking metrics (MRR@k, nDCG@k, Recall@k) are computed by ``ranx``
(Bassani, ECIR 2022), a maintained library checked against trec_eval, from a score matrix or a
run dict; nothing is re-derived by hand here. Speculative decoding is scored from its trace
(drafts shown and kept per target call): acceptance rate and mean accepted length with and
without the bonus token, the conventions side by side (``acceptance_stats``). The speech metrics
of notebook 09 are at the end: mel distance, SI-SDR, WER and phone error rate through ``jiwer``,
codebook usage. Segmentation: mean IoU; ViT attention: mean attention distance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from cookbook.losses.llm import token_ce


def _predictions(scores: Tensor) -> Tensor:
    """Labels from logits (N, C) (argmax), or labels (N,) as they are."""
    return scores.argmax(-1) if scores.dim() > 1 else scores


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1] of logits (N, C) or predicted labels (N,) against labels (N,)."""
    pred = _predictions(scores)
    if pred.shape != labels.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and labels {tuple(labels.shape)} must align")
    if pred.numel() == 0:
        raise ValueError("accuracy of an empty set")
    return (pred == labels.to(pred.device)).float().mean().item()


def per_class_accuracy(scores: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Accuracy of each class c over the examples labelled c: (C,), NaN for a class with none.

    The mean of this vector is the balanced accuracy (what a long-tailed test set reports).
    """
    pred = _predictions(scores)
    if pred.shape != labels.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and labels {tuple(labels.shape)} must align")
    labels = labels.to(pred.device)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    return torch.stack([(pred[labels == c] == c).float().mean() for c in range(num_classes)])


def perplexity(mean_nll: float) -> float:
    """exp(mean next-token negative log-likelihood in nats)."""
    return math.exp(mean_nll)


def bits_per_byte(nll_sum: float, num_bytes: int) -> float:
    """Bits per UTF-8 byte: the summed negative log-likelihood (nats) of a text over its byte count.

    bpb = sum_t -ln p(x_t | x_<t) / (ln 2 * bytes(text)). The sum runs over whatever units the
    model predicts (tokens of any tokenizer, bytes, words), so two models with different
    tokenizers are compared on the same denominator; per-token perplexity is not comparable
    across tokenizers (a tokenizer with longer tokens has fewer, harder predictions). The one
    fair cross-tokenizer metric of notebook 08b (as in P10, Neitemeier et al. 2025).
    """
    nll_sum = float(nll_sum)
    if not isinstance(num_bytes, (int, np.integer)) or num_bytes <= 0:
        raise ValueError(f"num_bytes must be a positive int (the UTF-8 length of the scored text), got {num_bytes!r}")
    if not math.isfinite(nll_sum) or nll_sum < 0:
        raise ValueError(f"nll_sum must be a finite sum of negative log-likelihoods >= 0 (nats), got {nll_sum}")
    return nll_sum / (math.log(2) * int(num_bytes))


def top1_agreement(student_logits: Tensor, teacher_top1: Tensor) -> Tensor:
    """Per position: is the student's most likely next token the teacher's? (bool, shape of teacher_top1)."""
    return student_logits.argmax(-1) == teacher_top1


@torch.no_grad()
def evaluate_lm(model: nn.Module, cache, rows=None, batch_size: int = 16) -> dict[str, float]:
    """Perplexity on the cached sequences and top-1 agreement with the cached teacher.

    ``cache``: a ``TopKCache`` of held-out sequences (``cookbook.teachers.topk_cache``).
    ppl = exp(mean next-token cross-entropy over the first L-1 positions); agreement = share of all
    L positions where the model's most likely next token is the teacher's.
    """
    model.eval()
    rows = np.arange(len(cache)) if rows is None else np.asarray(rows)
    nll, count, agree, total = 0.0, 0, 0, 0
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        ids = cache.ids(r)
        logits = model(ids).logits                                         # (B, L, V)
        nll += token_ce(logits, ids).sum().item()
        count += ids.shape[0] * (ids.shape[1] - 1)
        teacher_top1 = cache.get("topk_indices", r)[..., 0].long()          # (B, L)
        agree += top1_agreement(logits, teacher_top1).sum().item()
        total += teacher_top1.numel()
    return {"ppl": perplexity(nll / count), "agreement": agree / total}


def teacher_perplexity(cache, rows=None) -> float:
    """The teacher's perplexity on cached sequences, from its stored log-prob of each next token."""
    rows = slice(None) if rows is None else rows
    target = cache.get("target_logprobs", rows)[:, :-1]
    return perplexity(-target.double().mean().item())


def _check_texts(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references) or not references:
        raise ValueError(f"need as many predictions as references (> 0), got {len(predictions)} and {len(references)}")


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference after stripping surrounding whitespace."""
    _check_texts(predictions, references)
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)


def code_tokens(text: str) -> list[str]:
    """Identifiers, numbers and single punctuation marks: the units ROUGE-L counts in code."""
    import re

    return re.findall(r"\w+|[^\w\s]", text)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (longest common subsequence) of each prediction against its reference.

    Computed by ``torchmetrics`` over :func:`code_tokens` (its default tokenizer drops punctuation,
    which is half of a code line), case kept. The metric of MiniLLM / DistiLLM / GKD's
    generations, here on completed code lines.
    """
    from torchmetrics.functional.text.rouge import rouge_score

    _check_texts(predictions, references)
    scores = [rouge_score(p, r, rouge_keys=("rougeL",), tokenizer=code_tokens, normalizer=lambda t: t)
              ["rougeL_fmeasure"].item() for p, r in zip(predictions, references)]
    return sum(scores) / len(scores)


def _group_rates(pred: Tensor, groups: Tensor, mask: Tensor) -> Tensor:
    """P(pred = 1 | group g, mask) for every group present under ``mask``: (G_present,)."""
    rates = [pred[mask & (groups == g)].float().mean() for g in groups[mask].unique()]
    return torch.stack(rates) if rates else pred.new_zeros(0, dtype=torch.float)


def _check_fairness_inputs(pred: Tensor, groups: Tensor, labels: Tensor | None = None) -> None:
    for name, t in (("predictions", pred), ("groups", groups), ("labels", labels)):
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.dim() != 1:
            raise ValueError(f"{name} must be a 1-d tensor")
        if t.shape != pred.shape:
            raise ValueError(f"{name} {tuple(t.shape)} and predictions {tuple(pred.shape)} must align")
    if pred.numel() == 0:
        raise ValueError("fairness gap of an empty set")
    if not bool(((pred == 0) | (pred == 1)).all()) or (labels is not None and not bool(((labels == 0) | (labels == 1)).all())):
        raise ValueError("predictions and labels must be binary (0/1): threshold scores first")
    if groups.unique().numel() < 2:
        raise ValueError("a fairness gap needs at least two groups in `groups`")


def demographic_parity_gap(pred: Tensor, groups: Tensor) -> float:
    """max_g P(yhat = 1 | s = g) - min_g P(yhat = 1 | s = g), in [0, 1] (0 = parity).

    pred: binary predictions (N,); groups: sensitive-attribute ids (N,). For two groups this is
    |P(yhat=1|s=0) - P(yhat=1|s=1)|, the "DP" of FairDisCo's and P16's evaluation (arXiv 2408.10755).
    """
    _check_fairness_inputs(pred, groups)
    rates = _group_rates(pred, groups, torch.ones_like(pred, dtype=torch.bool))
    return (rates.max() - rates.min()).item()


def equalized_odds_gap(pred: Tensor, labels: Tensor, groups: Tensor) -> float:
    """max over y in {0, 1} of [max_g - min_g] P(yhat = 1 | y, s = g), in [0, 1].

    The larger of the true-positive-rate gap (y = 1) and the false-positive-rate gap (y = 0)
    between groups (Hardt et al. 2016, equalised odds; fairlearn's equalized_odds_difference).
    A group without examples of some y is skipped for that y.
    """
    _check_fairness_inputs(pred, groups, labels)
    gaps = []
    for y in (0, 1):
        rates = _group_rates(pred, groups, labels == y)
        if rates.numel() >= 2:
            gaps.append((rates.max() - rates.min()).item())
    if not gaps:
        raise ValueError("equalised odds needs two groups with examples of the same label")
    return max(gaps)


# ----------------------------------------------------------------------------- ranking (via ranx)

RANKING_METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@20", "recall@100")


def run_from_scores(scores: Tensor, query_ids: list[str], doc_ids: list[str], k: int = 100) -> dict[str, dict[str, float]]:
    """The top ``k`` documents of each query of a (Q, D) score matrix as a run ``{qid: {docid: score}}``."""
    if scores.dim() != 2 or scores.shape != (len(query_ids), len(doc_ids)):
        raise ValueError(f"scores {tuple(scores.shape)} must be (len(query_ids), len(doc_ids)) = "
                         f"({len(query_ids)}, {len(doc_ids)})")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    top = scores.float().topk(min(k, scores.shape[1]), dim=1)
    return {q: {doc_ids[j]: s for s, j in zip(vals, idx)}
            for q, vals, idx in zip(query_ids, top.values.tolist(), top.indices.tolist())}


def evaluate_run(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                 metrics: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@10")) -> dict[str, float]:
    """Mean ranking metrics of ``run`` against ``qrels`` (``{qid: {docid: relevance}}``), by ``ranx``.

    Every query of ``qrels`` counts; a query the run does not rank scores 0. Metric names are
    ranx's ("mrr@10", "ndcg@10", "recall@k", "precision@k", "map@k", "hit_rate@k").
    """
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    if not qrels:
        raise ValueError("evaluate_run: empty qrels")
    run = {q: run.get(q) or {"__no_document__": -1e9} for q in qrels}  # ranx needs every query in the run
    out = ranx_evaluate(Qrels(qrels), Run(run), list(metrics), make_comparable=True)
    out = out if isinstance(out, dict) else {metrics[0]: out}
    return {m: float(v) for m, v in out.items()}


def ranking_metrics(scores: Tensor, relevant: Tensor,
                    metrics: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@10"), k: int = 100) -> dict[str, float]:
    """Ranking metrics of a (Q, D) score matrix where query i's one relevant document is ``relevant[i]``."""
    if relevant.dim() != 1 or len(relevant) != scores.shape[0]:
        raise ValueError(f"relevant must be (Q,) = ({scores.shape[0]},), got {tuple(relevant.shape)}")
    if len(relevant) and (int(relevant.min()) < 0 or int(relevant.max()) >= scores.shape[1]):
        raise ValueError(f"relevant indices must be in [0, {scores.shape[1]})")
    qids = [f"q{i}" for i in range(scores.shape[0])]
    dids = [f"d{j}" for j in range(scores.shape[1])]
    qrels = {q: {dids[int(r)]: 1} for q, r in zip(qids, relevant)}
    return evaluate_run(run_from_scores(scores, qids, dids, k=k), qrels, metrics)


# --- speech tokenizers (notebook 09) --------------------------------------------------------------


def mel_distance(mel_hat: Tensor, mel: Tensor) -> float:
    """Mean absolute difference of two log-mel spectrograms (B, 80, T) in Whisper's units.

    Whisper's log-mel is log10(power) / 4 (plus a shift), so 0.1 is a 0.4 log10 (4 dB) error.
    """
    if mel_hat.shape != mel.shape:
        raise ValueError(f"mel_hat {tuple(mel_hat.shape)} and mel {tuple(mel.shape)} differ")
    return float((mel_hat.float() - mel.float()).abs().mean())


def si_sdr(estimate: Tensor, reference: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB, per row of (..., S) waveforms.

    SI-SDR = 10 log10(||a s||^2 / ||a s - s_hat||^2), a = <s_hat, s> / ||s||^2, both signals
    mean-removed (Le Roux et al., ICASSP 2019). Identical signals give a large positive value;
    a signal of random phase gives about -30 dB or less.
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ")
    s_hat = estimate.double() - estimate.double().mean(-1, keepdim=True)
    s = reference.double() - reference.double().mean(-1, keepdim=True)
    a = (s_hat * s).sum(-1, keepdim=True) / (s.pow(2).sum(-1, keepdim=True) + eps)
    target = a * s
    return 10 * torch.log10(target.pow(2).sum(-1) / ((target - s_hat).pow(2).sum(-1) + eps) + eps)


def wer(hypotheses: list[str], references: list[str]) -> float:
    """Corpus word error rate (word-level edit operations / reference words), by ``jiwer``.

    Both sides should be normalised the same way first (``cookbook.data.audio.normalize_text``).
    """
    import jiwer

    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references (> 0), got {len(hypotheses)} and {len(references)}")
    return float(jiwer.wer(list(references), [h if h.strip() else "<empty>" for h in hypotheses]))


def unit_error_rate(hypotheses: list[str], references: list[str]) -> float:
    """Corpus error rate over characters (e.g. IPA phone symbols: a phone error rate), by ``jiwer``.

    Spaces count as units too (word boundaries), as in jiwer's CER.
    """
    import jiwer

    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need as many hypotheses as references (> 0), got {len(hypotheses)} and {len(references)}")
    return float(jiwer.cer(list(references), list(hypotheses)))


def codebook_usage(codes: Tensor, codebook_size: int) -> dict[str, float]:
    """How a codebook is used: share of entries used, and perplexity exp(H) of the code histogram.

    codes: any integer tensor of code indices in [0, codebook_size). Perplexity ranges from 1 (one
    code) to codebook_size (uniform use); log2(perplexity) is the entropy in bits per token.
    """
    if codes.numel() == 0:
        raise ValueError("codes is empty")
    if int(codes.min()) < 0 or int(codes.max()) >= codebook_size:
        raise ValueError(f"codes must be in [0, {codebook_size})")
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used": float((counts > 0).double().mean()), "perplexity": float(entropy.exp())}


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean intersection over union of a segmentation, over the classes present in ``target`` or ``pred``.

    pred: (N, H, W) class ids or (N, C, H, W) logits; target: (N, H, W) int64. IoU_c = |P_c & Y_c| /
    |P_c | Y_c| accumulated over the whole set (as the PASCAL VOC / Cityscapes evaluation does), then
    averaged over classes with a non-empty union.
    """
    if pred.dim() == 4:
        pred = pred.argmax(1)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match")
    p, t = pred.flatten().long(), target.flatten().long()
    inter = torch.bincount(t[p == t], minlength=num_classes)[:num_classes].double()
    union = (torch.bincount(p, minlength=num_classes)[:num_classes] + torch.bincount(t, minlength=num_classes)[:num_classes]).double() - inter
    present = union > 0
    return float((inter[present] / union[present]).mean())


def attention_distance(attn: torch.Tensor, grid: int, prefix: int = 1) -> torch.Tensor:
    """Mean attention distance per head: how far (in patches) each patch token looks, weighted by attention.

    attn (B, H, P + N, P + N) with N = grid^2 patch tokens after ``prefix`` (CLS) tokens; for every
    patch query i, sum_j A_ij |pos_i - pos_j| over patch keys j (renormalised over patches), averaged
    over queries and images. Returns (H,). Local heads score low, global ones high; a layer whose heads
    all score alike has "collapsed" (Hybrid Distill's diagnostic, after Dosovitskiy et al., 2021).
    """
    if attn.dim() != 4 or attn.shape[-1] != prefix + grid * grid:
        raise ValueError(f"attn must be (B, H, {prefix} + {grid}^2, same), got {tuple(attn.shape)}")
    a = attn[:, :, prefix:, prefix:]
    a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).float().to(attn.device)
    dist = torch.cdist(pos, pos)                                              # (N, N) in patches
    return (a * dist).sum(-1).mean((0, 2))


# ----------------------------------------------------------------------------- generative quality (notebooks 07a/07b)

class ClassifierFeatures(nn.Module):
    """A frozen Fashion-MNIST ``SmallCNN`` as the feature extractor of the generative metrics.

    Input: images in [-1, 1], (N, 1, s, s) of any size s; they are resized to 28 x 28 (bilinear),
    normalised as the classifier was trained, and mapped to the global average pool of its last
    stage (``num_features`` = 4 x width, 128 for ``fmnist-cnn``). ``logits(x)`` gives its class scores.
    This stands in for Inception-v3: a Frechet distance on these features is NOT Inception FID and
    its values are not comparable with published FIDs.
    """

    def __init__(self, classifier: nn.Module, mean: float = 0.2860, std: float = 0.3530):
        super().__init__()
        self.classifier, self.mean, self.std = classifier.eval(), mean, std
        self.num_features = classifier.stage3[0][0].out_channels

    def _prep(self, x: Tensor) -> Tensor:
        x = x.float()
        if x.shape[-1] != 28:
            x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
        return ((x.clamp(-1, 1) + 1) / 2 - self.mean) / self.std

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:             # (N, 1, s, s) -> (N, num_features)
        c = self.classifier
        return c.stage3(c.stage2(c.stage1(self._prep(x)))).mean((2, 3))

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:              # (N, 1, s, s) -> (N, C)
        return self.classifier(self._prep(x))


def frechet_distance(real: Tensor, fake: Tensor, features: nn.Module, batch_size: int = 500) -> float:
    """Frechet distance between Gaussians fitted to ``features`` of real and generated images.

    Computed by torchmetrics' ``FrechetInceptionDistance`` with ``features`` as its custom feature
    extractor (e.g. ``ClassifierFeatures``), so it is "FID" only in form: the value depends on the
    feature network and on the sample sizes (it is biased upwards for small n; compare rows
    computed with the same n only, and report n).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError("frechet_distance needs at least 2 real and 2 generated images")
    fid = FrechetInceptionDistance(feature=features, normalize=True)
    for imgs, is_real in ((real, True), (fake, False)):
        for start in range(0, len(imgs), batch_size):
            fid.update(imgs[start:start + batch_size], real=is_real)
    return float(fid.compute())


def precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019, arXiv 1904.06991).

    Each set's manifold is the union of balls around its points with radius = distance to the
    k-th nearest neighbour in the same set. precision = share of generated points inside the real
    manifold (quality), recall = share of real points inside the generated manifold (coverage).
    """
    if real_feats.dim() != 2 or fake_feats.dim() != 2 or real_feats.shape[1] != fake_feats.shape[1]:
        raise ValueError("precision_recall needs (N, D) real and (M, D) generated features")
    if min(len(real_feats), len(fake_feats)) <= k:
        raise ValueError(f"precision_recall needs more than k={k} points in each set")
    real_feats, fake_feats = real_feats.double(), fake_feats.double()

    def radii(x: Tensor) -> Tensor:
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values          # +1: the point itself

    def inside(points: Tensor, centres: Tensor, r: Tensor) -> float:
        return (torch.cdist(points, centres) <= r[None]).any(1).double().mean().item()

    return inside(fake_feats, real_feats, radii(real_feats)), inside(real_feats, fake_feats, radii(fake_feats))


# ----------------------------------------------------------------------------- speculative decoding


def acceptance_stats(accepted, drafted) -> dict[str, float]:
    r"""Acceptance metrics of a speculative-decoding trace, every convention side by side.

    Per target call c: ``drafted[c]`` tokens proposed, ``accepted[c]`` of them kept (then the
    target adds one token of its own: the "+1 bonus", also after a rejection). Returns
    - ``acceptance_rate`` $= \sum_c a_c / \sum_c d_c$: the share of proposed tokens kept (NaN if
      nothing was proposed);
    - ``mean_accepted`` $= \frac1C\sum_c a_c$: drafts kept per call, *without* the bonus;
    - ``mean_accepted_length`` $\tau = \frac1C\sum_c (a_c + 1)$: tokens per target call *with*
      the bonus (EAGLE's and Spec-Bench's "mean accepted tokens", Leviathan's $E[\#\text{tokens}]$);
    - ``calls`` C and ``tokens`` $\sum_c (a_c + 1)$.
    Papers mix these (a tau of 3.2 is a mean_accepted of 2.2): say which one a number is.
    """
    accepted, drafted = [int(a) for a in accepted], [int(d) for d in drafted]
    if len(accepted) != len(drafted):
        raise ValueError(f"accepted ({len(accepted)}) and drafted ({len(drafted)}) need one entry per target call")
    if not accepted:
        raise ValueError("an empty trace: no target call")
    if any(a < 0 or a > d for a, d in zip(accepted, drafted)):
        raise ValueError("each call needs 0 <= accepted <= drafted")
    calls, kept, shown = len(accepted), sum(accepted), sum(drafted)
    return {"acceptance_rate": kept / shown if shown else float("nan"),
            "mean_accepted": kept / calls,
            "mean_accepted_length": (kept + calls) / calls,
            "calls": calls, "tokens": kept + calls}


def expected_accepted_length(alpha: float, gamma: int) -> float:
    r"""Leviathan et al. (2023) Eq. 1: tokens per target call, bonus included, if each draft is
    accepted independently with probability alpha: $(1 - \alpha^{\gamma+1}) / (1 - \alpha)$."""
    if not 0.0 <= alpha <= 1.0 or gamma < 0:
        raise ValueError(f"need alpha in [0, 1] and gamma >= 0, got {alpha}, {gamma}")
    return float(gamma + 1) if alpha == 1.0 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
