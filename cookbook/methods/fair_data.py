"""Fair synthetic tabular data by learning and distilling a fair latent representation (P16).

P16: Sikder, Ramachandranpillai, de Leng, Heintz, *Generating Synthetic Fair Syntax-agnostic
Data by Learning and Distilling Fair Representation*, 2024, arXiv 2408.10755. Three steps:

1. **Fair representation** (teacher): a VAE over the all-categorical table, encoder
   q(z | x, s), decoder p(x | z, s), trained with reconstruction + KL + beta * V^2(z, s), the
   distance-covariance penalty of FairDisCo (:func:`cookbook.losses.fairness.distance_covariance_loss`).
   :class:`FairVAE` follows the FairDisCo tabular module the FLDGM / P16 authors reuse
   (github fahim-sikder/FLDGM ``module.py``: one hidden layer of 64, z of 8; checked there).
2. **Distillation in the latent space**: a smaller encoder (:class:`LatentStudent`) learns the
   teacher's fair latent with P16's quality loss (MSE) + utility loss (KL of softmaxed latents).
3. **Generation**: the student's latents are decoded by the teacher's decoder. Every column is a
   categorical variable (numbers binned), so nothing depends on the data's syntax; we sample each
   feature from the decoder's softmax, with s drawn from its marginal, independently of z (our
   reading of how a fair table is decoded; the decoder needs some s).

P16 publishes no code (searched: the authors' FLDGM repository has the FairDisCo module and the
latent GAN / diffusion scripts of the earlier FLDGM paper only), so the loss forms of step 2 and
the decoding rule of step 3 are our reading of the paper's text; the notebook's deviation table
says so. The evaluation (:func:`utility_and_fairness`, :func:`marginal_fidelity`,
:func:`detection_auc`) trains a classifier on synthetic rows and tests it on real ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from cookbook.checks import check_choice, check_finite_param, check_int
from cookbook.data.tabular import TabularData, one_hot
from cookbook.losses.fairness import (
    categorical_reconstruction_loss,
    distance_covariance_loss,
    gaussian_kl,
    latent_quality_loss,
    latent_utility_loss,
)
from cookbook.metrics import demographic_parity_gap, equalized_odds_gap
from cookbook.train import fit
from cookbook.utils import set_seed


def _one_hot_s(s: Tensor, num_groups: int) -> Tensor:
    return torch.nn.functional.one_hot(s, num_groups).float()


class FairVAE(nn.Module):
    """FairDisCo's tabular VAE: encoder [x, onehot(s)] -> (mu, logvar), decoder [z, onehot(s)] -> logits.

    x is the concatenated one-hot table (B, sum(cards)); the decoder returns one block of logits
    per feature (B, sum(cards)). Sizes as the FairDisCo / FLDGM code: hidden 64, z_dim 8.
    Paper: P16 (arXiv 2408.10755) step 1; FairDisCo (ICLR 2023).
    """

    def __init__(self, cards: list[int], num_groups: int = 2, hidden: int = 64, z_dim: int = 8,
                 conditional: bool = True):
        super().__init__()
        self.cards, self.num_groups, self.z_dim, self.conditional = list(cards), num_groups, z_dim, conditional
        x_dim = sum(cards)
        self.encoder = nn.Sequential(nn.Linear(x_dim + num_groups, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim + num_groups, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))

    def _s(self, s: Tensor) -> Tensor:
        s1 = _one_hot_s(s, self.num_groups)
        return s1 if self.conditional else torch.zeros_like(s1)

    def encode(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(torch.cat([x, self._s(s)], 1))
        return h[:, :self.z_dim], h[:, self.z_dim:]                          # mu, logvar (B, D)

    def decode(self, z: Tensor, s: Tensor) -> Tensor:
        return self.decoder(torch.cat([z, self._s(s)], 1))                  # (B, sum(cards))

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """The posterior mean: the deterministic fair latent a student learns (B, D)."""
        return self.encode(x, s)[0]


class LatentStudent(nn.Module):
    """The smaller encoder of P16's distillation: [x, onehot(s)] -> z (B, D), one narrow hidden layer."""

    def __init__(self, x_dim: int, num_groups: int = 2, hidden: int = 16, z_dim: int = 8):
        super().__init__()
        self.num_groups = num_groups
        self.net = nn.Sequential(nn.Linear(x_dim + num_groups, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return self.net(torch.cat([x, _one_hot_s(s, self.num_groups)], 1))


def fair_vae_loss(model: FairVAE, x: Tensor, codes: Tensor, s: Tensor, beta: float,
                  penalty_rows: int | None = None) -> Tensor:
    """Reconstruction + KL + beta * V^2(z, s) of one batch (scalar): the teacher's objective.

    z = mu + exp(logvar / 2) * eps (reparameterised). beta = 0 is the plain VAE (no fair latent).
    ``penalty_rows``: estimate V^2 on the first that many rows of the (shuffled) batch; its cost
    is O(B^2), and on a CPU a 2048-row batch (the official size) takes seconds. The official
    FairDisCo tabular code skips the penalty unless beta > 1; we apply it for every beta > 0.
    Paper: P16 (arXiv 2408.10755), FairDisCo (ICLR 2023).
    """
    mu, logvar = model.encode(x, s)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    loss = categorical_reconstruction_loss(model.decode(z, s), codes, model.cards) + gaussian_kl(mu, logvar)
    if beta > 0:
        k = len(mu) if penalty_rows is None else min(penalty_rows, len(mu))
        loss = loss + beta * distance_covariance_loss(mu[:k], logvar[:k], s[:k], model.num_groups)
    return loss


def distillation_loss(student: nn.Module, x: Tensor, s: Tensor, teacher_z: Tensor, lam_u: float = 1.0,
                      T: float = 1.0) -> Tensor:
    """P16's distillation objective: L_Q(z_S, z_T) + lam_u * L_U(z_S, z_T) (scalar).

    L_Q: mean squared error of the latents (quality / fairness); L_U: KL of the softmaxed latents
    at temperature T (utility). teacher_z: the teacher's posterior means, computed once.
    Paper: P16, arXiv 2408.10755 (weights: ours, lam_u = 1 as the paper adds the two terms).
    """
    z_s = student(x, s)
    return latent_quality_loss(z_s, teacher_z) + lam_u * latent_utility_loss(z_s, teacher_z, T=T)


@torch.no_grad()
def sample_table(model: FairVAE, z: Tensor, s: Tensor, generator: torch.Generator | None = None,
                 greedy: bool = False) -> Tensor:
    """Decode latents into a categorical table (N, F) int64: each feature drawn from its softmax
    block (``greedy``: its most likely value). ``s`` (N,) is the group the decoder is told."""
    logits = model.decode(z, s)
    cols, start = [], 0
    for k in model.cards:
        block = logits[:, start:start + k]
        cols.append(block.argmax(1) if greedy else torch.multinomial(block.softmax(1), 1, generator=generator)[:, 0])
        start += k
    return torch.stack(cols, 1)


DECODE_RULES = ("real", "marginal", "fixed0", "fixed1")


def decoder_groups(s_train: Tensor, n: int, how: str, generator: torch.Generator | None = None) -> Tensor:
    """The s given to the decoder: "real" keeps each row's own s (s_train must have n rows);
    "marginal" draws it from p(s) independently of the row; "fixed<g>" tells the decoder that
    every row belongs to group g, so a row carries nothing but its latent."""
    check_choice("decoder groups", how, DECODE_RULES)
    if how.startswith("fixed"):
        return torch.full((n,), int(how[5:]), dtype=torch.long)
    if how == "real":
        if len(s_train) != n:
            raise ValueError(f"'real' needs one s per row: got {len(s_train)} for {n} rows")
        return s_train.clone()
    p = torch.bincount(s_train).float()
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=generator)


@dataclass
class FairConfig:
    """Knobs of the P16 pipeline (sources in the notebook's parameters cell)."""

    hidden: int = 64
    z_dim: int = 8
    student_hidden: int = 16
    epochs: int = 30
    student_epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 1024
    penalty_rows: int = 128
    lam_u: float = 1.0
    T: float = 1.0


@dataclass
class PipelineRun:
    """One seed of one generator: the trained models, their synthetic table and what it cost."""

    teacher: FairVAE
    student: LatentStudent | None
    synthetic: dict[str, Tensor] = field(default_factory=dict)    # name -> codes (N, F)
    seconds: dict[str, float] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)


