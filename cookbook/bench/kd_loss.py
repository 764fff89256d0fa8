r"""``cookbook bench kd-loss``: peak memory and time of head + distillation loss, against the floor.

For each shape (H, V) and token count N it measures one forward + backward of

- ``naive``      what a user writes: full logits and the idiomatic torch loss, e.g. forward KL as
                 ``F.kl_div(log_softmax(s), log_softmax(t), log_target=True, reduction="batchmean")``;
- ``reference``  ``cookbook.losses.llm.distill_loss`` on full logits: the didactic reference, which
                 keeps more (N, V) buffers than ``naive`` (floors, masks);
- ``recompute``  chunk-and-recompute, as recent trainers do (TRL's chunked JSD): per chunk of 256
                 tokens both projections and the loss run inside ``torch.utils.checkpoint``, so
                 backward recomputes them;
- ``ours``       ``fused_linear_distill`` (torch path), once per chunk budget in ``--budgets``
                 (the (c, V) workspace as a fraction of the floor, ``auto_chunk_size``);
- ``ours-triton`` the same with the Triton kernel (CUDA);
- ``ours-tile``  the top-k tile kernel (``topk_tile``, CUDA) against the teacher's top-64;
- ``liger``      Liger-Kernel's Triton ``LigerFusedLinearJSD`` (CUDA; JSD only);
- ``liger-chunked`` Liger-Kernel's torch ``LigerFusedLinearJSDLoss`` (chunked_loss; runs on CPU,
                 uncompiled: ``torch.compile`` took 30 s to compile on this CPU; JSD only, with its
                 hard-label weight set to 0);
- ``cce``        Cut Cross-Entropy's ``linear_cross_entropy`` (CUDA): plain cross-entropy on the
                 teacher's argmax, not distillation: the floor a one-hot target reaches.

Liger and CCE come with ``pip install 'distill-cookbook[bench]'``; a method that cannot run here is
a row with its reason ("not measured"), never an estimate.

and compares each peak with the physical floor of one training step (notes/anchors-numbers.md):

    M_min = W_s (V Hs) + W_t (V Ht) + dW_s (V Hs) + h_s (N Hs) + h_t (N Ht) + dh_s (N Hs)

in the benchmark dtype (fp32 here). Student and teacher share H in the default shapes.

How memory is measured. tracemalloc does not see torch's allocations. On CUDA we use
``torch.cuda.max_memory_allocated``. On CPU every measurement runs in a fresh subprocess: it warms the
method up at a tiny size, returns freed memory to the OS (``malloc_trim``), resets the kernel's RSS
high-water mark (``/proc/self/clear_refs``), notes the resident set, allocates the inputs and runs
the step; peak = high-water mark (VmHWM) - that baseline. So the peak includes the inputs and the
weight gradient, like M_min, and counts what the OS really had to provide (the OOM killer's view).
Where a method would not fit (``--max-gb``, default 85% of the memory available at start), it is
recorded as skipped with the memory it would need, extrapolated linearly in N from the smaller N
already measured for that method and shape (or from an analytic count of (N, V) buffers).

Run: ``python -m cookbook.bench.kd_loss [--quick] [--out benchmarks/kd_loss_cpu.csv]``.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from cookbook.argtypes import comma_list, device_choice, positive_float, positive_int
from cookbook.config import ROOT

SHAPES = {  # name: (H, V); student and teacher share H
    "smollm2": (576, 49152),  # SmolLM2-135M
    "llama3": (2048, 128256),  # Llama-3.2-1B-sized head, Llama-3 vocabulary
    "tiny": (64, 2048),  # the smoke test
}
METHODS = ("naive", "reference", "recompute", "ours", "ours-triton", "ours-tile", "liger",
           "liger-chunked", "cce")
DEFAULT_BUDGET = 0.3  # auto_chunk_size's default
TILE_K = 64  # top-k kept for ours-tile
RECOMPUTE_CHUNK = 256  # TRL's _CHUNKED_LM_HEAD_CHUNK_SIZE
NAIVE_NV_BUFFERS = 8  # analytic guess for naive's (N, V) fp32 buffers before any measurement
PREDICTION_MARGIN = 1.25  # a one-point prediction fell 15% short (Llama-3 naive, N=4096)
FIELDS = ["device", "date", "commit", "torch", "threads", "shape", "H", "V", "N", "method",
          "divergence", "budget", "status", "reason", "time_s", "peak_mib", "floor_mib", "peak_over_floor",
          "time_over_naive", "naive_time", "chunk", "loss"]


def physical_floor_bytes(n: int, hidden: int, vocab: int, teacher_hidden: int | None = None,
                         dtype_bytes: int = 4) -> int:
    """M_min of one step of head + distillation loss: weights, head grad, hidden states + grad."""
    ht = hidden if teacher_hidden is None else teacher_hidden
    return dtype_bytes * (vocab * hidden + vocab * ht + vocab * hidden + n * hidden + n * ht
                          + n * hidden)


# ----------------------------------------------------------------------------- one measurement


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"(Vm\w+):\s+(\d+) kB", text)}


def _release_and_reset() -> int:
    """Free what we can, reset the RSS high-water mark; return the resident set (bytes)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # without it the peak also counts the warm-up; noted in the CSV
        pass
    return _status()["VmRSS"]


