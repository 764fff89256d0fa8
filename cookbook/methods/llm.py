"""LLM distillation runs (notebooks 05a, 05b): one loss interface, seeded runs from the pre-trained
student, and one scoring of every student.

A method is a ``loss_fn(student, rows, step, run)`` for ``cookbook.train.train_lm`` (the one step
loop): ``rows`` index the windows of a top-k teacher cache (``cookbook.teachers.topk_cache``), so
every method reads the same windows in the same order for a given seed. :func:`run_seeds` starts
each seed from the same registered checkpoint (``stdlib-llama-3m``), so seeds differ only in the
order of the windows (and in any sampling a method does); :func:`score` measures every student on
held-out windows (perplexity, top-1 agreement with the teacher) and on held-out code lines (exact
match and ROUGE-L of greedy completions); ``cookbook.results.paired_table`` pairs each method with
its baseline seed by seed (``paired_gain``), with the column spec ``METRICS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from cookbook.kernels import fused_linear_ce, fused_linear_distill
from cookbook.losses.llm import shift_labels
from cookbook.metrics import evaluate_lm, exact_match, rouge_l
from cookbook.models.lm import complete_lines
from cookbook.train import LMRun, train_lm, uniform_sampler

LossFn = Callable[[nn.Module, Tensor, int, LMRun], Tensor]


def hidden_states(student: nn.Module, ids: Tensor) -> Tensor:
    """The student's last hidden states, flattened: (B*L, H). Its head is ``student.lm_head.weight``."""
    return student.model(ids).last_hidden_state.flatten(0, 1)


def rows_of(rows: Tensor) -> np.ndarray:
    return rows.numpy()


def ce_loss(cache) -> LossFn:
    """Continued pre-training: next-token cross-entropy on the cached windows, no teacher."""
    def loss_fn(student, rows, step, run):
        ids = cache.ids(rows_of(rows))
        return fused_linear_ce(hidden_states(student, ids), student.lm_head.weight, shift_labels(ids))
    return loss_fn


def divergence_loss(cache, divergence: str = "forward_kl", **kw) -> LossFn:
    """Pure distillation from the cached top-k teacher at every position, through the fused head
    (``cookbook.kernels.fused_linear_distill``: never builds the (tokens x 49,152) logits)."""
    def loss_fn(student, rows, step, run):
        ids = cache.ids(rows_of(rows))
        return fused_linear_distill(hidden_states(student, ids), student.lm_head.weight,
                                    cache.teacher(rows_of(rows)), divergence=divergence, **kw)
    return loss_fn


def logits_loss(cache, loss: Callable) -> LossFn:
    """For losses that need the full logits: ``loss(logits (B*L, V), teacher TopKTeacher, ids, run)``."""
    def loss_fn(student, rows, step, run):
        ids = cache.ids(rows_of(rows))
        return loss(student(ids).logits.flatten(0, 1), cache.teacher(rows_of(rows)), ids, run)
    return loss_fn


def with_validation(loss_fn: LossFn, val_cache, val_rows, every: int, steps: int) -> LossFn:
    """``loss_fn`` that also scores the student on ``val_rows`` of ``val_cache`` before steps
    0, every, 2*every, ... and after the last (logged as val_step / val_ppl / val_agreement; the
    time spent is logged as eval_seconds and left out of seconds-per-step by :func:`step_seconds`)."""
    def evaluate(student, step, run):
        start = time.perf_counter()
        metrics = evaluate_lm(student, val_cache, val_rows)
        student.train()
        run.log(val_step=step, val_ppl=metrics["ppl"], val_agreement=metrics["agreement"],
                eval_seconds=time.perf_counter() - start)

    def wrapped(student, rows, step, run):
        if step % every == 0:
            evaluate(student, step, run)
        loss = loss_fn(student, rows, step, run)
        if step == steps - 1:
            run.final_eval = lambda: evaluate(student, steps, run)
        return loss
    return wrapped


def step_seconds(run: LMRun) -> float:
    """Training seconds per step, without the validation scoring of :func:`with_validation`."""
    return (run.seconds - sum(run.logs.get("eval_seconds", []))) / max(1, len(run.loss))


@dataclass
class Runs:
    """The students and run records of one method, by seed."""

    name: str
    students: dict[int, nn.Module] = field(default_factory=dict)
    runs: dict[int, LMRun] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.students)

    @property
    def seconds_per_step(self) -> float:
        return float(np.mean([step_seconds(r) for r in self.runs.values()]))

    def curve(self, name: str = "val_ppl") -> tuple[list[int], np.ndarray]:
        """(steps, values (seeds, points)) of a logged validation quantity."""
        steps = self.runs[self.seeds[0]].logs["val_step"]
        return steps, np.array([self.runs[s].logs[name] for s in self.seeds])


