"""Semantic distillation losses of speech tokenizers (notebook 09).

- :func:`d_axis_distill_loss`: SpeechTokenizer's "D-axis" loss (Zhang et al., 2023, arXiv
  2308.16692), which DM-Codec (P09, Ahasan et al., 2024, arXiv 2410.15017) reuses for both its LM
  and its speech-model (SM) targets: for every feature dimension d, the cosine between the
  student's time series A Q_1[:, d] and the teacher's S[:, d], through -log sigmoid.
- :func:`t_axis_distill_loss`: the "T-axis" variant (per frame, L1 + cosine over features).
- :func:`dm_codec_loss`: DM-Codec's LM+SM combination (the mean of the two D-axis losses, as the
  official trainer averages them when no weights are given).
- :func:`resynthesis_distill_loss`: LM-SPT (P17, Jo et al., 2025, arXiv 2506.16738): speech
  resynthesised from the semantic tokens alone must look, to a frozen ASR encoder E, like the
  original: a distance between E(x) and E(x_hat_sem), frame by frame.
- :func:`align_tokens_to_frames`: puts an LM's per-token states on the codec's frames, the way
  DM-Codec's official feature extraction does (tokens padded to the number of frames, token i on
  frame i) or spread evenly over the frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import check_choice, check_finite_param, check_int, check_tensor, check_values


def _pair(student: Tensor, teacher: Tensor) -> None:
    check_tensor("student_feats", student, ndim=3)
    check_tensor("teacher_feats", teacher, ndim=3)
    if student.shape != teacher.shape:
        raise ValueError(f"student_feats {tuple(student.shape)} and teacher_feats {tuple(teacher.shape)} "
                         "must have the same (B, T, D) shape: project the student and align the frames first")
    if student.shape[1] < 2:
        raise ValueError("need at least 2 frames (the D-axis cosine runs over time)")
    check_values("student_feats", student)
    check_values("teacher_feats", teacher)


def d_axis_distill_loss(student_feats: Tensor, teacher_feats: Tensor) -> Tensor:
    """SpeechTokenizer / DM-Codec D-axis loss, mean over batch and dimensions (scalar).

    L = -1/D sum_d log sigmoid(cos(Q'[:, d], S[:, d])), Q' = A Q_1 the projected first-codebook
    output and S the teacher, both (B, T, D); the cosine runs over the T frames of dimension d.
    Range: 0.313 at cos = 1, 0.693 at cos = 0, 1.313 at cos = -1.
    Papers: SpeechTokenizer (arXiv 2308.16692) eq. 3; DM-Codec (arXiv 2410.15017) eqs. 1-2.
    """
    _pair(student_feats, teacher_feats)
    cos = F.cosine_similarity(student_feats, teacher_feats, dim=1)  # (B, D)
    return -F.logsigmoid(cos).mean()


def t_axis_distill_loss(student_feats: Tensor, teacher_feats: Tensor, lambda_sim: float = 1.0) -> Tensor:
    """T-axis variant: mean |Q' - S| + lambda_sim * mean_t -log sigmoid(cos(Q'[t], S[t])) (scalar).

    The cosine runs over the D features of each frame. SpeechTokenizer (arXiv 2308.16692) eq. 4.
    """
    _pair(student_feats, teacher_feats)
    lam = check_finite_param("lambda_sim", lambda_sim, 0.0)
    cos = F.cosine_similarity(student_feats, teacher_feats, dim=-1)  # (B, T)
    return F.l1_loss(student_feats, teacher_feats) + lam * -F.logsigmoid(cos).mean()


def dm_codec_loss(student_lm: Tensor, lm_feats: Tensor, student_sm: Tensor, sm_feats: Tensor,
                  w_lm: float = 0.5, w_sm: float = 0.5) -> Tensor:
    """DM-Codec LM+SM guidance: w_lm * L_D(Q'_lm, S_lm) + w_sm * L_D(Q'_sm, S_sm) (scalar).

    The official code passes the same projected first-codebook output as both student views (one
    linear head; BERT and HuBERT are both 768 wide, as MiniLM and Whisper tiny.en are both 384);
    pass separate heads' outputs when the widths differ. Defaults 0.5/0.5: the official trainer's
    mean of the two losses. arXiv 2410.15017, eq. 3.
    """
    w_lm = check_finite_param("w_lm", w_lm, 0.0)
    w_sm = check_finite_param("w_sm", w_sm, 0.0)
    return w_lm * d_axis_distill_loss(student_lm, lm_feats) + w_sm * d_axis_distill_loss(student_sm, sm_feats)


def resynthesis_distill_loss(encoded_resynth: Tensor, encoded_orig: Tensor) -> Tensor:
    """LM-SPT semantic loss: mean_t -log sigmoid(cos(E(x_hat_sem)[t], E(x)[t])) (scalar).

    encoded_resynth: E applied to the speech decoded from the first (semantic) codebook only,
    with gradients; encoded_orig: E of the original speech (no gradient needed); both (B, T, D)
    from the same frozen ASR encoder. The paper minimises a discrepancy between the two
    encodings; we use the per-frame cosine form of the other rows so one weight serves all.
    arXiv 2506.16738, section 3.
    """
    check_tensor("encoded_resynth", encoded_resynth, ndim=3)
    check_tensor("encoded_orig", encoded_orig, ndim=3)
    if encoded_resynth.shape != encoded_orig.shape:
        raise ValueError(f"encoded_resynth {tuple(encoded_resynth.shape)} and encoded_orig "
                         f"{tuple(encoded_orig.shape)} must have the same shape")
    check_values("encoded_resynth", encoded_resynth)
    cos = F.cosine_similarity(encoded_resynth, encoded_orig.detach(), dim=-1)
    return -F.logsigmoid(cos).mean()


def align_tokens_to_frames(token_feats: Tensor, n_frames: int, mode: str = "pad",
                           pad_feats: Tensor | None = None) -> Tensor:
    """LM token states (L, D) placed on ``n_frames`` codec frames -> (n_frames, D).

    mode "pad" (DM-Codec's official extraction): the tokenizer pads the text to ``n_frames``
    positions, so frame i gets token i and the frames past the text get the LM's states of the
    padding positions (``pad_feats``, (n_frames, D), required when L < n_frames); text longer than
    the frames is truncated. mode "uniform": token j covers frames [j T / L, (j + 1) T / L).
    """
    check_tensor("token_feats", token_feats, ndim=2)
    n = check_int("n_frames", n_frames, 1)
    mode = check_choice("mode", mode, ("pad", "uniform"))
    L = token_feats.shape[0]
    if L == 0:
        raise ValueError("token_feats is empty")
    if mode == "uniform":
        idx = torch.div(torch.arange(n) * L, n, rounding_mode="floor")
        return token_feats[idx]
    if L >= n:
        return token_feats[:n]
    check_tensor("pad_feats", pad_feats, ndim=2)
    if pad_feats.shape[0] < n or pad_feats.shape[1] != token_feats.shape[1]:
        raise ValueError(f"pad_feats must be (>= {n}, {token_feats.shape[1]}), got {tuple(pad_feats.shape)}")
    return torch.cat([token_feats, pad_feats[L:n]], dim=0)
