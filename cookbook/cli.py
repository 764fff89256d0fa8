"""``cookbook`` command line: run notebooks headless, print the results summary, run benchmarks.

    cookbook run [--fast] [NOTEBOOK ...]   execute notebooks (all by default), write results/*.json
                                           and results/SUMMARY.md, print the summary
    cookbook summary                       print results/SUMMARY.md from the stored results
    cookbook bench NAME [ARGS ...]         a benchmark (see `cookbook bench --help`)
    cookbook list                          the notebooks
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from cookbook.config import NOTEBOOKS, results_dir

# benchmark name -> module with main(argv); each writes a CSV with device, date and commit.
BENCHES = {
    "kd-loss": "cookbook.bench.kd_loss",
    "graph": "cookbook.bench.graph",
}


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def _resolve(name: str) -> Path:
    p = Path(name)
    if p.exists():
        return p.resolve()
    matches = [nb for nb in notebooks() if nb.stem == name or nb.stem.startswith(name)]
    if len(matches) != 1:
        raise SystemExit(f"cookbook run: {name!r} matches {[m.name for m in matches] or 'no notebook'}; "
                         f"choose from {[nb.stem for nb in notebooks()]}")
    return matches[0]


def run_notebook(path: Path, fast: bool, timeout: int = 1800) -> tuple[bool, str, float]:
    """Execute one notebook cell by cell with a progress bar. Returns (ok, message, seconds).

    FULL runs write the executed notebook back in place (commit it: readers see real outputs);
    FAST runs write to results/executed/ so the committed FULL outputs are never overwritten.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    nb = nbformat.read(path, as_version=4)
    os.environ["COOKBOOK_FAST"] = "1" if fast else "0"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, ok, message = time.perf_counter(), True, "ok"
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    with client.setup_kernel():
        for i in tqdm(code_cells, desc=path.stem, unit="cell", leave=False):
            try:
                client.execute_cell(nb.cells[i], i)
            except CellExecutionError as err:
                ok = False
                first = str(err).strip().splitlines()
                message = f"cell {i} failed: " + (first[-1] if first else repr(err))
                break
    seconds = time.perf_counter() - start
    for cell in nb.cells:      # progress bars printed as text (no widgets) would bloat the file
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("name") == "stderr" and "\r" in o.get("text", ""))]
    out = path if (not fast and ok) else results_dir() / "executed" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return ok, message, seconds


def cmd_run(args: argparse.Namespace) -> int:
    from cookbook import results

    paths = [_resolve(n) for n in args.notebooks] or notebooks()
    if not paths:
        print("no notebooks found in", NOTEBOOKS)
        return 1
    mode = "FAST" if args.fast else "FULL"
    print(f"running {len(paths)} notebook(s) in {mode} mode")
    failures = 0
    for path in paths:
        ok, message, seconds = run_notebook(path, fast=args.fast, timeout=args.timeout)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {path.stem:32s} {seconds:7.1f} s  {'' if ok else message}")
    summary = results.write_summary()
    print("\n" + summary.read_text())
    return 1 if failures else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cookbook import results

    print(results.write_summary().read_text())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHES:
        print(f"unknown benchmark {args.name!r}; available: {sorted(BENCHES)}")
        return 2
    module = importlib.import_module(BENCHES[args.name])
    return module.main(args.rest) or 0


def cmd_list(args: argparse.Namespace) -> int:
    for nb in notebooks():
        print(nb.stem)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cookbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks headless and print the results summary")
    r.add_argument("notebooks", nargs="*", help="names or paths (default: all notebooks/NN_*.ipynb)")
    r.add_argument("--fast", action="store_true", help="FAST mode (COOKBOOK_FAST=1): tiny subsets, seconds")
    r.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("summary", help="print the results summary")
    s.set_defaults(func=cmd_summary)
    b = sub.add_parser("bench", help=f"run a benchmark: {', '.join(sorted(BENCHES))}")
    b.add_argument("name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    ls = sub.add_parser("list", help="list the notebooks")
    ls.set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
