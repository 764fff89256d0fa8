"""Results every notebook records: ``record(...)`` -> results/<notebook>.json -> results/SUMMARY.md.

A row is one (method, metric) measured in one mode (FAST or FULL), with the device, date and
commit it was measured on and the paper's claim beside it. Nothing in a table is typed by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cookbook.config import ROOT, mode, results_dir
from cookbook.utils import device_name, git_commit


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values")
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


@dataclass(frozen=True)
class Gain:
    """A paired difference method - baseline over the same seeds, in ``scale`` units (points)."""

    per_seed: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.per_seed) / len(self.per_seed)

    @property
    def wins(self) -> int:
        """Seeds on which the method beat the baseline."""
        return sum(d > 0 for d in self.per_seed)

    def __str__(self) -> str:
        seeds = ", ".join(f"{d:+.1f}" for d in self.per_seed)
        return f"{self.mean:+.2f} pts (per seed {seeds})"


def paired_gain(method: Sequence[float], baseline: Sequence[float], scale: float = 100.0) -> Gain:
    """Per-seed ``scale * (method - baseline)``: seed i of one run against seed i of the other.

    Pairing removes the seed-to-seed spread both runs share (same init, same data order), so the
    sign on each seed says more than the difference of two means.
    """
    if len(method) != len(baseline) or not method:
        raise ValueError(f"paired_gain needs the same non-zero number of seeds, got {len(method)} and {len(baseline)}")
    return Gain(tuple(scale * (float(a) - float(b)) for a, b in zip(method, baseline)))


def paired_table(scores: dict[str, dict[int, dict[str, float]]], baselines: dict[str, str],
                 metrics: dict[str, tuple[str, float, str]], *, gain_metrics: Sequence[str] = (),
                 seconds: dict[str, float] | None = None) -> str:
    """Markdown: one row per method with mean +- std over seeds of every metric, then each of
    ``gain_metrics`` minus its baseline's seed by seed (:func:`paired_gain`; "mean (per seed) vs
    baseline"), then the number of seeds and, if given, seconds per step.

    scores: method -> seed -> metric -> value; metrics: name -> (column label, scale, format);
    a scale of 1 keeps the metric's units (differences with 2 decimals), 100 gives points.
    """
    head = [label for label, _, _ in metrics.values()]
    head += [f"Δ {metrics[m][0].split(' (')[0]} vs baseline (per seed)" for m in gain_metrics] + ["seeds", "s / step"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for method, by_seed in scores.items():
        seeds = sorted(by_seed)
        cells = []
        for metric, (_, scale, form) in metrics.items():
            m, s = mean_std([scale * by_seed[k][metric] for k in seeds])
            cells.append(f"{form.format(m)} ± {form.format(s)}")
        base = baselines.get(method)
        for metric in gain_metrics:
            if base is None:
                cells.append("")
                continue
            scale = metrics[metric][1]
            g = paired_gain([by_seed[k][metric] for k in seeds], [scores[base][k][metric] for k in seeds], scale=scale)
            digits = 2 if scale == 1.0 else 1
            cells.append(f"{g.mean:+.2f} ({', '.join(f'{d:+.{digits}f}' for d in g.per_seed)}) vs {base}")
        cells += [str(len(seeds)), "" if not seconds or method not in seconds else f"{seconds[method]:.2f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record(notebook: str, method: str, metric: str, value: float | Sequence[float], *,
           paper: str | None = None, note: str | None = None, **extra) -> dict:
    """Store one result row in results/<notebook>.json (replacing the same method/metric/mode).

    value: one number, or one number per seed (mean, std and the seed count are then stored).
    paper: the paper's claim in words, e.g. "+1.3 pts on CIFAR-100 (ResNet32x4 -> 8x4)".
    """
    values = [float(v) for v in value] if isinstance(value, Iterable) else [float(value)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{notebook}/{method}/{metric}: non-finite value {values}")
    m, s = mean_std(values)
    row = {"notebook": notebook, "method": method, "metric": metric, "value": m, "std": s,
           "seeds": len(values), "values": values, "paper": paper, "note": note, "mode": mode(),
           "device": device_name(), "commit": git_commit(),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
    path = results_dir() / f"{notebook}.json"
    rows = load(notebook)
    rows = [r for r in rows if (r["method"], r["metric"], r["mode"]) != (method, metric, row["mode"])]
    path.write_text(json.dumps(rows + [row], indent=1) + "\n")
    return row


def clear(notebook: str, mode_: str | None = None) -> None:
    """Drop a notebook's stored rows of one mode (this run's by default): a fresh run starts clean,
    so a row whose method was renamed or removed cannot linger in its table."""
    path = results_dir() / f"{notebook}.json"
    keep = [r for r in load(notebook) if r["mode"] != (mode_ or mode())]
    if path.exists():
        path.write_text(json.dumps(keep, indent=1) + "\n")


def load(notebook: str | None = None) -> list[dict]:
    """Rows of one notebook, or of every results/*.json when ``notebook`` is None."""
    paths = [results_dir() / f"{notebook}.json"] if notebook else sorted(results_dir().glob("*.json"))
    rows = []
    for p in paths:
        if p.exists():
            rows += json.loads(p.read_text())
    return rows


def fmt(row: dict, digits: int = 4) -> str:
    """``0.8474 +- 0.0027 (3 seeds)`` or ``0.8474``."""
    if row["seeds"] > 1:
        return f"{row['value']:.{digits}f} +- {row['std']:.{digits}f} ({row['seeds']} seeds)"
    return f"{row['value']:.{digits}f}"


def table(rows: list[dict], notebook_column: bool = False) -> str:
    """A markdown table: [notebook] | method | metric | ours | paper's claim | mode."""
    head = (["notebook"] if notebook_column else []) + ["method", "metric", "ours", "paper's claim", "mode"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ([r["notebook"]] if notebook_column else []) + [r["method"], r["metric"], fmt(r),
                                                                r.get("paper") or "", r["mode"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def show(notebook: str, mode_: str | None = None) -> str:
    """Display (in Jupyter) and return the markdown table of a notebook's rows of this mode."""
    rows = [r for r in load(notebook) if r["mode"] == (mode_ or mode())]
    text = table(rows)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
        if get_ipython() is not None:
            display(Markdown(text))
            return text
    except ImportError:
        pass
    print(text)
    return text


def write_summary() -> Path:
    """results/SUMMARY.md: every notebook's rows, FULL first, with where they were measured."""
    rows = load()
    rows.sort(key=lambda r: (r["mode"] != "FULL", r["notebook"]))
    stamp = {(r["device"], r["commit"]) for r in rows}
    text = "# Results summary\n\n" + table(rows, notebook_column=True) + "\n\n"
    text += "Measured on: " + "; ".join(f"{d} at commit {c}" for d, c in sorted(stamp)) + "\n"
    path = results_dir() / "SUMMARY.md"
    path.write_text(text)
    return path


FAST_BANNER = ("FAST smoke run: tiny subsets and a few steps, to check that every method runs end to end.\n"
               "Its numbers are NOT results; the measured (FULL) results follow the table.")


def readme_blocks() -> list[tuple[str, str]]:
    """(notebook, markdown) of every ``<!-- results:NB -->`` block in README.md."""
    import re

    return re.findall(r"<!-- results:(\S+) -->\n(.*?)<!-- /results:\1 -->", (ROOT / "README.md").read_text(), re.S)


def committed_results(notebooks: Iterable[str] | None = None) -> str:
    """The FULL results blocks of README.md for ``notebooks`` (all by default).

    They are copies of the committed notebooks' FULL outputs (``tests/test_readme.py`` keeps them
    equal), so a FAST run can show the real numbers beside its smoke-test ones.
    """
    wanted = None if notebooks is None else set(notebooks)
    return "\n".join(f"## {name} (FULL, committed)\n\n{body.strip()}\n" for name, body in readme_blocks()
                     if wanted is None or name in wanted)
