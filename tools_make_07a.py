"""Writes notebooks/07a_diffusion_toy.ipynb (and its solutions). Run once; the notebook is the source after."""
import nbformat as nbf

NB = "07a_diffusion_toy"
cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip("\n")))
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip("\n")))

md(r"""
# 07a · Few-step diffusion distillation on a 2-D toy: CD, sCM + LADD, SiD, SwiftBrush, StreamDiT, TopKLD

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/distill-cookbook/distill-cookbook/blob/main/notebooks/07a_diffusion_toy.ipynb)

- **Papers:** **P25** few-step SiD (Zhou et al. 2025, arXiv 2505.12674, on SiD, arXiv 2404.04057), **P66** SwiftBrush (Nguyen & Tran, CVPR 2024, arXiv 2312.05239), **P35** SANA-Sprint: sCM + LADD (Chen et al. 2025, arXiv 2503.09641, on sCM, Lu & Song, arXiv 2410.11081), **P45** StreamDiT (Kodaira et al. 2025, arXiv 2507.03745), **P56** bit-level scaling and TopKLD (Ding et al. 2025, arXiv 2501.06218). Baselines: the teacher with its full sampler (DPM-Solver++, 20 steps), DDIM at 1/2/4/8 steps, plain consistency distillation (Song et al. 2023).
- **Idea:** a diffusion teacher needs tens of network calls (NFE) per sample; each method trains a student that needs 1-4. On a ring of 8 Gaussians the exact density is known, so what a method gains (quality) and what it loses (modes) is visible at a glance and every method runs in seconds.
- **What you build:** one noise parametrisation (TrigFlow = v-prediction) shared with diffusers' schedulers; the losses of SiD, VSD, sCM, LADD, CD and TopKLD (`cookbook/losses/diffusion.py`); the distillation loops (`cookbook/methods/diffusion.py`); a StreamDiT moving-buffer sampler; fake-quantised students.
- **Run time:** FAST about 1.5 min, FULL about 12-15 min on a shared 2-core CPU (measured at the end). Notebook **07b** runs the image-scale part (Fashion-MNIST 16x16, a diffusers UNet teacher).
- **Prerequisites:** notebook 00; what a diffusion model's noise schedule and sampler are.

```
 data x0 ─► x_t = cos t·x0 + sin t·z ─► teacher F(x_t,t) ≈ v      (20 NFE per sample: DPM-Solver++)
 noise z ─► student G (from the teacher's weights) ─► x0 in 1-4 NFE
            trained by: CD / sCM (+ LADD GAN)   [needs data x0]
                        SiD / SwiftBrush          [data-free: teacher + a "fake" score of G's samples]
```
""")

code(r"""
import sys

if "google.colab" in sys.modules:  # Colab only: fetch the cookbook
    !git clone -q --depth 1 https://github.com/distill-cookbook/distill-cookbook /content/distill-cookbook
    !pip -q install -e "/content/distill-cookbook[diffusion]"
    %cd /content/distill-cookbook/notebooks

import copy
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from cookbook import results, utils
from cookbook.config import mode, pick
from cookbook.exercises import diffusion as exercises
from cookbook.losses.diffusion import scm_tangent, sid_generator_loss
from cookbook.methods import diffusion as D
from cookbook.models.diffusion import (HALF_PI, ARGridModel, FrameDenoiser, ToyDenoiser, TrigFlowNet, model_bits,
                                       quantize_linears, scheduler_sample)
from cookbook.results import paired_gain

NOTEBOOK = "07a_diffusion_toy"
START = time.perf_counter()
torch.set_num_threads(1)      # small MLPs: one thread is as fast and leaves the other core free
utils.env_report()
utils.set_seed(0);
""")

code(r"""
SEEDS = pick(full=[0, 1, 2], fast=[0])          # a seed: student init copy, data/noise order, sampling noise
TEACHER_STEPS = pick(full=2500, fast=300)       # v-prediction steps for the ring teacher (batch 256)
DISTILL_STEPS = pick(full=400, fast=40)         # every distillation method gets the same step budget ...
BATCH = 256                                     # ... and batch (CD, sCM, SiD, SwiftBrush)
LR = 1e-4                                       # one lr for all methods: 1e-3 diverged for sCM/SiD/SwiftBrush on this toy, 1e-4 worked for all (pilot in this notebook's history: see 'paper / official / ours')
N_EVAL = pick(full=3000, fast=1000)             # samples per evaluation
TIMES = {1: (HALF_PI,), 2: (HALF_PI, 1.0), 4: (HALF_PI, 1.3, 1.0, 0.6)}   # multistep angles; 2-step = SANA-Sprint's (1.5708, 1.0)
SID_T_INIT = math.atan(2.5 / 0.5)               # SiD: sigma_init = 2.5 at sigma_data = 0.5, as an angle
SID_FEW = (SID_T_INIT, 1.0, 0.6, 0.3)           # few-step SiD (P25): 4 generator steps (our angles)
STREAM = dict(buffer=8, chunks=4)               # StreamDiT: 8 frames in 4 chunks of 2
STREAM_TEACHER_STEPS = pick(full=2000, fast=200)
STREAM_DISTILL_STEPS = pick(full=400, fast=30)
AR_STEPS, QAT_STEPS = pick(full=1500, fast=200), pick(full=400, fast=40)
BITS = [32, 8, 4, 3, 2]                          # weight bits for the bit-level comparison (P56)
QAT_BITS, TOPK = 3, 4                            # QAT students at 3 bits; TopKLD's k (of 32 grid tokens)
""")