def tensors(data: TabularData, rows: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """(one-hot x (N, sum cards) float, codes (N, F) int64, s (N,) int64) of ``rows``."""
    return (torch.from_numpy(one_hot(data.codes[rows], data.cards)), torch.from_numpy(data.codes[rows]),
            torch.from_numpy(data.s[rows]))


def run_pipeline(data: TabularData, beta: float, seed: int, cfg: FairConfig, *, distill: bool = True,
                 decode: tuple[str, ...] = ("real",), conditional: bool = True, rows: np.ndarray | None = None,
                 desc: str = "", progress: bool = False) -> PipelineRun:
    """Train the teacher VAE (beta; 0 = plain), distil it (P16), and synthesise one table per
    decoding rule in ``decode`` from the training rows.

    Synthetic tables: "teacher/<rule>" (teacher encoder -> decoder) and, with ``distill``,
    "student/<rule>" (student encoder -> teacher decoder, P16's generator). Each has as many rows
    as the training rows (``rows``, default: the whole "train" split). ``conditional=False``
    hides s from encoder and decoder. Timings (s): teacher, student, generation of each table.
    ``progress``: per-step bars of the two trainings (off: callers put one bar over their runs).
    """
    check_finite_param("beta", beta, low=0.0)
    check_int("seed", seed)
    x, codes, s = tensors(data, data.part("train") if rows is None else rows)
    set_seed(seed)
    teacher = FairVAE(data.cards, hidden=cfg.hidden, z_dim=cfg.z_dim, conditional=conditional)
    hist = fit(teacher, lambda m, xb, cb, sb: fair_vae_loss(m, xb, cb, sb, beta, cfg.penalty_rows), (x, codes, s),
               epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer="adamw", schedule="constant",
               seed=seed, desc=f"{desc} teacher", device=torch.device("cpu"), progress=progress)
    out = PipelineRun(teacher, None, seconds={"teacher": hist.seconds}, losses={"teacher": hist.train_loss})
    with torch.no_grad():
        z_t = teacher(x, s)
    latents = {"teacher": z_t}
    if distill:
        set_seed(seed)
        student = LatentStudent(x.shape[1], hidden=cfg.student_hidden, z_dim=cfg.z_dim)
        sh = fit(student, lambda m, xb, sb, zb: distillation_loss(m, xb, sb, zb, cfg.lam_u, cfg.T), (x, s, z_t),
                 epochs=cfg.student_epochs, lr=cfg.lr * 3, batch_size=cfg.batch_size // 4, optimizer="adamw",
                 schedule="cosine", seed=seed, desc=f"{desc} student", device=torch.device("cpu"), progress=progress)
        out.student, out.seconds["student"], out.losses["student"] = student, sh.seconds, sh.train_loss
        start = time.perf_counter()
        latents["student"] = predict_latent(student, x, s)
        out.seconds["student encode"] = time.perf_counter() - start
    gen = torch.Generator().manual_seed(seed)
    for name, z in latents.items():
        for how in decode:
            start = time.perf_counter()
            out.synthetic[f"{name}/{how}"] = sample_table(teacher, z, decoder_groups(s, len(z), how, gen), gen)
            out.seconds[f"{name}/{how} decode"] = time.perf_counter() - start
    return out


@torch.no_grad()
def predict_latent(model: nn.Module, x: Tensor, s: Tensor, batch_size: int = 8192) -> Tensor:
    """Latents of ``model(x, s)`` in eval mode, batched (N, D)."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size], s[i:i + batch_size]) for i in range(0, len(x), batch_size)])


# ----------------------------------------------------------------------------- evaluation


def _features(codes: np.ndarray, cards: list[int], label: int) -> np.ndarray:
    keep = [f for f in range(len(cards)) if f != label]
    return one_hot(np.asarray(codes)[:, keep], [cards[f] for f in keep])


def utility_and_fairness(train_codes: np.ndarray | Tensor, test_codes: np.ndarray, test_s: np.ndarray,
                         cards: list[int], label: int, seed: int = 0) -> dict[str, float]:
    """Train on (synthetic) rows, test on real ones: accuracy and the DP / EO gaps of the classifier.

    A logistic regression (scikit-learn, L2, C = 1: FairDisCo's "lr" evaluator; the liblinear
    solver, 15x faster than lbfgs here, also penalises the intercept) predicts the
    label feature from all the others (the sensitive attribute is never a feature), is fitted on
    ``train_codes`` and scored on the real ``test_codes``; the gaps are between the groups of
    ``test_s``. Returns {"acc", "dp_gap", "eo_gap", "positive_rate"}.
    """
    from sklearn.linear_model import LogisticRegression

    train_codes = np.asarray(train_codes)
    y_train = train_codes[:, label]
    if len(np.unique(y_train)) < 2:
        pred = np.full(len(test_codes), int(y_train[0]))
    else:
        clf = LogisticRegression(solver="liblinear", max_iter=1000, random_state=seed)
        clf.fit(_features(train_codes, cards, label), y_train)
        pred = clf.predict(_features(test_codes, cards, label))
    p, y, g = (torch.as_tensor(np.asarray(a), dtype=torch.long) for a in (pred, test_codes[:, label], test_s))
    return {"acc": float((p == y).float().mean()), "dp_gap": demographic_parity_gap(p, g),
            "eo_gap": equalized_odds_gap(p, y, g), "positive_rate": float(p.float().mean())}


def marginal_fidelity(real_codes: np.ndarray, synth_codes: np.ndarray | Tensor, cards: list[int]) -> float:
    """1 - mean over features of the total variation distance between real and synthetic marginals.

    In [0, 1]; 1 = every column has exactly the real frequencies. TVD = 1/2 sum_v |p(v) - q(v)|.
    """
    real, synth = np.asarray(real_codes), np.asarray(synth_codes)
    if real.shape[1] != len(cards) or synth.shape[1] != len(cards):
        raise ValueError(f"both tables need {len(cards)} columns, got {real.shape[1]} and {synth.shape[1]}")
    tvd = [0.5 * np.abs(np.bincount(real[:, f], minlength=k) / len(real) - np.bincount(synth[:, f], minlength=k) / len(synth)).sum()
           for f, k in enumerate(cards)]
    return float(1.0 - np.mean(tvd))


def detection_auc(real_codes: np.ndarray, synth_codes: np.ndarray | Tensor, cards: list[int], seed: int = 0,
                  max_rows: int = 6_000) -> float:
    """How well a classifier tells synthetic rows from real ones: held-out ROC AUC in [0.5, 1].

    0.5 = indistinguishable (to a logistic regression on the one-hot rows, which sees marginals
    and linear combinations of them); 1 = always told apart. Half of each table trains it, half
    tests it; at most ``max_rows`` rows of each are used.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    real, synth = np.asarray(real_codes), np.asarray(synth_codes)
    n = min(len(real), len(synth), max_rows)
    a, b = real[rng.choice(len(real), n, replace=False)], synth[rng.choice(len(synth), n, replace=False)]
    X = one_hot(np.concatenate([a, b]), cards)
    y = np.r_[np.zeros(n), np.ones(n)]
    order = rng.permutation(2 * n)
    tr, te = order[: n], order[n:]
    clf = LogisticRegression(solver="liblinear", max_iter=1000, random_state=seed).fit(X[tr], y[tr])
    auc = roc_auc_score(y[te], clf.predict_proba(X[te])[:, 1])
    return float(max(auc, 1.0 - auc))


def latent_group_auc(z: Tensor, s: Tensor, seed: int = 0) -> float:
    """How much of s a latent still carries: held-out ROC AUC of a logistic regression z -> s.

    0.5 = nothing (the aim of the fair latent); FairDisCo's "sauc". Half trains, half tests.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(z))
    tr, te = order[: len(z) // 2], order[len(z) // 2:]
    Z, S = z.numpy(), s.numpy()
    clf = LogisticRegression(solver="liblinear", max_iter=1000, random_state=seed).fit(Z[tr], S[tr])
    auc = roc_auc_score(S[te], clf.predict_proba(Z[te])[:, 1])
    return float(max(auc, 1.0 - auc))


def score_table(synth: np.ndarray | Tensor, data: TabularData, train_rows: np.ndarray, eval_rows: np.ndarray,
                seed: int = 0) -> dict[str, float]:
    """Every metric of one synthetic table: utility and fairness (train on it, test on the real
    ``eval_rows``), marginal fidelity and detection AUC against the real ``train_rows``."""
    out = utility_and_fairness(synth, data.codes[eval_rows], data.s[eval_rows], data.cards, data.label, seed)
    out["fidelity"] = marginal_fidelity(data.codes[train_rows], synth, data.cards)
    out["detect_auc"] = detection_auc(data.codes[train_rows], synth, data.cards, seed)
    return out


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["DECODE_RULES", "FairConfig", "FairVAE", "LatentStudent", "PipelineRun", "decoder_groups", "detection_auc",
           "distillation_loss", "fair_vae_loss", "latent_group_auc", "marginal_fidelity", "parameter_count",
           "predict_latent", "run_pipeline", "sample_table", "score_table", "tensors", "utility_and_fairness"]
