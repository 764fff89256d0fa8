"""Input validation for the public losses and kernels: one policy, one place.

Policy
------
1. **Always checked** (free: reads Python values and tensor metadata, never tensor data):
   argument types, hyper-parameters, choices, shapes and dtypes.

   - A tensor argument must be a ``torch.Tensor``. numpy arrays, lists and numbers raise
     ``TypeError`` naming the argument; nothing is converted silently (dtype and device stay
     yours): convert with ``torch.as_tensor(x)`` first.
   - Every hyper-parameter (T, alpha, beta, lam, tau, gamma, adv_weight, ...) must be a finite
     real number in its documented range: NaN, +-inf or out of range raise ``ValueError``.
   - A named choice (divergence, reduction, backend) outside the valid ones raises ``ValueError``
     listing them. Labels and index tensors must be int64 of the documented shape.
2. **Value checks, on by default** (they read tensor data: one host sync each on a GPU):
   labels in [0, C) or equal to the documented ``ignore_index`` (-100 where supported); index
   tensors (``edge_index``, ``keep``, top-k ids) in range and, where documented, unique per row;
   no NaN or +inf in float inputs (-inf is allowed in the log-space inputs of the LLM losses and
   kernels, where it means probability 0; selection scores may hold +-inf, they only rank).
   Class weights must be >= 0 and not all 0.
3. Turn the value checks off in hot loops with the environment variable
   ``COOKBOOK_CHECK_VALUES=0`` (read at import) or, for a block, ``with value_checks(False):``.
   With them off validation costs no host sync; bad values then fail inside torch (or silently).

Every failure names the argument and is a ``ValueError`` (``TypeError`` for a wrong type).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_VALUES = {"on": os.environ.get("COOKBOOK_CHECK_VALUES", "1").strip().lower() not in ("0", "false", "no", "off")}


def values_checked() -> bool:
    """True when the value checks (labels and index ranges, NaN / inf) run."""
    return _VALUES["on"]


@contextmanager
def value_checks(enabled: bool = True) -> Iterator[None]:
    """Turn the value checks on or off inside a ``with`` block (process-wide, restored on exit)."""
    old, _VALUES["on"] = _VALUES["on"], bool(enabled)
    try:
        yield
    finally:
        _VALUES["on"] = old


# ----------------------------------------------------------------------------- always: types, params


def check_tensor(name: str, x: object, *, ndim: int | None = None, optional: bool = False) -> None:
    """``x`` must be a torch.Tensor (with ``ndim`` dims when given); None passes when ``optional``."""
    if x is None and optional:
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}: convert it with "
                        f"torch.as_tensor({name}) (nothing is converted silently)")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")


def check_finite_param(name: str, value: object, low: float | None = None, high: float | None = None, *,
                       low_open: bool = False, high_open: bool = False) -> float:
    """A hyper-parameter: a finite real number in [low, high] (an end is excluded when ``*_open``).

    Returns it as a float. A 0-d tensor is read with float() (one sync); anything else raises TypeError.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    lo_bad = low is not None and (v <= low if low_open else v < low)
    hi_bad = high is not None and (v >= high if high_open else v > high)
    if lo_bad or hi_bad:
        if low is not None and high is not None:
            rng = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            rng = f"{'>' if low_open else '>='} {low:g}"
        else:
            rng = f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return v