md(r"""
## 1. Idea and equation: one parametrisation for every method

All models here use **TrigFlow** (the sCM paper's, used by SANA-Sprint): with data scaled so
$\sigma_d = 1$,

$$x_t = \cos t\, x_0 + \sin t\, z,\qquad t\in[0, \tfrac{\pi}{2}],\qquad F_\theta(x_t, t) \approx v = \cos t\, z - \sin t\, x_0 = \tfrac{dx_t}{dt},$$

so the denoiser is $D_\theta(x_t, t) = \cos t\, x_t - \sin t\, F_\theta(x_t, t)$. This is exactly a
variance-preserving DDPM with $v$-prediction ($\alpha_t = \cos t$, $\sigma_t = \sin t$), so diffusers'
`DDIMScheduler` / `DPMSolverMultistepScheduler` with `prediction_type="v_prediction"` sample it
unchanged (`cookbook.models.diffusion.scheduler_sample` maps their integer timesteps to angles).
A **one- or few-step generator** $G$ has the same network and signature: it maps noise at
$t = \pi/2$ (or SiD's $t_{init}$) to $x_0$ in one call, and re-noises for further steps.

What each method asks of $G$ (details in its section):

| method | needs data? | trains | signal |
|---|---|---|---|
| CD (baseline) | yes | $G$ (+ EMA target) | $G(x_{t_{n+1}}) \approx G^-(\text{teacher DDIM step})$ |
| sCM (P35) | yes | $G$ | continuous-time limit of CD: a JVP tangent |
| LADD (P35) | yes | $G$ + disc. heads | hinge GAN on the frozen teacher's features |
| SiD (P25) | no | $G$ + fake score $\psi$ | score identity: $(D_\phi - D_\psi)^\top[(D_\phi - x_g) - \alpha(D_\phi - D_\psi)]$ |
| SwiftBrush (P66) | no | $G$ + student score $\psi$ | VSD: $\sigma_t^2(\epsilon_\phi - \epsilon_\psi)$ |
""")

md(r"""
## 2. Data and teacher

**We build the data:** an equal mixture of 8 Gaussians (std 0.1) on the unit circle,
`D.ring_sample`, whose exact density `D.ring_log_density` lets us score any sample. The
metrics (`D.mode_stats`): **on-mode** = share of samples within 3 std of a centre (quality,
like precision), **modes hit** = modes with at least a quarter of a fair share (coverage, like
recall), **mode KL** = KL(uniform || histogram of modes) (balance), **log-density** = mean exact
$\log p_{data}$ of the samples. Data itself scores about 0.99 / 8 / 0 / -0.3.
""")

code(r"""
sample_ring = lambda n, g: (D.ring_sample(n, g)[0], None)
no_labels = lambda n, g: None
EVAL_GEN = lambda seed: torch.Generator().manual_seed(1000 + seed)


def score(x, nfe, seconds):
    s = D.mode_stats(x)
    s.update(nfe=nfe, us_per_sample=1e6 * seconds / len(x))
    return s


real = D.ring_sample(N_EVAL, EVAL_GEN(0))[0]
print("data:", {k: round(v, 3) for k, v in D.mode_stats(real).items()})
t0 = time.perf_counter()
teacher_run = D.train_trigflow(TrigFlowNet(ToyDenoiser(hidden=256)), sample_ring, steps=TEACHER_STEPS,
                               batch_size=256, lr=1e-3, ema=0.995, desc="ring teacher")
teacher = teacher_run.model
print(f"teacher: MLP 3x256, {sum(p.numel() for p in teacher.parameters()):,} params, {TEACHER_STEPS} steps, "
      f"{teacher_run.seconds:.0f} s, last loss {np.mean(teacher_run.losses['loss'][-50:]):.3f}")
""")

md(r"""
**Baselines without distillation.** The teacher with its full sampler (DPM-Solver++ 2M, 20
steps) and with DDIM at 1, 2, 4 and 8 steps (diffusers schedulers, trailing spacing). A
seed here is the sampling noise.
""")

code(r"""
ROWS = {}          # (method, nfe) -> list over seeds of score dicts
SAMPLES = {}       # (method, nfe) -> samples of the first seed (for the plots)


def evaluate(name, nfe, fn, seed):
    t0 = time.perf_counter()
    x = fn(EVAL_GEN(seed))
    ROWS.setdefault((name, nfe), []).append(score(x, nfe, time.perf_counter() - t0))
    SAMPLES.setdefault((name, nfe), x)


for seed in SEEDS:
    evaluate("teacher DPM-Solver++", 20, lambda g: scheduler_sample(teacher, (N_EVAL, 2), 20, kind="dpm", generator=g), seed)
    for k in (1, 2, 4, 8):
        evaluate("teacher DDIM", k, lambda g, k=k: scheduler_sample(teacher, (N_EVAL, 2), k, kind="ddim", generator=g), seed)


def show(names=None):
    lines = []
    for (name, nfe), rows in ROWS.items():
        if names and name not in names:
            continue
        cell = lambda key, d=3: "{:.{d}f} ± {:.{d}f}".format(*results.mean_std([r[key] for r in rows]), d=d)
        lines.append(f"| {name} | {nfe} | {cell('on_mode')} | {cell('modes_hit', 1)} | {cell('mode_kl')} | "
                     f"{cell('log_density', 2)} | {np.mean([r['us_per_sample'] for r in rows]):.1f} | {len(rows)} |")
    display(Markdown("| method | NFE | on-mode ↑ | modes hit (of 8) ↑ | mode KL ↓ | log-density ↑ | µs / sample | seeds |\n"
                     "|---|---|---|---|---|---|---|---|\n" + "\n".join(lines)))


show()
""")

