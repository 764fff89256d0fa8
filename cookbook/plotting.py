"""Standard figures, one call each. Small PNGs (the committed notebooks stay light)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

if matplotlib.get_backend().lower() == "agg" or not matplotlib.get_backend():
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False, "figure.figsize": (6, 3.6)})


def curves(series: Mapping[str, Sequence[Sequence[float]] | Sequence[float]], *, xlabel: str = "epoch",
           ylabel: str = "", title: str = "", ax=None):
    """Learning curves: {label: values} or {label: [values per seed]} (mean line, min-max band)."""
    ax = ax or plt.subplots()[1]
    for label, values in series.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[None] if arr.ndim == 1 else arr                       # (seeds, steps)
        x = np.arange(1, arr.shape[1] + 1)
        line, = ax.plot(x, arr.mean(0), label=label)
        if arr.shape[0] > 1:
            ax.fill_between(x, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return ax


def bars(labels: Sequence[str], means: Sequence[float], stds: Sequence[float] | None = None, *,
         ylabel: str = "", title: str = "", reference: Mapping[str, float] | None = None, ax=None):
    """Bar chart of results with error bars; ``reference`` draws labelled horizontal lines (e.g. teacher)."""
    ax = ax or plt.subplots()[1]
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    for name, value in (reference or {}).items():
        ax.axhline(value, ls="--", color="gray", lw=1)
        ax.text(len(labels) - 0.5, value, f" {name}", va="bottom", ha="right", fontsize=8, color="gray")
    lo = min(np.asarray(means) - (np.asarray(stds) if stds is not None else 0))
    hi = max([*means, *(reference or {}).values()])
    ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    ax.set_xticks(x, labels, rotation=15, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    return ax


def paired_gains(gains: Mapping[str, Sequence[float]], *, paper: Mapping[str, float] | None = None,
                 claims: Mapping[str, int] | None = None, higher_is_better: bool = True,
                 xlabel: str = "gain over the baseline (points)", title: str = "", ax=None):
    """Paired per-seed gains, one row per comparison: a dot per seed, a bar at the mean, a zero line.

    ``gains``: {label: per-seed differences} (a ``results.Gain`` or a list of floats).
    ``paper``: {label: the paper's claimed gain}, drawn as a star on that row (its setting may
    differ: say so). ``claims``: {label: +1 or -1}, the direction the paper reports when it gives
    no number in our metric, written as "paper ->" / "<- paper" at that end of the row.
    A row is green when its mean moves the way that is better (``higher_is_better``, or the row's
    claimed direction), red otherwise. Easier to read than bars of raw scores: the sign on each
    seed is what a reader wants to see.
    """
    labels = list(gains)
    if not labels:
        raise ValueError("paired_gains needs at least one comparison")
    bad = {k: v for k, v in (claims or {}).items() if v not in (1, -1)}
    if bad:
        raise ValueError(f"claims must be +1 or -1, got {bad}")
    ax = ax or plt.subplots(figsize=(6.4, 0.45 * len(labels) + 1.2))[1]
    first_star = min((labels.index(k) for k in (paper or {}) if k in labels), default=None)
    for row, label in enumerate(labels):
        values = np.asarray(getattr(gains[label], "per_seed", gains[label]), dtype=float)
        better = (claims or {}).get(label, 1 if higher_is_better else -1)
        color = "tab:green" if values.mean() * better > 0 else "tab:red"
        ax.barh(row, values.mean(), height=0.5, color=color, alpha=0.35)
        ax.scatter(values, np.full(len(values), row), color=color, s=18, zorder=3)
        if paper and label in paper:
            ax.scatter([paper[label]], [row], marker="*", s=120, color="black", zorder=4,
                       label="paper's claim" if row == first_star else None)
    ax.axvline(0, color="gray", lw=1)
    lo, hi = ax.get_xlim()
    for row, label in enumerate(labels):
        if claims and label in claims:
            up = claims[label] > 0
            ax.annotate("paper \u2192" if up else "\u2190 paper", xy=(hi if up else lo, row), fontsize=7,
                        color="gray", va="center", ha="right" if up else "left")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    if first_star is not None:
        ax.legend(fontsize=8, loc="best")
    return ax


def sweeps(results: Mapping[str, Mapping[str, Mapping[str, float]]], *, chosen: Mapping[tuple[str, str], str] | None = None,
           ylabel: str = "validation accuracy", title: str = ""):
    """Small multiples of validation sweeps: one row per group (e.g. a data regime, shared y scale
    within the row), one panel per method, one point per configuration; the chosen one is circled.

    ``results``: {group: {method: {config label: value}}}; ``chosen``: {(group, method): config label}.
    Equal tuning is visible at a glance: every panel should hold the same number of points.
    """
    groups = list(results)
    if not groups or not any(results[g] for g in groups):
        raise ValueError("sweeps needs at least one group with one method")
    methods = list(dict.fromkeys(m for g in groups for m in results[g]))
    fig, axes = plt.subplots(len(groups), len(methods), figsize=(2.6 * len(methods), 2.3 * len(groups)),
                             sharey="row", squeeze=False)
    for r, group in enumerate(groups):
        for c, method in enumerate(methods):
            ax, points = axes[r, c], results[group].get(method, {})
            labels, values = list(points), list(points.values())
            ax.plot(range(len(values)), values, "o-", color="tab:blue", ms=4)
            pick = (chosen or {}).get((group, method))
            if pick in points:
                ax.plot(labels.index(pick), points[pick], "o", ms=11, mfc="none", mec="tab:red", mew=1.5)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
            ax.set_title(f"{method} ({group})" if len(groups) > 1 else method, fontsize=9)
            if c == 0:
                ax.set_ylabel(ylabel, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return axes


def heatmap(values, row_labels: Sequence, col_labels: Sequence, *, xlabel: str = "", ylabel: str = "",
            title: str = "", fmt: str = "{:.3f}", ax=None):
    """A grid of numbers (e.g. accuracy over temperature x alpha), annotated, best cell boxed."""
    values = np.asarray(values, dtype=float)
    ax = ax or plt.subplots()[1]
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.grid(False)
    best = np.unravel_index(np.nanargmax(values), values.shape)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                color="black" if v > np.nanmean(values) else "white", fontweight="bold" if (i, j) == best else None)
    ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.figure.colorbar(im, ax=ax)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return ax


def soft_targets(probs: Mapping[str, Sequence[float]], class_names: Sequence[str], *, image=None,
                 title: str = "", ax=None):
    """Grouped bars of class probabilities, one group per setting (e.g. {"T=1": p, "T=4": p}),
    with the input image beside them when given. Log scale: the small probabilities are the point."""
    if image is not None and ax is None:
        fig, (ax_img, ax) = plt.subplots(1, 2, figsize=(8, 3), gridspec_kw={"width_ratios": [1, 4]})
        ax_img.imshow(np.asarray(image).squeeze(), cmap="gray")
        ax_img.set_axis_off()
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    width = 0.8 / len(probs)
    x = np.arange(len(class_names))
    for k, (label, p) in enumerate(probs.items()):
        ax.bar(x + (k - (len(probs) - 1) / 2) * width, np.asarray(p, dtype=float), width, label=label)
    ax.set_yscale("log")
    ax.set_xticks(x, class_names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="probability", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_chunk_budget(rows: Sequence[Mapping], *, title: str = "", axes=None):
    """Peak / M_min and time / naive of ``ours`` against its chunk budget (the (c, V) workspace as
    a fraction of the floor), one line per (shape, N), from ``cookbook bench kd-loss --budgets``."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.6))[1]
    ok = [r for r in rows if r.get("status") == "ok" and str(r["method"]).startswith("ours")
          and r.get("budget") not in (None, "") and "-" not in str(r["method"])]
    for i, key_ in enumerate(sorted({(r["shape"], int(r["N"])) for r in ok})):
        pts = sorted((float(r["budget"]), float(r["peak_over_floor"]), r.get("time_over_naive"))
                     for r in ok if (r["shape"], int(r["N"])) == key_)
        b, peak, t = zip(*pts)
        axes[0].plot(b, peak, marker="o", color=f"C{i}", label=f"{key_[0]} N={key_[1]}")
        if all(x not in (None, "") for x in t):
            axes[1].plot(b, [float(x) for x in t], marker="o", color=f"C{i}")
    axes[0].plot([0.0, max((float(r["budget"]) for r in ok), default=1.0)],
                 [1.0, 1.0 + max((float(r["budget"]) for r in ok), default=1.0)],
                 color="grey", ls=":", lw=1, label="1 + budget")
    axes[0].axhline(1.0, color="grey", ls="-", lw=0.5)
    axes[1].axhline(1.0, color="grey", ls=":", lw=1)
    axes[0].set(xlabel="chunk budget (workspace / M_min)", ylabel="peak / M_min")
    axes[1].set(xlabel="chunk budget (workspace / M_min)", ylabel="time / naive")
    axes[0].legend(fontsize=7)
    axes[0].figure.suptitle(title or "ours: memory and time against the chunk budget")
    return axes


