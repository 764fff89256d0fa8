"""``cookbook`` command line: run notebooks headless, print the results summary, run benchmarks.

    cookbook run [--fast] [NOTEBOOK ...]   execute notebooks (all by default), write results/*.json
                                           and results/SUMMARY.md, print the summary
    cookbook summary                       print results/SUMMARY.md from the stored results
    cookbook bench NAME [ARGS ...]         a benchmark (see `cookbook bench --help`)
    cookbook list                          the notebooks
    cookbook --version

A notebook that fails, times out or whose kernel cannot start is reported as FAIL and the run goes on;
the exit code is 1 when any notebook failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path

from cookbook import __version__
from cookbook.argtypes import positive_int
from cookbook.config import NOTEBOOKS, results_dir

# benchmark name -> module with main(argv); each writes a CSV with device, date and commit.
BENCHES = {
    "kd-loss": "cookbook.bench.kd_loss",
    "graph": "cookbook.bench.graph",
}


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def _notebook_arg(name: str) -> str:
    """An existing path must be a notebook file (a name is matched later, by ``_resolve``)."""
    p = Path(name)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{name} is a directory: give .ipynb files, or no argument "
                                         "to run every notebook")
    if p.exists() and p.suffix != ".ipynb":
        raise argparse.ArgumentTypeError(f"{name} is not a notebook (.ipynb)")
    return name


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
    import nbclient
    import nbformat

    from cookbook import results

    nb = nbformat.read(path, as_version=4)
    os.environ["COOKBOOK_FAST"] = "1" if fast else "0"
    results.clear(path.stem, "FAST" if fast else "FULL")        # no row of an earlier run lingers
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    failure = _execute(client, nb, path.stem, timeout)
    ok, message = failure is None, failure or "ok"
    seconds = time.perf_counter() - start
    for cell in nb.cells:      # progress bars printed as text (no widgets) would bloat the file
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("name") == "stderr" and "\r" in o.get("text", ""))]
    out = path if (not fast and ok) else results_dir() / "executed" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return ok, message, seconds


def _execute(client, nb, name: str, timeout: int) -> str | None:
    """Run the code cells in order; None when all passed, else one line saying where and why it stopped."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from tqdm.auto import tqdm

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(client.setup_kernel())
        except (RuntimeError, OSError, NoSuchKernel) as err:  # e.g. "Kernel didn't respond in 60 seconds"
            if client.km is not None:  # setup_kernel leaves a half-started kernel running
                client._cleanup_kernel()
            return f"kernel could not start: {err}"
        code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        for i in tqdm(code_cells, desc=name, unit="cell", leave=False):
            try:
                client.execute_cell(nb.cells[i], i)
            except CellExecutionError as err:
                lines = str(err).strip().splitlines()
                return f"cell {i} failed: " + (lines[-1] if lines else repr(err))
            except CellTimeoutError:
                return f"cell {i} timed out after {timeout} s (raise --timeout if it is just slow)"
            except DeadKernelError as err:
                return f"cell {i}: the kernel died ({err}); out of memory?"
    return None


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
    if args.fast:
        print("\n" + results.FAST_BANNER)
    print("\n" + summary.read_text())
    if args.fast:
        full = results.committed_results(p.stem for p in paths)
        print("Measured results (FULL runs, committed in the notebooks and README.md):\n\n"
              + (full or "none committed yet for these notebooks\n"))
    return 1 if failures else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cookbook import results

    print(results.write_summary().read_text())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHES:
        print(f"cookbook bench: error: unknown benchmark {args.name!r}; available: {sorted(BENCHES)}",
              file=sys.stderr)
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
    parser.add_argument("--version", action="version", version=f"cookbook {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks headless and print the results summary")
    r.add_argument("notebooks", nargs="*", type=_notebook_arg, help="names or paths (default: all notebooks/NN_*.ipynb)")
    r.add_argument("--fast", action="store_true", help="FAST mode (COOKBOOK_FAST=1): tiny subsets, seconds")
    r.add_argument("--timeout", type=positive_int, default=1800, help="seconds per cell (default 1800)")
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