md(r"""
The full sampler is the bar to reach. DDIM at 1-2 steps collapses onto the mean of the data
(the centre of the ring, off every mode): one deterministic step from pure noise lands on
$E[x_0 \mid x_T] \approx 0$. This is the gap distillation closes.
""")

md(r"""
## 3. Consistency distillation (baseline)

Song et al. (2023): pick neighbouring angles $t_n < t_{n+1}$ on the EDM grid ($N = 18$), noise a
data point to $x_{t_{n+1}}$, take **one teacher DDIM step** to $\hat x_{t_n}$ and ask the student to
give the same answer from both points:

$$\mathcal L_{CD} = \big\| f_\theta(x_{t_{n+1}}, t_{n+1}) - \operatorname{sg} f_{\theta^-}(\hat x_{t_n}, t_n) \big\|^2,\qquad
f = D_\theta,\ \theta^- = \operatorname{EMA}_{0.95}(\theta).$$

`D.distill_cd` (loss: `consistency_loss`). The student starts from the teacher's weights, like every method below.
""")

code(r"""
fresh = lambda: copy.deepcopy(teacher).requires_grad_(True)
RUNS = {}


def distil(name, fn, times_by_nfe):
    for seed in SEEDS:
        run = fn(seed)
        RUNS.setdefault(name, []).append(run)
        for nfe, times in times_by_nfe.items():
            evaluate(name, nfe, lambda g, times=times: D.generator_sample(run.model, torch.randn(N_EVAL, 2, generator=g),
                                                                          times=times, generator=g), seed)
    print(f"{name}: {np.mean([r.seconds for r in RUNS[name]]):.0f} s per seed")


distil("CD", lambda s: D.distill_cd(teacher, fresh(), sample_ring, steps=DISTILL_STEPS, batch_size=BATCH, lr=LR, seed=s), TIMES)
show(["teacher DDIM", "CD"])
""")

md(r"""
## 4. sCM + LADD (P35, SANA-Sprint)

**sCM** is CD with $\Delta t \to 0$. The gradient of the CD loss becomes a tangent along the
teacher's probability-flow ODE, computed with one forward-mode JVP of the stop-gradient student:

$$g = -\cos^2 t\,(F_{\theta^-} - \tfrac{dx_t}{dt}) - r\,\big(\cos t \sin t\, x_t + \cos t\sin t\,\tfrac{dF_{\theta^-}}{dt}\big),\qquad
\tfrac{dx_t}{dt} = F_{teacher}(x_t, t),$$

$$\mathcal L_{sCM} = \tfrac{w(t)}{e^{u(t)}}\big\|F_\theta - F_{\theta^-} - \tfrac{g}{\|g\| + c}\big\|^2 + u(t),\quad w = 1/\tan t,\ c = 0.1,$$

with $r$ warmed up from 0 to 1 and $u(t)$ a learned weight. SANA-Sprint turns a flow-matching
teacher into TrigFlow without training (ours *is* TrigFlow already) and adds **LADD**: the student's
$x_0$ is re-noised and judged by a discriminator made of the **frozen teacher's features** plus small
trainable heads, hinge loss, weight 0.5. `D.distill_scm` (losses `scm_loss`, `hinge_g_loss`, `hinge_d_loss`).
""")

code(r"""
distil("sCM", lambda s: D.distill_scm(teacher, fresh(), sample_ring, steps=DISTILL_STEPS, batch_size=BATCH, lr=LR, seed=s), TIMES)
distil("sCM + LADD", lambda s: D.distill_scm(teacher, fresh(), sample_ring, steps=DISTILL_STEPS, batch_size=BATCH, lr=LR, seed=s,
                                             disc=D.TeacherDiscriminator(copy.deepcopy(teacher), None, 256)), TIMES)
show(["CD", "sCM", "sCM + LADD"])
""")

md(r"""
## 5. SiD and few-step SiD (P25): data-free

**Score identity Distillation** needs no data: a *fake score* network $\psi$ (a copy of the teacher)
keeps learning to denoise the generator's current samples, and the generator follows the
difference between the teacher's and the fake denoisers,

$$\mathcal L_\theta = \frac{(D_\phi - D_\psi)^\top\big[(D_\phi - x_g) - \alpha\,(D_\phi - D_\psi)\big]}{\operatorname{sg}\,\operatorname{mean}|x_g - D_\phi|},\qquad \alpha = 1.2,$$

both evaluated at $x_t = \cos t\, x_g + \sin t\, z$ with gradients through $x_g$. **Few-step SiD (P25)**
keeps one generator for $K$ steps and applies the same loss to a step $k \sim U\{1..K\}$ of the
chain (only that step carries gradients): it matches the *uniform mixture* of all steps' outputs
to the data. `D.distill_sid` (loss `sid_generator_loss`).
""")

code(r"""
distil("SiD", lambda s: D.distill_sid(teacher, fresh(), no_labels, (2,), steps=DISTILL_STEPS, batch_size=BATCH, lr=LR, seed=s),
       {1: (SID_T_INIT,)})
distil("few-step SiD (K=4)", lambda s: D.distill_sid(teacher, fresh(), no_labels, (2,), steps=DISTILL_STEPS, batch_size=BATCH,
                                                     lr=LR, times=SID_FEW, seed=s), {1: SID_FEW[:1], 4: SID_FEW})
show(["SiD", "few-step SiD (K=4)"])
""")

md(r"""
## 6. SwiftBrush (P66): variational score distillation, image-free

SwiftBrush trains a one-step student with **VSD** (ProlificDreamer's gradient): a second copy of the
teacher ($\psi$; SwiftBrush trains a LoRA of it) learns the student's own score, and the student moves
along $w(t)\,(\epsilon_\phi - \epsilon_\psi)$, $w = \sigma_t^2$, **without** back-propagating through the
networks (SiD does). `D.distill_swiftbrush` (loss `vsd_loss`).
""")