def plot_benchmark(rows: Sequence[Mapping], *, title: str = "", axes=None):
    """Peak memory / M_min and time / naive against tokens N, one line per (shape, method), from
    the rows of ``cookbook bench kd-loss`` (its CSV via ``cookbook.bench.kd_loss.load_csv``).
    Dotted lines: the floor (1) and the issue's CPU targets (1.5 x M_min, 1.3 x naive)."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.6))[1]
    ok = [r for r in rows if r.get("status") == "ok"]
    shapes = sorted({r["shape"] for r in ok})
    methods = list(dict.fromkeys(r["method"] for r in ok))
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, key, ylabel, lines in ((axes[0], "peak_over_floor", "peak / M_min", (1.0, 1.5)),
                                   (axes[1], "time_over_naive", "time / naive", (1.0, 1.3))):
        for s_i, shape in enumerate(shapes):
            for m in methods:
                pts = sorted((int(r["N"]), float(r[key])) for r in ok
                             if r["shape"] == shape and r["method"] == m and r.get(key) not in (None, ""))
                if pts:
                    ax.plot(*zip(*pts), marker="os^"[s_i % 3], ls="-" if s_i == 0 else "--",
                            color=colors[m], label=f"{m} ({shape})")
        for y in lines:
            ax.axhline(y, color="grey", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="tokens N", ylabel=ylabel)
        ns = sorted({int(r["N"]) for r in ok})
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xticks([], minor=True)
    axes[0].legend(fontsize=7)
    axes[0].figure.suptitle(title or "fused head + KD loss, one forward + backward")
    return axes

