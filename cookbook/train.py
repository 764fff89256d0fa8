"""A small training loop shared by every notebook: ``fit`` and ``evaluate``.

Data are in-memory tensors (all our data sets fit in RAM), which on a 2-core CPU is several times
faster than a DataLoader with workers. A loss is any ``loss_fn(model, *batch) -> scalar``, so the
same loop trains a student from scratch, with Hinton KD, or with any method of the cookbook.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from cookbook.config import is_fast
from cookbook.utils import device as default_device


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
    optimizer: "adamw" or "sgd" (momentum 0.9, nesterov). schedule: "cosine" (per step) or "constant".
    progress: tqdm bar over steps; default on in FULL mode, off in FAST mode.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if keep_best is not None and eval_fn is None:
        raise ValueError("keep_best needs an eval_fn that returns that metric")
    dev = device or default_device()
    model.to(dev)
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    steps_per_epoch = math.ceil(len(data[0]) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    elif schedule == "constant":
        sched = None
    else:
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")

    gen = torch.Generator().manual_seed(seed)
    hist, best, best_state = History(), -math.inf, None
    bar = tqdm(total=total, desc=desc, disable=is_fast() if progress is None else not progress, leave=False)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        running, count = 0.0, 0
        for batch in batches(*data, batch_size=batch_size, shuffle=True, generator=gen):
            batch = [t.to(dev, non_blocking=True) for t in batch]
            loss = loss_fn(model, *batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}: lower lr or check inputs")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            running += loss.item() * len(batch[0])
            count += len(batch[0])
            bar.update()
        hist.train_loss.append(running / max(count, 1))
        if eval_fn is not None:
            model.eval()
            with torch.no_grad():
                for name, value in eval_fn(model).items():
                    hist.metrics.setdefault(name, []).append(float(value))
            if keep_best is not None and hist.metrics[keep_best][-1] > best:
                best, hist.best_epoch = hist.metrics[keep_best][-1], epoch
                best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{hist.train_loss[-1]:.4f}", **{k: f"{v[-1]:.4f}" for k, v in hist.metrics.items()})
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 1024,
            device: torch.device | None = None) -> torch.Tensor:
    """Outputs of ``model`` on ``X`` in eval mode, batched, returned on CPU."""
    dev = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.cat([model(xb.to(dev)).float().cpu() for (xb,) in batches(X, batch_size=batch_size)])
    model.train(was_training)
    return out


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(X, y)``, in [0, 1]."""
    if len(X) == 0:
        raise ValueError("evaluate got an empty data set")
    return (predict(model, X, batch_size).argmax(-1) == y.cpu()).float().mean().item()