code(r"""
distil("SwiftBrush", lambda s: D.distill_swiftbrush(teacher, fresh(), no_labels, (2,), steps=DISTILL_STEPS, batch_size=BATCH,
                                                    lr=LR, seed=s), {1: (HALF_PI,)})
show()
""")

md(r"""
**Samples (first seed), with the exact density's 3-std circles.** One panel per method and NFE.
""")

code(r"""
def panels(keys, title):
    fig, axes = plt.subplots(1, len(keys), figsize=(2.3 * len(keys), 2.5), sharex=True, sharey=True)
    centres = D.ring_centres()
    for ax, key in zip(np.atleast_1d(axes), keys):
        x = SAMPLES[key][:1500]
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        for c in centres:
            ax.add_patch(plt.Circle(c.tolist(), 0.3, fill=False, color="tab:red", lw=0.6))
        ax.set(xlim=(-1.6, 1.6), ylim=(-1.6, 1.6), title=f"{key[0]}\nNFE {key[1]}", aspect="equal")
        ax.title.set_fontsize(8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    plt.tight_layout()


panels([("teacher DPM-Solver++", 20), ("teacher DDIM", 1), ("teacher DDIM", 4), ("CD", 1), ("sCM", 1)], "teacher and consistency students")
panels([("sCM + LADD", 1), ("sCM", 2), ("SiD", 1), ("few-step SiD (K=4)", 4), ("SwiftBrush", 1)], "adversarial and data-free students")
""")

md(r"""
## 7. StreamDiT (P45): a moving buffer of frames, then multistep distillation

**We build short "videos":** a point moving along the ring at a random constant angular speed
(`D.stream_sample`, 2-D frames). StreamDiT trains a flow model on a **buffer** of frames whose
noise level rises along the buffer (one time embedding per frame), with *mixed partitioning*:
the buffer is cut into $K \in \{1, 2, 4, 8\}$ chunks, chunk $c$ at $t = \tfrac{\pi}{2}\tfrac{c + \tau}{K}$.
At inference the buffer moves: every pass denoises all frames a little; when the oldest chunk is
clean it is emitted and a fresh noise chunk enters. With $S$ passes per chunk the cost is $S$
buffer evaluations per chunk. **Multistep distillation** trains a student whose single pass
replaces the teacher's $S$ passes within each segment, so NFE falls to the number of chunks a
frame crosses. Metrics (`D.stream_stats`): **ring error** (mean $|\,\|x\| - 1|$, frame quality) and
**jitter** (std of each stream's angular step: 0 for constant speed; data ≈ 0.03).
""")

code(r"""
stream_teacher_run = D.train_stream_teacher(TrigFlowNet(FrameDenoiser()), buffer=STREAM["buffer"],
                                            steps=STREAM_TEACHER_STEPS, batch_size=128, lr=1e-3)
stream_teacher = stream_teacher_run.model
print(f"stream teacher: {stream_teacher_run.seconds:.0f} s, last loss {np.mean(stream_teacher_run.losses['loss'][-50:]):.3f}")
STREAM_ROWS = {}
for seed in SEEDS:
    for S in (8, 1):
        fr, nfe = D.stream_generate(stream_teacher, 300, 24, steps_per_chunk=S, generator=EVAL_GEN(seed), **STREAM)
        STREAM_ROWS.setdefault((f"teacher, {S} passes / chunk", nfe), []).append(D.stream_stats(fr))
    run = D.distill_stream(stream_teacher, copy.deepcopy(stream_teacher).requires_grad_(True), teacher_steps=8,
                           steps=STREAM_DISTILL_STEPS, batch_size=128, lr=3e-4, seed=seed, **STREAM)
    fr, nfe = D.stream_generate(run.model, 300, 24, steps_per_chunk=1, generator=EVAL_GEN(seed), **STREAM)
    STREAM_ROWS.setdefault(("StreamDiT distilled, 1 pass / chunk", nfe), []).append(D.stream_stats(fr))
data_stream = D.stream_stats(D.stream_sample(300, 24, EVAL_GEN(0)))
lines = [f"| {n} | {nfe} | " + " | ".join("{:.3f} ± {:.3f}".format(*results.mean_std([r[k] for r in rows])) for k in ("ring_error", "jitter"))
         + f" | {len(rows)} |" for (n, nfe), rows in STREAM_ROWS.items()]
display(Markdown("| stream sampler | buffer passes per frame | ring error ↓ | jitter ↓ | seeds |\n|---|---|---|---|---|\n"
                 + f"| data | - | {data_stream['ring_error']:.3f} | {data_stream['jitter']:.3f} | - |\n" + "\n".join(lines)))
""")

md(r"""
## 8. Bit-level scaling and TopKLD (P56)

P56 compares **language-style** generators (discrete tokens, trained with cross-entropy) with
**diffusion-style** ones under weight quantisation and finds the language-style ones degrade less,
then distils low-bit students with **TopKLD**. Our miniature: the ring discretised on a 32 x 32 grid
and modelled by a two-token autoregressive model (`ARGridModel`: $p(i)\,p(j \mid i)$), against the
diffusion teacher above; both get their `nn.Linear` weights fake-quantised (symmetric, per output
channel, `quantize_linears`). Post-training quantisation (PTQ) first, the same on-mode metric for both
(the AR model's samples are bin centres; its exact KL to the binned truth is also shown).
""")

