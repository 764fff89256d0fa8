"""Speech-tokenizer training and evaluation of notebook 09: one recipe, five objectives.

Every row trains the same :class:`~cookbook.models.codec.MelCodec` with the same steps, batch, crops
and optimiser (``cookbook.train.train_lm``); only the extra term differs:

- ``plain``: L1(mel_hat, mel) + beta * commitment (the codec alone);
- ``speechtokenizer``: + lam * L_D(A Q_1, S_sm), the first codebook distilled from the speech
  model (Whisper tiny.en, pooled to the codec's frames): the baseline both papers build on;
- ``dm_lm``: + lam * L_D(A Q_1, S_lm), DM-Codec's LM guidance (MiniLM on the transcript);
- ``dm_lm_sm``: + lam * (L_D(A Q_1, S_lm) + L_D(A Q_1, S_sm)) / 2, DM-Codec's LM+SM guidance;
- ``lm_spt``: + lam * L_re(E(decode(Q_1)), E(mel)), LM-SPT's resynthesis distillation through
  the frozen Whisper tiny.en encoder E (the only row that runs a teacher while training).

:func:`evaluate_codec` scores a codec on held-out clips (mel distance, SI-SDR after Griffin-Lim,
WER of a separate judge, Whisper base, on the decoded mel from all codebooks and from the first
alone, codebook usage); :func:`phone_probe` measures how much phonetic content the first
codebook's tokens carry: a linear CTC probe from the token ids (+-2 frames) to espeak phones,
trained on the training clips and scored by phone error rate on the held-out clips.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookbook.checks import check_choice, check_int
from cookbook.data.audio import mel_to_audio, normalize_text
from cookbook.losses.speech import d_axis_distill_loss, dm_codec_loss, resynthesis_distill_loss
from cookbook.metrics import codebook_usage, mel_distance, si_sdr, unit_error_rate, wer
from cookbook.models.codec import MelCodec
from cookbook.teachers.whisper import encode, transcribe
from cookbook.train import train_lm, uniform_sampler
from cookbook.utils import set_seed

METHODS = ("plain", "speechtokenizer", "dm_lm", "dm_lm_sm", "lm_spt")
LABELS = {"plain": "plain codec (recon + commitment)", "speechtokenizer": "SpeechTokenizer-style SM distillation",
          "dm_lm": "DM-Codec LM-guided", "dm_lm_sm": "DM-Codec LM+SM-guided",
          "lm_spt": "LM-SPT resynthesis distillation"}


class CodecStudent(nn.Module):
    """A MelCodec plus the linear head A that maps the first codebook to a teacher's width."""

    def __init__(self, teacher_dim: int = 384, **codec_kwargs):
        super().__init__()
        self.codec = MelCodec(**codec_kwargs)
        self.head = nn.Linear(self.codec.rvq.dim, teacher_dim)


