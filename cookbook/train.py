"""The one training loop every notebook uses: ``fit`` (epochs over tensors) and ``train_lm`` (steps).

Both drive the same core, :class:`Stepper` (optimizer, warm-up + cosine schedule, gradient
clipping, a finite-loss check, the progress bar), so there is one optimisation step in the package.
Data are in-memory tensors (all our data sets fit in RAM), which on a 2-core CPU is several times
faster than a DataLoader with workers. A loss is any ``loss_fn(model, *batch) -> scalar``, so the
same loop trains a student from scratch, with Hinton KD, or with any method of the cookbook.
``train_student`` is the seeded "build, fit, keep the best validation epoch" wrapper of the vision
notebooks; ``evaluate`` is ``metrics.accuracy`` of a model's predictions.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from cookbook.config import is_fast
from cookbook.metrics import accuracy
from cookbook.utils import device as default_device
from cookbook.utils import set_seed


def batches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield aligned mini-batches of ``tensors`` (all with the same first dimension)."""
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"all tensors need the same first dimension, got {[len(t) for t in tensors]}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield tuple(t[idx] for t in tensors)


@dataclass
class History:
    """Per-epoch record of a run: mean training loss, eval metrics, wall time."""

    train_loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    best_epoch: int | None = None

    def last(self, name: str) -> float:
        return self.metrics[name][-1]

    def final(self, name: str) -> float:
        """The metric at the kept checkpoint (best epoch if ``keep_best`` was used, else last)."""
        return self.metrics[name][self.best_epoch if self.best_epoch is not None else -1]



def make_optimizer(params: Sequence[nn.Parameter], optimizer: str, lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """"adamw" (decoupled weight decay), "adam" (L2 weight decay added to the gradient, as the
    GLNN / FF-G2M / VQGraph code uses it) or "sgd" (momentum 0.9, nesterov, L2 weight decay).

    The two Adam flavours differ a lot at the same number: AdamW shrinks weights by lr * wd per
    step, Adam's L2 term is rescaled by the adaptive denominator, so 5e-4 is far stronger there."""
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got {optimizer!r}")


def lr_factor(step: int, total: int, *, schedule: str = "cosine", warmup: int = 0) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up over ``warmup`` steps, then cosine
    decay to 0 at ``total`` ("cosine") or flat ("constant")."""
    ramp = min(1.0, (step + 1) / max(1, warmup)) if warmup > 0 else 1.0
    if schedule == "constant":
        return ramp
    return ramp * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


class Stepper:
    """One optimisation step, shared by ``fit`` and ``train_lm``: zero grads, backward, optional
    clipping, optimizer and schedule step, with a progress bar over ``total`` steps."""

    def __init__(self, params: Sequence[nn.Parameter], *, total: int, lr: float, optimizer: str = "adamw",
                 weight_decay: float = 0.0, schedule: str = "cosine", warmup: int = 0,
                 clip_norm: float | None = None, progress: bool | None = None, desc: str = "train"):
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        self.params, self.clip_norm, self.desc = list(params), clip_norm, desc
        self.opt = make_optimizer(self.params, optimizer, lr, weight_decay)
        self.sched = None if (schedule == "constant" and warmup == 0) else torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, total, schedule=schedule, warmup=warmup))
        self.bar = tqdm(total=total, desc=desc, leave=False,
                        disable=is_fast() if progress is None else not progress)

    def step(self, loss: Tensor, where: str) -> float:
        """Minimise ``loss`` by one step; ``where`` (e.g. "epoch 3") names the step in errors."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.desc}: loss became {loss.item()} at {where}: lower lr or check inputs")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.bar.update()
        return loss.item()

    def close(self) -> None:
        self.bar.close()