code(r"""
tokens = D.to_grid(D.ring_sample(50_000, torch.Generator().manual_seed(7))[0])
truth = D.ring_grid_log_probs()
ar_run = D.train_ar(ARGridModel(), tokens, steps=AR_STEPS, lr=2e-3, desc="AR teacher")
ar = ar_run.model
BITROWS = {}
for bits in BITS:
    q_ar = quantize_linears(copy.deepcopy(ar), bits)
    q_diff = quantize_linears(copy.deepcopy(teacher), bits)
    for seed in SEEDS:
        g = EVAL_GEN(seed)
        x_ar = D.from_grid(q_ar.sample(N_EVAL, generator=g)) + (torch.rand(N_EVAL, 2, generator=g) - 0.5) * (2.5 / 32)
        x_df = scheduler_sample(q_diff, (N_EVAL, 2), 20, kind="dpm", generator=g)
        BITROWS.setdefault(("language-style (AR)", bits), []).append(D.mode_stats(x_ar)["on_mode"])
        BITROWS.setdefault(("diffusion-style", bits), []).append(D.mode_stats(x_df)["on_mode"])
    BITROWS.setdefault(("AR grid KL", bits), []).append(D.grid_kl(truth, q_ar.log_probs()))
fig, ax = plt.subplots(figsize=(5, 3.2))
for name in ("language-style (AR)", "diffusion-style"):
    ax.plot([str(b) for b in BITS], [np.mean(BITROWS[name, b]) for b in BITS], marker="o", label=name)
ax.set(xlabel="weight bits (PTQ)", ylabel="on-mode share of samples", title="bit-level robustness, same data")
ax.legend(fontsize=8)
display(Markdown("| bits | AR: on-mode | AR: exact grid KL (nats) | diffusion: on-mode (DPM 20) |\n|---|---|---|---|\n" + "\n".join(
    f"| {b} | {np.mean(BITROWS['language-style (AR)', b]):.3f} | {BITROWS['AR grid KL', b][0]:.3f} | {np.mean(BITROWS['diffusion-style', b]):.3f} |" for b in BITS)))
""")

md(rf"""
**Distilling a low-bit student.** Quantisation-aware training of a 3-bit copy of the AR teacher
for the same number of steps with (a) cross-entropy on the data tokens, (b) forward KL to the
full-precision teacher, (c) **TopKLD**: the forward KL split into the teacher's top-$k$ tokens and
the tail, with the head's part reversed (mode-seeking on what the teacher is sure of, mode-covering
on the rest; `topk_kld`, our reading of the paper — see its docstring).
""")

code(r"""
QAT = {}
for seed in SEEDS:
    for loss in ("ce", "forward_kl", "topkld"):
        student = quantize_linears(copy.deepcopy(ar), QAT_BITS)
        run = D.train_ar(student, tokens, steps=QAT_STEPS, lr=5e-4, teacher=ar, loss=loss, k=TOPK, seed=seed, desc=f"QAT {loss}")
        QAT.setdefault(loss, []).append(D.grid_kl(truth, run.model.log_probs()))
ptq = BITROWS["AR grid KL", QAT_BITS][0]
display(Markdown(f"| {QAT_BITS}-bit AR student | exact grid KL (nats) ↓ | seeds |\n|---|---|---|\n"
                 + f"| full-precision teacher | {BITROWS['AR grid KL', 32][0]:.4f} | - |\n| PTQ (no training) | {ptq:.4f} | - |\n"
                 + "\n".join(f"| QAT + {k} | " + "{:.4f} ± {:.4f}".format(*results.mean_std(v)) + f" | {len(v)} |" for k, v in QAT.items())))
print("TopKLD - forward KL per seed:", paired_gain(QAT["topkld"], QAT["forward_kl"], scale=1.0))
print("TopKLD - CE per seed:       ", paired_gain(QAT["topkld"], QAT["ce"], scale=1.0))
""")

md(r"""
## 9. Results
""")

code(r"""
def mean_of(name, nfe, key="on_mode"):
    return results.mean_std([r[key] for r in ROWS[name, nfe]])[0]


PAPER = {
    "CD": "CIFAR-10 1-step FID 3.55 (CD, LPIPS; Song et al. 2023)",
    "sCM": "sCD ImageNet-64 2-step FID 1.48; SANA-Sprint 1-step 7.59 FID / 0.74 GenEval (1024px T2I)",
    "sCM + LADD": "SANA-Sprint: LADD on top of sCM improves 1-step fidelity (abstract)",
    "SiD": "CIFAR-10 cond. 1-step FID 1.71 (SiD README)",
    "few-step SiD (K=4)": "SDXL 1024px, few-step: state of the art (abstract)",
    "SwiftBrush": "1-step T2I, 'image-free', competitive with multi-step teachers (abstract)",
}
for (name, nfe), rows in ROWS.items():
    for key, metric in (("on_mode", "on-mode share"), ("modes_hit", "modes hit"), ("log_density", "log-density")):
        results.record(NOTEBOOK, f"{name} · NFE {nfe}", metric, [r[key] for r in rows],
                       paper=PAPER.get(name) if key == "on_mode" else None)
for (name, nfe), rows in STREAM_ROWS.items():
    results.record(NOTEBOOK, f"{name} · {nfe} passes/frame", "stream jitter", [r["jitter"] for r in rows],
                   paper="StreamDiT: NFE cut to the number of chunks, real time at 16 FPS (abstract)" if "distilled" in name else None)
    results.record(NOTEBOOK, f"{name} · {nfe} passes/frame", "stream ring error", [r["ring_error"] for r in rows])
for loss, vals in QAT.items():
    results.record(NOTEBOOK, f"{QAT_BITS}-bit AR, QAT + {loss}", "grid KL", vals,
                   paper="TopKLD lifts bit-level scaling by one level (abstract)" if loss == "topkld" else None)
table = results.show(NOTEBOOK)
""")

