r"""``cookbook bench graph``: inference time of an MLP against GNNs on the same graph, in one run.

Two settings, every model timed in the same process, one after the other:

- ``full``: predict all N nodes at once (features as a sparse CSR matrix, the fast path for every
  model). The MLP multiplies features by weights; a GNN also gathers and scatters along every edge.
- ``node``: predict one node that arrives at inference time (the inductive, online case). The MLP
  needs that node's feature row only. A k-layer GNN first has to *fetch* the node's k-hop
  neighbourhood (``torch_geometric.utils.k_hop_subgraph``) and those nodes' features, then run on
  the subgraph. Fetch and forward are timed separately; the total is what a user waits for.

Speed-ups are ratios of medians (``full``) or means (``node``; p99 is reported too). Run-to-run
noise on a shared CPU is large, ratios within one run are what to compare (shared/notes/env.md).
GLNN's Table 4 measures the same thing on OGB (10 random nodes, 146x-274x with neighbour fetching on
a large graph); on a 10,000-node graph the neighbourhoods, and so the speed-up, are far smaller.

Run: ``python -m cookbook.bench.graph [--nodes 10000] [--queries 300] [--out benchmarks/graph_cpu.csv]``.
Untrained models are timed (the weights do not change the time); the notebook times its trained ones.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from cookbook.argtypes import positive_int
from cookbook.config import ROOT
from cookbook.utils import device_name, git_commit

FIELDS = ["device", "date", "commit", "torch", "threads", "graph", "nodes", "edges", "setting", "model",
          "hops", "queries", "fetch_ms", "forward_ms", "total_ms", "p99_ms", "mean_subgraph_nodes",
          "speedup_vs_mlp"]


def _ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))]


@torch.no_grad()
def time_full_graph(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, *, repeats: int = 20) -> float:
    """Median milliseconds of one forward pass over every node (eval mode)."""
    model.eval()
    return statistics.median(_ms(lambda: model(x, edge_index), repeats))


@torch.no_grad()
def time_single_node(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, nodes: torch.Tensor, *,
                     num_hops: int | None) -> dict[str, float]:
    """Per-node latency of predicting each of ``nodes`` alone.

    x: dense (N, F) features (one row is what a node brings). num_hops: None for a graph-free model
    (fetch = its feature row), else the GNN's depth (fetch = the k-hop subgraph and its features).
    Returns mean fetch_ms, forward_ms, total_ms, p99_ms, and mean_subgraph_nodes.
    """
    from torch_geometric.utils import k_hop_subgraph

    model.eval()
    n = x.shape[0]
    fetch, forward, sizes = [], [], []
    for i in [int(v) for v in nodes]:
        t0 = time.perf_counter()
        if num_hops is None:
            xs, sub_ei, at = x[i:i + 1], edge_index[:, :0], 0
        else:
            subset, sub_ei, mapping, _ = k_hop_subgraph(i, num_hops, edge_index, relabel_nodes=True, num_nodes=n)
            xs, at = x[subset], int(mapping[0])
        t1 = time.perf_counter()
        model(xs, sub_ei)[at]
        t2 = time.perf_counter()
        fetch.append((t1 - t0) * 1e3)
        forward.append((t2 - t1) * 1e3)
        sizes.append(xs.shape[0])
    total = [a + b for a, b in zip(fetch, forward)]
    return {"fetch_ms": statistics.mean(fetch), "forward_ms": statistics.mean(forward),
            "total_ms": statistics.mean(total), "p99_ms": _p99(total),
            "mean_subgraph_nodes": statistics.mean(sizes)}


def benchmark(models: Mapping[str, tuple[nn.Module, int | None]], x: torch.Tensor, edge_index: torch.Tensor, *,
              queries: int = 200, repeats: int = 20, seed: int = 0, graph: str = "") -> list[dict]:
    """Time every model in both settings. models: name -> (model, num_hops or None for an MLP).

    x: dense (N, F) features (converted to sparse CSR for the full-graph pass). One row per
    (setting, model), with ``speedup_vs_mlp`` = the first graph-free model's time ratio.
    """
    from cookbook.models.graph import sparse_features

    if not models:
        raise ValueError("benchmark needs at least one model")
    n = x.shape[0]
    nodes = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:queries]
    x_csr = sparse_features(x)
    common = {"device": device_name(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "commit": git_commit(), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "graph": graph, "nodes": n, "edges": edge_index.shape[1] // 2}
    rows = []
    for name, (model, hops) in models.items():
        ms = time_full_graph(model, x_csr, edge_index, repeats=repeats)
        rows.append({**common, "setting": "full", "model": name, "hops": hops, "queries": n,
                     "forward_ms": ms, "total_ms": ms})
        rows.append({**common, "setting": "node", "model": name, "hops": hops, "queries": len(nodes),
                     **time_single_node(model, x, edge_index, nodes, num_hops=hops)})
    for setting in ("full", "node"):
        base = next((r["total_ms"] for r in rows if r["setting"] == setting and r["hops"] is None), None)
        for r in rows:
            if r["setting"] == setting and base:
                r["speedup_vs_mlp"] = r["total_ms"] / base
    return rows


def table(rows: list[dict]) -> str:
    """A markdown table of ``benchmark`` rows."""
    lines = ["| setting | model | fetch ms | forward ms | total ms | p99 ms | subgraph nodes | x MLP time |",
             "|---|---|---|---|---|---|---|---|"]
    def cell(r, k, fmt="{:.3f}"):
        return fmt.format(r[k]) if r.get(k) is not None else ""

    for r in rows:
        lines.append(f"| {r['setting']} | {r['model']} | {cell(r, 'fetch_ms')} | {cell(r, 'forward_ms')} | "
                     f"{cell(r, 'total_ms')} | {cell(r, 'p99_ms')} | {cell(r, 'mean_subgraph_nodes', '{:.0f}')} | "
                     f"{cell(r, 'speedup_vs_mlp', '{:.1f}')} |")
    return "\n".join(lines)


def tradeoff_plot(points: Mapping[str, tuple[float, float, float]], *, xlabel: str = "inference time per node (ms)",
                  title: str = "", ax=None):
    """Accuracy against inference time: {label: (ms, mean accuracy, std)}, log-scaled time axis."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.8))[1]
    for label, (ms, acc, std) in points.items():
        ax.errorbar(ms, acc, yerr=std, fmt="o", capsize=3)
        ax.annotate(label, (ms, acc), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="test accuracy", title=title)
    return ax