def fit(model: nn.Module, loss_fn: Callable[..., torch.Tensor], data: Sequence[torch.Tensor], *,
        epochs: int, lr: float, batch_size: int = 128, weight_decay: float = 0.0,
        optimizer: str = "adamw", schedule: str = "cosine", seed: int = 0,
        eval_fn: Callable[[nn.Module], dict[str, float]] | None = None, keep_best: str | None = None,
        params: Sequence[nn.Parameter] | None = None, progress: bool | None = None,
        desc: str = "train", device: torch.device | None = None) -> History:
    """Train ``model`` on ``data`` by minimising ``loss_fn(model, *batch)``.

    data: tensors sharing the first dimension (e.g. images, labels, cached teacher logits); batches
        are moved to ``device`` as they are drawn. Data order depends only on ``seed``.
    eval_fn: called after every epoch in eval mode; returns named metrics for the History.
    keep_best: a metric name from ``eval_fn``: restore the weights of the epoch where it was highest.
    optimizer: "adamw", "adam" (L2) or "sgd" (momentum 0.9, nesterov). schedule: "cosine" (per step) or "constant".
    progress: tqdm bar over steps; default on in FULL mode, off in FAST mode.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if keep_best is not None and eval_fn is None:
        raise ValueError("keep_best needs an eval_fn that returns that metric")
    dev = device or default_device()
    model.to(dev)
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(data[0]) / batch_size)
    stepper = Stepper(params, total=max(1, epochs * steps_per_epoch), lr=lr, optimizer=optimizer,
                      weight_decay=weight_decay, schedule=schedule, progress=progress, desc=desc)

    gen = torch.Generator().manual_seed(seed)
    hist, best, best_state = History(), -math.inf, None
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        running, count = 0.0, 0
        for batch in batches(*data, batch_size=batch_size, shuffle=True, generator=gen):
            batch = [t.to(dev, non_blocking=True) for t in batch]
            running += stepper.step(loss_fn(model, *batch), f"epoch {epoch}") * len(batch[0])
            count += len(batch[0])
        hist.train_loss.append(running / max(count, 1))
        if eval_fn is not None:
            model.eval()
            with torch.no_grad():
                for name, value in eval_fn(model).items():
                    hist.metrics.setdefault(name, []).append(float(value))
            if keep_best is not None and hist.metrics[keep_best][-1] > best:
                best, hist.best_epoch = hist.metrics[keep_best][-1], epoch
                best_state = copy.deepcopy(model.state_dict())
        stepper.bar.set_postfix(loss=f"{hist.train_loss[-1]:.4f}", **{k: f"{v[-1]:.4f}" for k, v in hist.metrics.items()})
    stepper.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 1024,
            device: torch.device | None = None) -> torch.Tensor:
    """Outputs of ``model`` on ``X`` in eval mode, batched, returned on CPU.

    Runs on ``device``, by default the device of the model's first parameter or buffer (CPU if none).
    """
    state = [*model.parameters(), *model.buffers()]
    dev = device or (state[0].device if state else torch.device("cpu"))
    was_training = model.training
    model.eval()
    out = torch.cat([model(xb.to(dev)).float().cpu() for (xb,) in batches(X, batch_size=batch_size)])
    model.train(was_training)
    return out


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(X, y)``, in [0, 1] (``metrics.accuracy`` of its predictions)."""
    if len(X) == 0:
        raise ValueError("evaluate got an empty data set")
    return accuracy(predict(model, X, batch_size), y.cpu())


def train_student(model: nn.Module | Callable[[], nn.Module], loss_fn: Callable[..., torch.Tensor],
                  data: Sequence[torch.Tensor], *, seed: int,
                  val: tuple[torch.Tensor, torch.Tensor] | None = None, **fit_kwargs) -> tuple[nn.Module, History]:
    """Seed everything, build the student (``model`` may be a factory), ``fit`` it; return (model, history).

    The init and the data order depend only on ``seed``. With ``val = (X, y)`` the validation
    accuracy is recorded every epoch ("val_acc") and the best epoch's weights are kept.
    ``fit_kwargs`` go to :func:`fit` (epochs, lr, batch_size, weight_decay, desc, ...).
    """
    set_seed(seed)
    model = model() if not isinstance(model, nn.Module) else model
    if val is not None:
        Xv, yv = val
        fit_kwargs = {"eval_fn": lambda m: {"val_acc": evaluate(m, Xv, yv)}, "keep_best": "val_acc", **fit_kwargs}
    hist = fit(model, loss_fn, data, seed=seed, **fit_kwargs)
    return model, hist


# ----------------------------------------------------------------------------- step-based (LM) loop


@dataclass
class LMRun:
    """What a ``train_lm`` run recorded per step: its loss, anything the loss logged, and wall time."""

    loss: list[float] = field(default_factory=list)
    logs: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def log(self, **values: float) -> None:
        for name, value in values.items():
            self.logs.setdefault(name, []).append(float(value))

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, len(self.loss))


def uniform_sampler(n: int, batch_size: int) -> Callable[[int, torch.Generator], Tensor]:
    """Rows of a fresh random permutation of the n sequences, one batch per step."""
    state = {"order": torch.empty(0, dtype=torch.long)}

    def sample(step: int, gen: torch.Generator) -> Tensor:
        if len(state["order"]) < batch_size:
            state["order"] = torch.cat([state["order"], torch.randperm(n, generator=gen)])
        rows, state["order"] = state["order"][:batch_size], state["order"][batch_size:]
        return rows
    return sample


def train_lm(student: nn.Module, loss_fn: Callable[[nn.Module, Tensor, int, LMRun], Tensor],
             sampler: Callable[[int, torch.Generator], Tensor], *, steps: int, lr: float = 3e-3,
             warmup: int = 10, weight_decay: float = 0.0, seed: int = 0,
             progress: bool | None = None, desc: str = "train") -> LMRun:
    """AdamW with linear warm-up and cosine decay for ``steps`` steps, gradients clipped to norm 1.

    Each step draws ``rows = sampler(step, generator)`` (sequence indices into whatever data the
    loss reads) and minimises ``loss_fn(student, rows, step, run)``; the loss may call
    ``run.log(name=value)`` to record per-step quantities (TAID's t, the share of kept tokens...).
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    params = [p for p in student.parameters() if p.requires_grad]
    stepper = Stepper(params, total=steps, lr=lr, weight_decay=weight_decay, warmup=warmup,
                      clip_norm=1.0, progress=progress, desc=desc)
    gen = torch.Generator().manual_seed(seed)
    run = LMRun()
    student.train()
    start = time.perf_counter()
    for step in range(steps):
        run.loss.append(stepper.step(loss_fn(student, sampler(step, gen), step, run), f"step {step}"))
    stepper.close()
    run.seconds = time.perf_counter() - start
    student.eval()
    return run