code(r"""
one_step = [(n, 1) for n in ("teacher DDIM", "CD", "sCM", "sCM + LADD", "SiD", "few-step SiD (K=4)", "SwiftBrush")]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for i, (name, nfe) in enumerate(one_step):
    vals = [r["on_mode"] for r in ROWS[name, nfe]]
    axes[0].scatter([i] * len(vals), vals, color=f"C{i}", s=18)
    axes[0].bar(i, np.mean(vals), color=f"C{i}", alpha=0.3)
axes[0].axhline(mean_of("teacher DPM-Solver++", 20), ls="--", color="gray", lw=1)
axes[0].text(len(one_step) - 0.5, mean_of("teacher DPM-Solver++", 20), "teacher, 20 NFE", ha="right", va="bottom", fontsize=7, color="gray")
axes[0].set_xticks(range(len(one_step)), [n for n, _ in one_step], rotation=25, ha="right", fontsize=7)
axes[0].set(ylabel="on-mode share (1 NFE), each seed a dot", title="one step: quality")
for name in ("teacher DDIM", "CD", "sCM", "sCM + LADD", "few-step SiD (K=4)"):
    pts = sorted((nfe, mean_of(name, nfe)) for (n, nfe) in ROWS if n == name)
    axes[1].plot(*zip(*pts), marker="o", label=name)
axes[1].axhline(mean_of("teacher DPM-Solver++", 20), ls="--", color="gray", lw=1)
axes[1].set(xscale="log", xlabel="NFE", ylabel="on-mode share", title="quality against network calls")
axes[1].set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
axes[1].legend(fontsize=7)
plt.tight_layout()
""")

code(r"""
WALL = time.perf_counter() - START
best = max(((n, 1) for n, _ in one_step if n != "teacher DDIM"), key=lambda k: mean_of(*k))
sid_vs_sb = paired_gain([r["on_mode"] for r in ROWS["SiD", 1]], [r["on_mode"] for r in ROWS["SwiftBrush", 1]])
ladd = paired_gain([r["on_mode"] for r in ROWS["sCM + LADD", 1]], [r["on_mode"] for r in ROWS["sCM", 1]])
scm_cd = paired_gain([r["on_mode"] for r in ROWS["sCM", 1]], [r["on_mode"] for r in ROWS["CD", 1]])
few = paired_gain([r["on_mode"] for r in ROWS["few-step SiD (K=4)", 4]], [r["on_mode"] for r in ROWS["SiD", 1]])
st = {n: results.mean_std([r["jitter"] for r in rows])[0] for (n, _), rows in STREAM_ROWS.items()}
display(Markdown(
    f"{mode()}, {len(SEEDS)} seed(s), {N_EVAL} samples per evaluation, ring of 8 Gaussians, every student {DISTILL_STEPS} steps x {BATCH} from the teacher's weights. "
    f"On-mode share at 1 NFE: DDIM {mean_of('teacher DDIM', 1):.3f}, CD {mean_of('CD', 1):.3f}, sCM {mean_of('sCM', 1):.3f}, sCM + LADD {mean_of('sCM + LADD', 1):.3f}, "
    f"SiD {mean_of('SiD', 1):.3f}, SwiftBrush {mean_of('SwiftBrush', 1):.3f} (teacher with 20 NFE: {mean_of('teacher DPM-Solver++', 20):.3f}); best one-step: {best[0]}. "
    f"Paired (on-mode points): sCM - CD {scm_cd}, LADD on top of sCM {ladd}, SiD - SwiftBrush {sid_vs_sb}, few-step SiD at 4 NFE - SiD at 1 {few}. "
    f"StreamDiT jitter: teacher 8 passes {st['teacher, 8 passes / chunk']:.3f}, 1 pass {st['teacher, 1 passes / chunk']:.3f}, distilled 1 pass {st['StreamDiT distilled, 1 pass / chunk']:.3f} (data {data_stream['jitter']:.3f}). "
    f"{QAT_BITS}-bit AR grid KL: QAT+CE {np.mean(QAT['ce']):.4f}, +forward KL {np.mean(QAT['forward_kl']):.4f}, +TopKLD {np.mean(QAT['topkld']):.4f} (PTQ {ptq:.4f}). "
    f"Measured on a shared 2-core CPU, 1 thread, {WALL:.0f} s for the whole notebook."))
""")

md(r"""
## 10. Reading the results

The bullets are printed from the numbers above.
""")

code(r"""
b = []
b.append(f"**Distillation closes the few-step gap.** One DDIM step from noise lands on the data mean (on-mode {mean_of('teacher DDIM', 1):.2f}); "
         f"every distilled one-step student beats it by a wide margin, the best ({best[0]}) at {mean_of(*best):.2f} against the 20-NFE teacher's {mean_of('teacher DPM-Solver++', 20):.2f}.")
b.append(f"**Coverage.** Modes hit at 1 NFE: " + ", ".join(f"{n} {mean_of(n, 1, 'modes_hit'):.1f}" for n, _ in one_step if n != "teacher DDIM")
         + ". Data-free methods (SiD, SwiftBrush) learn from the teacher's score only; a mode the generator never visits gets no signal from the fake score, which is where collapse can start.")
b.append(f"**LADD** changed sCM's one-step on-mode share by {ladd}: " + ("a gain on every seed." if ladd.wins == len(ladd.per_seed) else
         "not a consistent gain at this budget (the discriminator's heads start from scratch and get as few steps as the student)."))
b.append(f"**Few steps.** Few-step SiD at 4 NFE vs one-step SiD: {few}. sCM at 2 NFE: {mean_of('sCM', 2):.2f} vs 1 NFE {mean_of('sCM', 1):.2f}.")
b.append(f"**StreamDiT.** Distilling 8 passes per chunk into 1 keeps ring error near the 8-pass teacher's and its jitter at {st['StreamDiT distilled, 1 pass / chunk']:.3f} "
         f"vs {st['teacher, 1 passes / chunk']:.3f} for the undistilled 1-pass teacher; all are far above the data's {data_stream['jitter']:.3f}: our tiny buffer model learned the ring far better than constant motion.")
b.append(f"**Bit-level (P56).** Under PTQ the AR model keeps on-mode " + ", ".join(f"{np.mean(BITROWS['language-style (AR)', bb]):.2f}@{bb}b" for bb in BITS)
         + "; the diffusion model " + ", ".join(f"{np.mean(BITROWS['diffusion-style', bb]):.2f}@{bb}b" for bb in BITS) + ". "
         + f"At {QAT_BITS} bits, TopKLD vs forward KL: {paired_gain(QAT['topkld'], QAT['forward_kl'], scale=1.0)} nats of grid KL (negative = better).")
display(Markdown("\n".join(f"- {x}" for x in b)))
""")