def write_csv(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cookbook bench graph", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=positive_int, default=10_000, help="breadth-first WordNet cut size (default 10000)")
    p.add_argument("--cut-seed", type=int, default=2, help="seed of the cut (notebook 02 uses 2)")
    p.add_argument("--hidden", type=positive_int, default=64)
    p.add_argument("--queries", type=positive_int, default=300, help="single-node predictions timed per model")
    p.add_argument("--repeats", type=positive_int, default=20, help="full-graph passes timed per model")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, help="CSV path (default benchmarks/graph_<device>.csv)")
    args = p.parse_args(argv)

    from cookbook.data import load_wordnet_nouns
    from cookbook.models.graph import GNN, NodeMLP

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = load_wordnet_nouns(num_nodes=args.nodes, seed=args.cut_seed)
    f, c = g.x.shape[1], g.num_classes
    models = {"MLP": (NodeMLP(f, c, hidden=(args.hidden,)), None),
              "GCN": (GNN("gcn", f, c, hidden=args.hidden), 2),
              "SAGE": (GNN("sage", f, c, hidden=args.hidden), 2)}
    rows = benchmark(models, g.x, g.edge_index, queries=args.queries, repeats=args.repeats,
                     graph=f"wordnet-nouns-bfs{args.nodes}-seed{args.cut_seed}")
    print(f"{g}\n{rows[0]['device']}, torch {rows[0]['torch']}, {rows[0]['threads']} threads\n")
    print(table(rows))
    dev = "cuda" if "cpu" not in rows[0]["device"] else "cpu"
    out = Path(args.out) if args.out else ROOT / "benchmarks" / f"graph_{dev}.csv"
    print(f"\nwrote {write_csv(rows, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