def idiomatic_loss(s, t, divergence: str, beta: float = 0.5, tau: float = 0.5):
    """The loss a user would write on full logits s, t (N, V): ``F.kl_div`` forms, batch mean."""
    import math

    import torch
    import torch.nn.functional as F

    lq, lp = F.log_softmax(s, -1), F.log_softmax(t, -1)
    kl = lambda inp, target: F.kl_div(inp, target, log_target=True, reduction="batchmean")
    if divergence == "forward_kl":
        return kl(lq, lp)  # KL(p || q)
    if divergence == "reverse_kl":
        return kl(lp, lq)  # KL(q || p)
    if divergence == "jsd":
        lm = torch.logaddexp(lp + math.log(beta), lq + math.log(1 - beta))
        return beta * kl(lm, lp) + (1 - beta) * kl(lm, lq)
    lr = F.log_softmax((1 - tau) * lq.detach() + tau * lp, -1)  # TAID's target
    return kl(lq, lr)


def _step(method: str, n: int, hidden: int, vocab: int, divergence: str, device: str, seed: int,
          budget: float = DEFAULT_BUDGET):
    """Allocate the inputs, run one forward + backward, return (loss, chunk, seconds)."""
    import torch

    from cookbook.kernels.fused import TeacherHead, auto_chunk_size, fused_linear_distill
    from cookbook.losses.llm import TopKTeacher, distill_loss

    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g).to(device).requires_grad_()  # (N, H)
    w = (torch.randn(vocab, hidden, generator=g) / hidden**0.5).to(device).requires_grad_()
    ht = torch.randn(n, hidden, generator=g).to(device)  # (N, H)
    wt = (torch.randn(vocab, hidden, generator=g) * (2 / hidden**0.5)).to(device)  # (V, H)
    kw = dict(divergence=divergence, beta=0.5, t=0.5)
    chunk = ""
    if method in ("ours-tile", "cce"):  # their targets, built chunk by chunk before the clock
        with torch.no_grad():
            z = [ht[i:i + 256] @ wt.t() for i in range(0, n, 256)]
            if method == "ours-tile":
                topk = TopKTeacher(*map(torch.cat, zip(*(TopKTeacher.from_logits(c, TILE_K)[:2] for c in z))))
            else:
                labels = torch.cat([c.argmax(-1) for c in z])
            del z
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    if method in ("naive", "reference"):
        s = h @ w.t()  # (N, V)
        with torch.no_grad():
            tl = ht @ wt.t()  # (N, V)
        loss = idiomatic_loss(s, tl, divergence, 0.5, 0.5) if method == "naive" else \
            distill_loss(s, tl, **kw)
    elif method == "recompute":
        from torch.utils.checkpoint import checkpoint

        def chunk_loss(h_c, ht_c):
            with torch.no_grad():
                t_c = ht_c @ wt.t()
            return distill_loss(h_c @ w.t(), t_c, reduction="sum", **kw)

        loss = sum(checkpoint(chunk_loss, h[i:i + RECOMPUTE_CHUNK], ht[i:i + RECOMPUTE_CHUNK],
                              use_reentrant=False) for i in range(0, n, RECOMPUTE_CHUNK)) / n
        chunk = RECOMPUTE_CHUNK
    elif method in ("ours", "ours-triton"):
        backend = "triton" if method == "ours-triton" else "torch"
        chunk = auto_chunk_size(n, vocab, hidden, hidden, divergence=divergence, budget=budget)
        loss = fused_linear_distill(h, w, TeacherHead(ht, wt), backend=backend, chunk_size=chunk,
                                    **kw)
    elif method == "ours-tile":
        loss = fused_linear_distill(h, w, topk, backend="tile", **kw)
    elif method == "liger":  # untested here (no GPU was lent when this was written)
        from liger_kernel.transformers import LigerFusedLinearJSD

        loss = LigerFusedLinearJSD(jsd_beta=0.5)(h, w, ht, wt, None)
    elif method == "liger-chunked":
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        fn = LigerFusedLinearJSDLoss(weight_hard_loss=0.0, weight_soft_loss=1.0, beta=0.5,
                                     compiled=device == "cuda")
        loss = fn(h, w, ht, wt, torch.zeros(n, dtype=torch.long, device=device))
    else:  # cce: untested here (needs CUDA)
        from cut_cross_entropy import linear_cross_entropy

        loss = linear_cross_entropy(h, w, labels)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return float(loss.detach()), chunk, time.perf_counter() - start