md(r"""
## 11. Exercises

### Exercise 1 (easy): from a v-prediction to $x_0$
Write `my_x0(x_t, v, t)` returning the denoised $x_0$ of the TrigFlow parametrisation ($t$ has shape (B,)).
*Predict first:* what does the denoiser return at $t = \pi/2$, and why does one DDIM step from
pure noise land near the data mean?

<details><summary>Hint</summary>x_t = cos t x0 + sin t z and v = cos t z - sin t x0: solve the 2 x 2 system for x0.</details>
""")
code(r"""
def my_x0(x_t, v, t):
    raise NotImplementedError("cos(t) x_t - sin(t) v, with t broadcast over the non-batch dims")


exercises.check_trigflow_x0(my_x0);
""")
md(r"""
### Exercise 2 (medium): SiD's generator loss
Write `my_sid(teacher_x0, fake_x0, x_g, alpha)`. Then explain: what is the loss, and its gradient,
when the fake score equals the teacher's, and what does $\alpha$ trade off?

<details><summary>Hint</summary>Per sample: sum over pixels of (D_phi - D_psi) * ((D_phi - x_g) - alpha (D_phi - D_psi)), divided by the detached mean |x_g - D_phi|; then the batch mean.</details>
""")
code(r"""
def my_sid(teacher_x0, fake_x0, x_g, alpha):
    raise NotImplementedError


exercises.check_sid_loss(my_sid);
""")
md(r"""
### Exercise 3 (hard): sCM's tangent
Write `my_tangent(F_minus, F_minus_jvp, dxt_dt, x_t, t)` (r = 1, c = 0.1). Then check on paper that
$g = 0$ when the data are $N(0, I)$ and $F(x, t) = \frac{\cos t - 1}{\sin t} x$: why is that the exact
consistency function there, and what breaks at $t \to 0$ and at $t = \pi/2$?

<details><summary>Hint</summary>g = -cos^2 t (F^- - dx/dt) - (cos t sin t x_t + J); divide each sample by its L2 norm + 0.1.</details>
""")
code(r"""
def my_tangent(F_minus, F_minus_jvp, dxt_dt, x_t, t):
    raise NotImplementedError


exercises.check_scm_tangent(my_tangent);
""")

md(r"""
## 12. Paper / official code / ours

Official code read: SiD (mingyuanzhou/SiD, `sid_loss`), SANA-Sprint (NVlabs/Sana
`train_scripts/train_scm_ladd.py`), DMD2/FastGen for the shared fake-score loop. SwiftBrush's
and StreamDiT's training code and the TopKLD code were not found; those rows follow the papers'
abstracts and the methods they build on (VSD, flow matching).

| method | item | paper | official code | ours | likely effect |
|---|---|---|---|---|---|
| all | scale | SD/SDXL/SANA latents, CIFAR/ImageNet, 4B-param video DiT | GPUs, 10k-100k+ steps | 2-D ring, MLP 3x256, 400 steps x 256, 1 CPU thread | effects are qualitative; ranking between methods can change at scale |
| all | parametrisation | EDM (SiD), TrigFlow (sCM), DDPM eps (SwiftBrush), flow (StreamDiT) | same | one TrigFlow/v-pred teacher for all, sigma_d = 1 | none in principle (all are reparametrisations); weights per t differ |
| all | tuning | per paper | per paper | one lr (1e-4) for all students, picked on this toy (1e-3 diverged for sCM, SiD, SwiftBrush) | same budget for every method |
| CD | metric, N, EMA | LPIPS, N=18, mu=0.95 | same | squared L2, N=18 (EDM grid), EMA 0.95 | L2 is weaker than LPIPS on images, irrelevant in 2-D |
| sCM | t distribution | sCM: log-normal (-1.0, 1.4) | SANA: config values | log-normal (0.2, 1.6) in log tan t: with (-1.0, 1.4) one-step samples failed here | one-step time pi/2 gets trained |
| sCM | adaptive weight u(t) | learned | `logvar` head of the model | small separate MLP on t | without it one-step sCM failed completely on the toy |
| sCM | teacher conversion | flow matching -> TrigFlow, training-free | same | teacher trained in TrigFlow already | none |
| LADD | discriminator | heads on several teacher blocks, real latents | same, hinge, misaligned pairs option | one head on the last hidden layer, projection for labels, hinge, weight 0.5, log-normal (-0.6, 1.0) times | weaker critic |
| SiD | alpha, t | alpha 1.2, t on Karras ramp up to 800/1000, sigma_init 2.5 | same | same | none |
| SiD | fake-score lr, CFG | same lr as G; LSG / Zero-CFG / Anti-CFG for T2I | same | same lr; no CFG (unconditional toy) | guidance variants not tested |
| few-step SiD | steps | uniform mixture over K steps, one generator | released later | K = 4, our angles (1.37, 1.0, 0.6, 0.3) | schedule not tuned |
| SwiftBrush | student-score net | LoRA of the teacher, CFG 4.5 on the teacher | not found | full copy of the teacher, no CFG, w = sigma_t^2 | full copy adapts faster than a LoRA |
| StreamDiT | model | adaLN DiT with window attention, 4B | not found | 2-layer transformer over 8 frames, per-frame time embedding | tiny model: learns frames, not motion |
| StreamDiT | distillation | per-segment multistep distillation, 128 -> 8 NFE | not found | 8 passes -> 1 per chunk, x0 regression to the teacher's segment end | same idea |
| P56 | models | VAR/LlamaGen vs DiT, ImageNet, GPTQ/AWQ-style PTQ, W4A8 etc. | not found | 2-token AR grid model vs MLP diffusion, weight-only symmetric fake quantisation | same question at toy scale |
| TopKLD | loss | "balances implicit and explicit knowledge" | not found | forward KL with the top-k head's conditional part reversed (renormalised) | our reading: exact form unchecked |

## References
Song, Dhariwal, Chen, Sutskever, *Consistency Models*, ICML 2023 (arXiv 2303.01469). Lu & Song, *Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models*, ICLR 2025 (arXiv 2410.11081). Chen et al., *SANA-Sprint*, 2025 (arXiv 2503.09641). Sauer et al., *LADD*, 2024 (arXiv 2403.12015). Zhou et al., *Score identity Distillation*, ICML 2024 (arXiv 2404.04057); *Few-Step Diffusion via Score identity Distillation*, 2025 (arXiv 2505.12674). Nguyen & Tran, *SwiftBrush*, CVPR 2024 (arXiv 2312.05239). Wang et al., *ProlificDreamer*, NeurIPS 2023 (arXiv 2305.16213). Kodaira et al., *StreamDiT*, 2025 (arXiv 2507.03745). Ding et al., *Dissecting Bit-Level Scaling Laws in Quantizing Vision Generative Models*, 2025 (arXiv 2501.06218). Kynkäänniemi et al., *Improved Precision and Recall*, NeurIPS 2019.
""")