def crops(data, rows: Tensor, crop: int, gen: torch.Generator, stride: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """Random ``crop``-frame windows (aligned to codec frames) of clips ``rows``: mel, sm, lm."""
    mels, sms, lms = [], [], []
    for i in rows.tolist():
        if data.mel[i].shape[-1] < crop:
            raise ValueError(f"clip {i} has {data.mel[i].shape[-1]} frames < crop {crop}: drop short clips first "
                             "(SpeechSet.select)")
        n = data.mel[i].shape[-1] // stride - crop // stride
        s = int(torch.randint(0, n + 1, (1,), generator=gen)) if n > 0 else 0
        mels.append(data.mel[i][:, s * stride: s * stride + crop])
        sms.append(data.sm[i][s: s + crop // stride])
        lms.append(data.lm[i][s: s + crop // stride])
    return torch.stack(mels), torch.stack(sms), torch.stack(lms)


def codec_loss(method: str, student: CodecStudent, mel: Tensor, sm: Tensor, lm: Tensor, *, lam: float,
               beta: float, encoder=None, encoder_layers: int | None = None) -> tuple[Tensor, dict[str, float]]:
    """The row's objective on one batch; returns (loss, parts for logging).

    encoder_layers: LM-SPT compares the first ``encoder_layers`` blocks of the frozen encoder
    (None: all blocks and the final layer norm).
    """
    out = student.codec(mel)
    recon = F.l1_loss(out.mel_hat, mel)
    loss = recon + beta * out.commit
    parts = {"recon": recon.item(), "commit": out.commit.item()}
    if method == "plain":
        return loss, parts
    if method == "lm_spt":
        if encoder is None:
            raise ValueError("lm_spt needs the frozen ASR encoder (encoder=load_whisper('tiny.en'))")
        mel_sem = student.codec.decode(out.layers[0])  # speech from the semantic tokens only
        with torch.no_grad():
            target = encode(encoder, mel, encoder_layers)
        distill = resynthesis_distill_loss(encode(encoder, mel_sem, encoder_layers), target)
    else:
        feat = student.head(out.layers[0])  # A Q_1, (B, T/4, 384)
        if method == "speechtokenizer":
            distill = d_axis_distill_loss(feat, sm)
        elif method == "dm_lm":
            distill = d_axis_distill_loss(feat, lm)
        else:
            distill = dm_codec_loss(feat, lm, feat, sm)
    parts["distill"] = distill.item()
    return loss + lam * distill, parts


def train_codec(method: str, train, *, steps: int, batch_size: int, crop: int, lr: float, lam: float,
                beta: float, seed: int, encoder=None, encoder_layers: int | None = None,
                codec_kwargs: dict | None = None, progress: bool | None = None) -> tuple[CodecStudent, dict]:
    """Train one row's codec; returns it (eval mode) and its log (loss parts per step, seconds)."""
    method = check_choice("method", method, METHODS)
    check_int("steps", steps, 1)
    set_seed(seed)
    student = CodecStudent(**(codec_kwargs or {}))
    log: dict[str, list[float]] = {}
    gen = torch.Generator().manual_seed(seed)

    def loss_fn(model, rows, step, run):
        mel, sm, lm = crops(train, rows, crop, gen)
        loss, parts = codec_loss(method, model, mel, sm, lm, lam=lam, beta=beta, encoder=encoder,
                                 encoder_layers=encoder_layers)
        for k, v in parts.items():
            log.setdefault(k, []).append(v)
        return loss

    run = train_lm(student, loss_fn, uniform_sampler(len(train), batch_size), steps=steps, lr=lr,
                   warmup=min(20, steps // 10), seed=seed, progress=progress, desc=method)
    return student, {"loss": run.loss, "seconds": run.seconds, **log}


def _pad_batch(mels: list[Tensor]) -> Tensor:
    """Clips (80, T_i) as one batch padded with each clip's silence floor."""
    T = max(m.shape[-1] for m in mels)
    return torch.stack([torch.cat([m, m.amin().expand(m.shape[0], T - m.shape[-1])], -1) for m in mels])


@torch.no_grad()
def evaluate_codec(student: CodecStudent, data, *, judge=None, judge_tokenizer=None, n_audio: int = 4,
                   n_wer: int | None = None, judge_batch: int = 8) -> dict:
    """Held-out scores of one codec (see the module docstring); judge None skips the WERs.

    n_audio: clips vocoded for SI-SDR; n_wer: clips transcribed (None: all). The decoded mels
    (``mel_hat``, ``mel_q1``) come back too, for listening.
    """
    codec = student.codec.eval()
    mel_hat, mel_sem, codes, dists = [], [], [], []
    for mel in data.mel:
        T = mel.shape[-1] // codec.stride * codec.stride
        out = codec(mel[None, :, :T])
        mel_hat.append(out.mel_hat[0])
        mel_sem.append(codec.decode(out.layers[0])[0])
        codes.append(out.codes[0])
        dists.append(mel_distance(out.mel_hat[0], mel[:, :T]))
    codes_all = torch.cat(codes)  # (sum T/4, n_q)
    usage = [codebook_usage(codes_all[:, k], codec.rvq.codebook_size) for k in range(codes_all.shape[1])]
    res = {"mel_distance": float(np.mean(dists)), "bitrate": codec.bitrate(),
           "usage_q1": usage[0]["used"], "perplexity_q1": usage[0]["perplexity"],
           "perplexity_mean": float(np.mean([u["perplexity"] for u in usage])), "codes": codes}
    if data.audio is not None and n_audio:
        sdr = []
        for m, a in zip(mel_hat[:n_audio], data.audio[:n_audio]):
            y = torch.from_numpy(mel_to_audio(m))
            n = min(len(y), len(a))
            sdr.append(float(si_sdr(y[:n], torch.from_numpy(a[:n]))))
        res["si_sdr"] = float(np.mean(sdr))
    if judge is not None:
        n = len(data.texts) if n_wer is None else n_wer
        refs = [normalize_text(t) for t in data.texts[:n]]
        for key, mels in (("wer", mel_hat[:n]), ("wer_q1", mel_sem[:n])):
            hyps = transcribe_all(judge, judge_tokenizer, mels, judge_batch)
            res[key] = wer(hyps, refs)
            res[key + "_hyps"] = hyps
    res["mel_hat"], res["mel_q1"] = mel_hat, mel_sem
    return res


def transcribe_all(judge, tokenizer, mels: list[Tensor], batch: int = 8) -> list[str]:
    """Normalised transcripts of log-mel clips, in batches of similar length."""
    order = sorted(range(len(mels)), key=lambda i: mels[i].shape[-1])
    hyps: dict[int, str] = {}
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        for i, h in zip(idx, transcribe(judge, tokenizer, _pad_batch([mels[i] for i in idx]))):
            hyps[i] = normalize_text(h)
    return [hyps[i] for i in range(len(mels))]


class TokenProbe(nn.Module):
    """Linear CTC probe from discrete tokens: sum over offsets -c..c of an embedding of the token.

    Equivalent to a linear layer on the concatenated one-hot tokens of a (2c+1)-frame window; it
    emits ``upsample`` label distributions per token frame (25 Hz tokens, phones need more frames).
    """

    def __init__(self, codebook_size: int, n_labels: int, context: int = 2, upsample: int = 2):
        super().__init__()
        self.context, self.upsample, self.n_labels = context, upsample, n_labels
        self.emb = nn.ModuleList(nn.Embedding(codebook_size + 1, upsample * n_labels) for _ in range(2 * context + 1))
        self.pad = codebook_size

    def forward(self, codes: Tensor) -> Tensor:  # (B, T) -> (B, T * upsample, n_labels) log-probs
        padded = F.pad(codes, (self.context, self.context), value=self.pad)
        T = codes.shape[1]
        logits = sum(e(padded[:, j:j + T]) for j, e in enumerate(self.emb))
        return logits.view(codes.shape[0], T * self.upsample, self.n_labels).log_softmax(-1)


def _ctc_decode(logp: Tensor, symbols: list[str]) -> str:
    best = logp.argmax(-1).tolist()
    out, prev = [], 0
    for b in best:
        if b != prev and b != 0:
            out.append(symbols[b])
        prev = b
    return "".join(out)


def phone_probe(train_codes: list[Tensor], train_phones: list[str], eval_codes: list[Tensor],
                eval_phones: list[str], *, codebook_size: int, steps: int = 200, lr: float = 0.05,
                seed: int = 0) -> float:
    """Phone error rate of a linear CTC probe on first-codebook tokens (train -> held-out clips)."""
    symbols = ["<blank>"] + sorted({c for p in train_phones + eval_phones for c in p})
    index = {c: i for i, c in enumerate(symbols)}
    set_seed(seed)
    probe = TokenProbe(codebook_size, len(symbols))
    lengths = torch.tensor([len(c) for c in train_codes])
    codes = nn.utils.rnn.pad_sequence(train_codes, batch_first=True, padding_value=codebook_size)
    targets = [torch.tensor([index[c] for c in p]) for p in train_phones]

    def loss_fn(model, rows, step, run):
        logp = model(codes[rows]).transpose(0, 1)  # (T', B, V)
        tgt = [targets[i] for i in rows.tolist()]
        return F.ctc_loss(logp, torch.cat(tgt), lengths[rows] * probe.upsample, torch.tensor([len(t) for t in tgt]),
                          blank=0, zero_infinity=True)

    train_lm(probe, loss_fn, uniform_sampler(len(train_codes), min(32, len(train_codes))), steps=steps, lr=lr,
             warmup=10, seed=seed, progress=False, desc="probe")
    with torch.no_grad():
        hyps = [_ctc_decode(probe(c[None])[0], symbols) for c in eval_codes]
    return unit_error_rate(hyps, eval_phones)


def first_codes(student: CodecStudent, data) -> list[Tensor]:
    """First-codebook token ids (T/4,) of every clip."""
    codec = student.codec.eval()
    with torch.no_grad():
        return [codec(m[None, :, : m.shape[-1] // codec.stride * codec.stride]).codes[0, :, 0] for m in data.mel]


def timed(fn, *args, **kwargs):
    """(result, seconds) of ``fn(*args, **kwargs)``."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


@torch.no_grad()
def kmeans_units(train_feats: list[Tensor], eval_feats: list[Tensor], k: int = 256, iters: int = 10,
                 seed: int = 0) -> tuple[list[Tensor], list[Tensor]]:
    """Discrete units of continuous features: k-means (Lloyd, ``iters`` rounds) fitted on the
    training frames, then each frame's nearest centroid (the HuBERT-units recipe).

    Used as the probe's reference: the phone content a 256-code tokenizer of the *teacher's*
    features keeps, which bounds what distilling that teacher into 256 codes can reach.
    """
    from cookbook.models.codec import ResidualVQ

    x = torch.cat(train_feats)
    gen = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = ResidualVQ.nearest(x, centroids)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    units = lambda feats: [ResidualVQ.nearest(f, centroids) for f in feats]
    return units(train_feats), units(eval_feats)