def worker(spec: dict) -> dict:
    """Run one measurement in this (fresh) process and return its numbers."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    _step(spec["method"], 64, 32, 512, spec["divergence"], device, 0)  # warm-up: code paths, pools
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _release_and_reset()
    loss, chunk, secs = _step(spec["method"], spec["N"], spec["H"], spec["V"],
                              spec["divergence"], device, spec["seed"],
                              spec.get("budget", DEFAULT_BUDGET))
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _status()["VmHWM"]) - base
    return {"loss": loss, "chunk": chunk, "time_s": secs, "peak_bytes": peak}


# ----------------------------------------------------------------------------- the driver


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return f"{model.group(1).strip() if model else platform.processor()} ({os.cpu_count()} CPUs)"


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "cookbook"], cwd=root, text=True,
                               capture_output=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _mem_available() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"MemAvailable:\s+(\d+) kB", text).group(1)) * 1024


CHUNKED = ("recompute", "ours", "ours-triton", "ours-tile", "liger", "liger-chunked", "cce")


def _predict_peak(method, shape, n, vocab, floor, done, hidden=None) -> tuple[int, str]:
    """Bytes a run would need: linear in N through the measured runs, else an analytic guess.

    A chunked method's workspace does not grow with N: from one measured point only its inputs
    (the floor's N terms) are scaled, not the whole excess over the floor."""
    pts = sorted((r["N"], r["peak_bytes"]) for r in done
                 if r["method"] == method and r["shape"] == shape and r.get("peak_bytes"))
    if len(pts) == 1 and hidden is not None and method.split("@")[0] in CHUNKED:
        n1, p1 = pts[0]
        return int(p1 + floor - physical_floor_bytes(n1, hidden, vocab)), f"from N={n1} (chunked)"
    if len(pts) >= 2:
        (n0, p0), (n1, p1) = pts[-2], pts[-1]
        slope = (p1 - p0) / (n1 - n0)
        return int(p1 + slope * (n - n1)), f"extrapolated from N={n0},{n1}"
    if len(pts) == 1:
        n1, p1 = pts[0]
        return int(floor + (p1 - floor) * n / n1), f"scaled from N={n1}"
    if method in ("naive", "reference"):
        return int(floor + NAIVE_NV_BUFFERS * 4 * n * vocab), "analytic estimate"
    return int(1.5 * floor), "analytic estimate"


def _unavailable(method: str, device: str, divergence: str) -> str | None:
    import importlib.util

    cuda_only = {"ours-triton": "the Triton interpreter is for correctness tests only",
                 "ours-tile": "the Triton interpreter is for correctness tests only",
                 "liger": "Liger-Kernel's fused JSD is a Triton GPU kernel",
                 "cce": "Cut Cross-Entropy's kernels need CUDA"}
    if method in cuda_only and device != "cuda":
        return f"no CUDA ({cuda_only[method]}): not measured"
    package = {"liger": "liger_kernel", "liger-chunked": "liger_kernel",
               "cce": "cut_cross_entropy", "ours-triton": "triton", "ours-tile": "triton"}
    if method in package and importlib.util.find_spec(package[method]) is None:
        return f"{package[method]} not installed (pip install 'distill-cookbook[bench]')"
    if method.startswith("liger") and divergence != "jsd":
        return "Liger's fused linear distillation loss is JSD: run with --divergence jsd"
    return None


def _run_one(spec: dict) -> dict:
    cmd = [sys.executable, "-m", "cookbook.bench.kd_loss", "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    proc = subprocess.run(cmd, text=True, capture_output=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"worker failed (rc={proc.returncode}): {tail[0][:200]}"}
    return json.loads(lines[-1])


def run(shapes, ns, methods, divergence, threads, max_bytes, device, seed=0, log=print,
        budgets=(DEFAULT_BUDGET,)):
    """Measure every (shape, N, method); return rows for the CSV (skips included).

    ``ours`` runs once per chunk budget in ``budgets`` (row label ``ours@0.1`` unless the budget
    is the default)."""
    meta = {"device": _device_name(device), "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "commit": _commit(), "torch": _torch_version(), "threads": threads}
    rows, done = [], []
    for shape in shapes:
        hidden, vocab = SHAPES[shape]
        for n in sorted(ns):
            floor = physical_floor_bytes(n, hidden, vocab)
            log(f"\n{shape} H={hidden} V={vocab} N={n}: M_min = {floor / 2**20:,.0f} MiB")
            naive_time = None
            plan = [(m, b) for m in methods for b in (budgets if m == "ours" else ("",))]
            for base_method, budget in plan:
                method = base_method if budget in ("", DEFAULT_BUDGET) else f"ours@{budget:g}"
                row = dict(meta, shape=shape, H=hidden, V=vocab, N=n, method=method,
                           divergence=divergence, budget=budget,
                           floor_mib=round(floor / 2**20, 1))
                reason = _unavailable(base_method, device, divergence)
                need, how = _predict_peak(method, shape, n, vocab, floor, done, hidden)
                limit = min(max_bytes, int(0.9 * _mem_available())) if device == "cpu" else max_bytes
                if reason is None and PREDICTION_MARGIN * need > limit:
                    reason = (f"would need ~{need / 2**30:.1f} GiB ({how}); limit "
                              f"{limit / 2**30:.1f} GiB")
                if reason is None:
                    res = _run_one(dict(method=base_method, N=n, H=hidden, V=vocab, seed=seed,
                                        divergence=divergence, threads=threads, device=device,
                                        budget=budget or DEFAULT_BUDGET))
                    reason = res.get("error")
                if reason is not None:
                    rows.append(dict(row, status="skipped", reason=reason))
                    log(f"  {method:12s} skipped: {reason}")
                    continue
                done.append(dict(method=method, shape=shape, N=n, peak_bytes=res["peak_bytes"]))
                row.update(status="ok", reason="", time_s=round(res["time_s"], 3),
                           peak_mib=round(res["peak_bytes"] / 2**20, 1),
                           peak_over_floor=round(res["peak_bytes"] / floor, 3),
                           chunk=res["chunk"], loss=f"{res['loss']:.6g}")
                rows.append(row)
                if method == "naive":
                    naive_time = row["time_s"]
                log(f"  {method:12s} {res['time_s']:8.2f} s   peak {res['peak_bytes'] / 2**20:9,.0f}"
                    f" MiB = {res['peak_bytes'] / floor:5.2f} x M_min   loss {res['loss']:.6g}")
            _fill_naive_ratio(rows, shape, n, naive_time)
    return rows


def _fill_naive_ratio(rows, shape, n, naive_time):
    """time / naive, against the measured naive time, or one scaled linearly in N if skipped."""
    source = "measured"
    if naive_time is None:
        known = [(r["N"], r["time_s"]) for r in rows
                 if r["shape"] == shape and r["method"] == "naive" and r["status"] == "ok"]
        if not known:
            return
        n1, t1 = max(known)
        naive_time, source = t1 * n / n1, f"est. from N={n1} (x N)"
    for r in rows:
        if r["shape"] == shape and r["N"] == n:
            r["naive_time"] = f"{naive_time:.3f} ({source})"
            if r["status"] == "ok":
                r["time_over_naive"] = round(r["time_s"] / naive_time, 3)


def _torch_version() -> str:
    import torch

    return torch.__version__


def print_table(rows, log=print):
    """The summary: peak / M_min and time / naive per shape, N and method."""
    log(f"\n{'shape':8s} {'N':>5s} {'method':12s} {'time s':>8s} {'peak MiB':>10s} "
        f"{'M_min MiB':>10s} {'peak/M_min':>10s} {'time/naive':>10s}")
    for r in rows:
        if r["status"] != "ok":
            log(f"{r['shape']:8s} {r['N']:5d} {r['method']:12s} skipped: {r['reason']}")
            continue
        ratio = r.get("time_over_naive", "")
        log(f"{r['shape']:8s} {r['N']:5d} {r['method']:12s} {r['time_s']:8.2f} "
            f"{r['peak_mib']:10,.0f} {r['floor_mib']:10,.0f} {r['peak_over_floor']:10.2f} "
            f"{ratio if ratio == '' else f'{ratio:.2f}':>10}")


def write_csv(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)


def load_csv(path: str | Path) -> list[dict]:
    """Rows of a benchmark CSV written by ``main``, numbers converted back (blank stays "")."""
    ints, floats = ("threads", "H", "V", "N"), ("time_s", "peak_mib", "floor_mib",
                                                "peak_over_floor", "time_over_naive", "budget")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ints:
            r[k] = int(r[k])
        for k in floats:
            r[k] = float(r[k]) if r.get(k) not in (None, "") else ""
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cookbook bench kd-loss``."""
    p = argparse.ArgumentParser(prog="cookbook bench kd-loss", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="SmolLM2 shape, N in {1024, 4096} only")
    p.add_argument("--smoke", action="store_true", help="a tiny shape: checks the harness (tests)")
    p.add_argument("--shapes", default=None, help=f"comma list of {sorted(SHAPES)}")
    p.add_argument("--n", type=comma_list(positive_int), default=None, help="comma list of token counts")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--divergence", default="forward_kl",
                   choices=["forward_kl", "reverse_kl", "jsd", "taid"])
    p.add_argument("--budgets", type=comma_list(positive_float), default=[DEFAULT_BUDGET],
                   help="chunk budgets for 'ours' (workspace / floor), e.g. 0.05,0.1,0.3,1")
    p.add_argument("--threads", type=positive_int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-gb", type=positive_float, default=None,
                   help="skip runs predicted above this (default: 85%% of available memory)")
    p.add_argument("--device", type=device_choice, default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", default=None, help="CSV path (default benchmarks/kd_loss_<dev>.csv)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shapes = ["tiny"] if args.smoke else ["smollm2"] if args.quick else ["smollm2", "llama3"]
    ns = [256, 512] if args.smoke else [1024, 4096] if args.quick else [1024, 4096, 8192]
    shapes = args.shapes.split(",") if args.shapes else shapes
    ns = args.n or ns
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS] + [s for s in shapes if s not in SHAPES]
    if bad:
        p.error(f"unknown method/shape {bad}; methods {METHODS}, shapes {sorted(SHAPES)}")
    max_bytes = int(args.max_gb * 2**30) if args.max_gb else int(0.85 * _mem_available())
    rows = run(shapes, ns, methods, args.divergence, args.threads, max_bytes, device,
               budgets=args.budgets)
    print_table(rows)
    out = Path(args.out) if args.out else \
        ROOT / "benchmarks" / f"kd_loss_{device}.csv"
    write_csv(rows, out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