code(r"""
if mode() == "FAST":
    print(results.FAST_BANNER)
    print(results.committed_results([NOTEBOOK]))
""")

nb = nbf.v4.new_notebook()
nb.cells = cells
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
nbf.write(nb, f"notebooks/{NB}.ipynb")

sol = [nbf.v4.new_markdown_cell("# 07a · Few-step diffusion on a 2-D toy: solutions\n\nSolutions to the exercises of `../07a_diffusion_toy.ipynb`. Each check must print *pass*; the tests execute this notebook and fail if one does not."),
       nbf.v4.new_code_cell("import torch\n\nfrom cookbook.exercises import diffusion as exercises"),
       nbf.v4.new_markdown_cell("### Exercise 1: x0 from v\nAt t = pi/2, x0 = -F(z, pi/2) = E[x0 | x_T]: with no signal left the best estimate is the data mean (the ring's centre), which is why one DDIM step collapses onto it."),
       nbf.v4.new_code_cell("def my_x0(x_t, v, t):\n    tt = t.reshape(-1, *([1] * (x_t.dim() - 1)))\n    return torch.cos(tt) * x_t - torch.sin(tt) * v\n\n\nassert exercises.check_trigflow_x0(my_x0)"),
       nbf.v4.new_markdown_cell("### Exercise 2: SiD's loss\nWith D_psi = D_phi the loss and its gradient vanish: the generator's distribution already has the teacher's score. alpha weighs the term -alpha ||D_phi - D_psi||^2, which SiD found to stabilise training (alpha = 1.2); alpha = 0 is the plain score-identity estimate."),
       nbf.v4.new_code_cell("def my_sid(teacher_x0, fake_x0, x_g, alpha):\n    with torch.no_grad():\n        w = (x_g - teacher_x0).abs().flatten(1).mean(1).clamp_min(1e-5)\n    d = teacher_x0 - fake_x0\n    return ((d * ((teacher_x0 - x_g) - alpha * d)).flatten(1).sum(1) / w).mean()\n\n\nassert exercises.check_sid_loss(my_sid)"),
       nbf.v4.new_markdown_cell("### Exercise 3: sCM's tangent\nFor N(0, I) data E[x0 | x_t] = cos t x_t, so the teacher's F is 0 and the ODE keeps x fixed: the consistency function must return x itself, f = cos t x - sin t F = x, i.e. F = (cos t - 1)/sin t x. Near t = 0 the weight 1/tan t explodes (hence the clamp), and at t = pi/2 it vanishes: without the adaptive weight the one-step time is never trained."),
       nbf.v4.new_code_cell("def my_tangent(F_minus, F_minus_jvp, dxt_dt, x_t, t):\n    tt = t.reshape(-1, *([1] * (x_t.dim() - 1)))\n    c, s = torch.cos(tt), torch.sin(tt)\n    g = -c * c * (F_minus - dxt_dt) - (c * s * x_t + F_minus_jvp)\n    n = g.flatten(1).norm(dim=1).reshape(tt.shape)\n    return g / (n + 0.1)\n\n\nassert exercises.check_scm_tangent(my_tangent)")]
snb = nbf.v4.new_notebook()
snb.cells = sol
snb.metadata["kernelspec"] = nb.metadata["kernelspec"]
nbf.write(snb, f"notebooks/solutions/{NB}_solutions.ipynb")