def run_seeds(name: str, make_loss: Callable[[int], LossFn], student: Callable[[], nn.Module], *,
              seeds: Sequence[int], steps: int, lr: float, batch: int, n_rows: int,
              sampler: Callable[[int, nn.Module], Callable] | None = None, warmup: int = 10,
              val=None, val_rows=None, eval_every: int | None = None, progress: bool | None = None) -> Runs:
    """Train one method from a fresh ``student()`` per seed; return its students and records.

    ``make_loss(seed)`` builds the seed's loss (a method may hold per-seed state); ``sampler(seed,
    model)`` the seed's row sampler (default: a fresh permutation of the ``n_rows`` windows per
    epoch, ``batch`` per step). With ``val`` (a cache) the student is scored on ``val_rows``
    every ``eval_every`` steps (:func:`with_validation`).
    """
    out = Runs(name)
    for seed in seeds:
        model = student()
        loss_fn = make_loss(seed)
        if val is not None:
            loss_fn = with_validation(loss_fn, val, val_rows, eval_every or steps, steps)
        sample = sampler(seed, model) if sampler else uniform_sampler(n_rows, batch)
        run = train_lm(model, loss_fn, sample, steps=steps, lr=lr, warmup=warmup, seed=seed,
                       progress=progress, desc=f"{name} s{seed}")
        if hasattr(run, "final_eval"):
            run.final_eval()
            model.eval()
        out.students[seed], out.runs[seed] = model, run
    return out


@torch.no_grad()
def score(model: nn.Module, eval_cache, lines, tokenizer, rows=None) -> dict[str, float]:
    """Held-out perplexity and top-1 agreement (``evaluate_lm``) and exact match / ROUGE-L of the
    greedy completions of held-out code lines (``lines``: ``data.stdlib.line_completion_set``)."""
    metrics = evaluate_lm(model, eval_cache, rows)
    completions = complete_lines(model, lines.prompts, tokenizer)
    metrics.update(exact_match=exact_match(completions, lines.references),
                   rouge_l=rouge_l(completions, lines.references))
    return metrics


# the metrics of :func:`score`: name -> (column label, scale, format), for ``results.paired_table``
METRICS = {"ppl": ("perplexity", 1.0, "{:.2f}"), "agreement": ("top-1 agreement (%)", 100.0, "{:.2f}"),
           "rouge_l": ("ROUGE-L (%)", 100.0, "{:.1f}"), "exact_match": ("exact match (%)", 100.0, "{:.1f}")}


# ----------------------------------------------------------------------------- on-policy data


@torch.no_grad()
def on_policy_batch(student: nn.Module, teacher: nn.Module, ids: Tensor, prompt_len: int, k: int, *,
                    generator: torch.Generator | None = None, temperature: float = 1.0):
    """The student writes the rest of each window after its first ``prompt_len`` tokens (sampled at
    ``temperature``); the live teacher reads the result. Returns (ids (B, L), the teacher's top-k
    on them (B*L rows), mask (B*L,) of the positions that predict a generated token)."""
    from cookbook.losses.llm import TopKTeacher
    from cookbook.models.lm import continue_ids

    batch, length = ids.shape
    ids = continue_ids(student, ids[:, :prompt_len], length - prompt_len, greedy=False,
                       temperature=temperature, generator=generator)
    student.train()
    teacher_k = TopKTeacher.from_logits(teacher(ids).logits.flatten(0, 1), k)
    mask = (torch.arange(length) >= prompt_len - 1).repeat(batch)
    mask[length - 1::length] = False                                  # the last position has no next token
    return ids, teacher_k, mask


class AdaptiveOffPolicy:
    r"""DistiLLM's adaptive off-policy scheduler (Ko et al., ICML 2024, arXiv 2402.03898, Alg. 1).

    The share of steps trained on student-generated outputs starts at ``threshold`` = 0 and rises
    by 0.1 each time the validation loss has risen by at least ``loss_eps`` above the last
    reference (official code: ``finetune.py``, init 0.0, loss_eps 0.1); the reference moves only
    then. At step s with probability threshold * (1 - s / total) ("decreasing" replay ratio) the
    student writes fresh outputs (stored in a replay buffer of ``capacity``), otherwise with
    probability threshold a stored one is reused, else the step uses the data. ``choose`` returns
    "fresh", "replay" or "data"; call ``update(val_loss)`` after every validation.
    """

    def __init__(self, total_steps: int, *, loss_eps: float = 0.1, capacity: int = 1000, seed: int = 0):
        if total_steps < 1 or loss_eps < 0 or capacity < 1:
            raise ValueError("need total_steps >= 1, loss_eps >= 0 and capacity >= 1")
        self.total, self.loss_eps, self.capacity = total_steps, loss_eps, capacity
        self.threshold, self.reference, self.buffer = 0.0, None, []
        self.rng = np.random.default_rng(seed)

    def update(self, val_loss: float) -> float:
        if self.reference is None:
            self.reference = val_loss
        elif val_loss >= self.reference + self.loss_eps:
            self.threshold, self.reference = min(1.0, self.threshold + 0.1), val_loss
        return self.threshold

    def choose(self, step: int) -> str:
        r = self.rng.uniform()
        fresh = self.threshold * (1 - step / self.total)
        if r < fresh or (r < self.threshold and len(self.buffer) < self.capacity):
            return "fresh"
        return "replay" if r < self.threshold and self.buffer else "data"

    def store(self, item) -> None:
        self.buffer = (self.buffer + [item])[-self.capacity:]

    def replay(self):
        return self.buffer[int(self.rng.integers(len(self.buffer)))]