def check_int(name: str, value: object, low: int = 0) -> int:
    """An integer count (not a bool) >= low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def check_choice(name: str, value: object, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else a ValueError listing them (losses, kernels, loaders)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(allowed)} (the valid values)")
    return value


def check_temperature(T: float, name: str = "temperature T") -> None:
    check_finite_param(name, T, 0.0, low_open=True)


def check_unit_interval(value: float, name: str) -> None:
    check_finite_param(name, value, 0.0, 1.0)


def check_reduction(reduction: str, allowed: tuple[str, ...] = ("mean", "none")) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")


# ----------------------------------------------------------------------------- value checks


def check_values(name: str, x: torch.Tensor, *, allow_neg_inf: bool = False, allow_inf: bool = False) -> None:
    """No NaN or +inf in a float tensor (nor -inf unless ``allow_neg_inf``; ``allow_inf``: only
    NaN is an error, for ranking scores). A value check."""
    if not _VALUES["on"] or not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
        return
    if allow_inf:
        if bool(torch.isnan(x).any()):
            raise ValueError(f"{name} contains NaN")
    elif allow_neg_inf:
        if bool((torch.isnan(x) | (x == math.inf)).any()):
            raise ValueError(f"{name} contains NaN or +inf")
    elif not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")


def check_pair(student: torch.Tensor, teacher: torch.Tensor, name: str = "logits") -> None:
    """Student and teacher outputs must be tensors of the same shape, non-empty and finite."""
    check_tensor(f"student_{name}", student)
    check_tensor(f"teacher_{name}", teacher)
    if student.shape != teacher.shape:
        raise ValueError(f"student_{name} {tuple(student.shape)} and teacher_{name} {tuple(teacher.shape)} "
                         "must have the same shape (same batch and number of classes)")
    if student.numel() == 0:
        raise ValueError(f"empty batch: student_{name} has shape {tuple(student.shape)}")
    check_values(f"student_{name}", student)
    check_values(f"teacher_{name}", teacher)


def check_labels(labels: object, num_classes: int | None, ignore_index: int | None = None, *,
                 shape: tuple[int, ...] | None = None, name: str = "labels",
                 where: torch.Tensor | None = None, any_int: bool = False, size_name: str = "") -> None:
    """Class labels: an int64 tensor (any integer dtype when ``any_int``; of ``shape`` when given)
    with ids in [0, num_classes) or equal to ``ignore_index``. ``where`` (bool, labels' shape)
    limits the range check to those entries; ``num_classes=None`` checks type, shape and dtype only.
    ``size_name`` names the class count in the message ("V" -> "[0, V=...)")."""
    check_tensor(name, labels)
    if shape is not None and tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(labels.shape)}")
    integer = not labels.is_floating_point() and not labels.is_complex() and labels.dtype != torch.bool
    if not (integer if any_int else labels.dtype == torch.long):
        hint = " (float labels: pass class ids, not probabilities or one-hot rows)" if labels.is_floating_point() else ""
        raise ValueError(f"{name} must be int64 (torch.long) class ids, got {labels.dtype}{hint}: use .long()")
    if num_classes is None or not _VALUES["on"] or labels.numel() == 0:
        return
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if where is not None:
        bad &= where
    if bool(bad.any()):
        first = int(labels[bad].flatten()[0])
        extra = f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
        size = f"{size_name}={num_classes}" if size_name else f"{num_classes}"
        raise ValueError(f"{name} must lie in [0, {size}){extra}, got {first}")


def check_indices(name: str, idx: object, size: int, *, shape: tuple[int, ...] | None = None,
                  unique_rows: bool = False, what: str = "entries") -> None:
    """An int64 index tensor (of ``shape`` when given) with ids in [0, size), distinct within each
    row when ``unique_rows``. ``what`` says what the ids index (for the message)."""
    check_tensor(name, idx)
    if shape is not None and tuple(idx.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(idx.shape)}")
    if idx.dtype != torch.long:
        raise ValueError(f"{name} must be int64 (torch.long), got {idx.dtype}: use .long()")
    if not _VALUES["on"] or idx.numel() == 0:
        return
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= size:
        raise ValueError(f"{name} indexes {what} [{lo}, {hi}] but there are {size}")
    if unique_rows and idx.shape[-1] > 1 and bool((idx.sort(-1).values.diff(dim=-1) == 0).any()):
        raise ValueError(f"{name} must hold distinct ids within each row (a repeated id)")


def check_keep(keep: object, batch: int, num_patches: int) -> None:
    """keep: int64 (batch, K) visible patch ids in [0, num_patches), distinct within each image (MAE masks)."""
    check_tensor("keep", keep, ndim=2)
    check_indices("keep", keep, num_patches, shape=(batch, keep.shape[1]), unique_rows=True, what="patches")


def check_edge_index(edge_index: torch.Tensor, num_nodes: int, rows: str) -> None:
    """edge_index must be int64 (2, E) with ids in 0..num_nodes-1; ``rows`` says what they index."""
    check_tensor("edge_index", edge_index)
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise ValueError(f"edge_index must be int64 (torch.long), got {edge_index.dtype}")
    if _VALUES["on"] and edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index refers to nodes [{int(edge_index.min())}, {int(edge_index.max())}] "
                         f"but {rows}")


def check_probabilities(name: str, probs: torch.Tensor, *, hint: str = "") -> None:
    """Rows of probabilities: >= 0, each summing to 1 (atol 1e-4). A value check."""
    if _VALUES["on"] and ((probs < 0).any() or not torch.allclose(
            probs.sum(-1), torch.ones(probs.shape[:-1]).to(probs), atol=1e-4)):
        raise ValueError(f"{name} must be probabilities (non-negative rows summing to 1)"
                         + (f": {hint}" if hint else ""))


def check_class_weights(class_weights: object, num_classes: int) -> None:
    """Optional per-class weights (C,): float, finite, >= 0 and not all 0 (values: a value check)."""
    if class_weights is None:
        return
    check_tensor("class_weights", class_weights)
    if class_weights.shape != (num_classes,):
        raise ValueError(f"class_weights must have shape ({num_classes},), got {tuple(class_weights.shape)}")
    if not class_weights.is_floating_point():
        raise ValueError(f"class_weights must be a float tensor, got {class_weights.dtype}")
    check_values("class_weights", class_weights)
    if _VALUES["on"] and (bool((class_weights < 0).any()) or not bool((class_weights > 0).any())):
        raise ValueError("class_weights must be >= 0 and not all 0 (the loss divides by their sum)")
