r"""Distil a small causal LM from a teacher's top-k next-token cache, on one process or many.

    python -m cookbook.recipes.distill_lm --cache TEACHER_CACHE_DIR --steps 200
    torchrun --nproc_per_node 2 -m cookbook.recipes.distill_lm --cache TEACHER_CACHE_DIR
    python -m cookbook.recipes.distill_lm --synthetic            # smoke test (see below)

The student is a tiny decoder-only transformer (``TinyLM``); its last hidden states and its output
head go through ``cookbook.kernels.fused_linear_distill``, so the (tokens x vocab) logits never exist
in full. Under ``torchrun`` it trains with DistributedDataParallel (gloo on CPU, nccl on GPU): every
step each rank takes its share of one global batch and the loss is the mean over every counted
token of the global batch: each rank sums its tokens' losses, the token count is all-reduced, and
the rank's loss is scaled by world / global count, so DDP's gradient average equals the gradient of
the global token mean even when a padding mask leaves the ranks unequal numbers of tokens. A run on
N ranks follows the single-process run on the same global batch.

Teacher cache: a ``cookbook-topk-v2`` folder (memory-mapped top-k log-probs plus a manifest; see
``cookbook.teachers.topk_cache``), e.g. the ones notebooks 05a/05b build from SmolLM2-135M.

``--synthetic`` is a **smoke test, not a result**: a tiny randomly initialised teacher computes its
top-k on the fly for a small random corpus of token ids; it checks that the pipeline runs, the loss
falls and the ranks stay in sync (tests/test_distill_lm_ddp.py), nothing about distillation quality.
``--write-cache PATH`` saves that synthetic teacher's cache in the format above, and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cookbook.argtypes import device_choice, finite_float, positive_float, positive_int
from cookbook.kernels import fused_linear_distill
from cookbook.losses.llm import DIVERGENCES, TAIDSchedule, TopKTeacher
from cookbook.teachers.topk_cache import build_topk_cache, open_topk_cache

# ----------------------------------------------------------------------------- models


class TinyLM(nn.Module):
    """A small pre-norm decoder-only transformer: ``hidden(ids)`` (B, L, H) and ``head`` (V, H)."""

    def __init__(self, vocab: int, dim: int = 32, layers: int = 1, heads: int = 2,
                 max_len: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        block = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def hidden(self, ids: Tensor) -> Tensor:
        seq = ids.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(seq, device=ids.device)
        x = self.embed(ids) + self.pos[:seq]  # (B, L, H)
        return self.norm(self.blocks(x, mask=causal, is_causal=True))

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.hidden(ids))  # (B, L, V): for the teacher and for evaluation only


class DistillStep(nn.Module):
    """Student + fused loss in one forward, so DDP sees every parameter used inside ``forward``."""

    def __init__(self, student: TinyLM, **loss_kw):
        super().__init__()
        self.student, self.loss_kw = student, loss_kw

    def forward(self, ids: Tensor, teacher: TopKTeacher, mask: Tensor | None = None,
                t: float | None = None) -> Tensor:
        """The **sum** of the counted tokens' losses (the caller divides by the global count)."""
        h = self.student.hidden(ids).flatten(0, 1)  # (B*L, H)
        return fused_linear_distill(h, self.student.head.weight, teacher, t=t, reduction="sum",
                                    mask=None if mask is None else mask.flatten(), **self.loss_kw)


def global_token_mean(loss_sum: Tensor, n_tokens: int, world: int) -> tuple[Tensor, float]:
    """(loss to back-propagate on this rank, the global mean loss for logging).

    With S_r the rank's summed loss and n_r its counted tokens, the target is sum_r S_r / sum_r n_r.
    DDP averages gradients over ranks, so each rank back-propagates S_r * world / sum_r n_r.
    """
    count = torch.tensor([float(n_tokens), float(loss_sum.detach())], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(count)
    n_global, s_global = float(count[0]), float(count[1])
    return loss_sum * (world / n_global), s_global / n_global


# ----------------------------------------------------------------------------- data


def synthetic_teacher(vocab: int, seed: int) -> TinyLM:
    """A random tiny teacher with peaked next-token distributions (a smoke-test stand-in)."""
    torch.manual_seed(seed + 1)
    teacher = TinyLM(vocab, dim=64, layers=2, heads=4)
    with torch.no_grad():
        teacher.head.weight.mul_(8.0)  # random init is near uniform: sharpen it
    return teacher.eval().requires_grad_(False)


def synthetic_corpus(n_seq: int, seq_len: int, vocab: int, seed: int) -> Tensor:
    return torch.randint(vocab, (n_seq, seq_len), generator=torch.Generator().manual_seed(seed))


def teacher_topk(teacher: TinyLM, ids: Tensor, k: int, T: float) -> TopKTeacher:
    """The teacher's top-k next-token log-probs for ids (B, L) as a TopKTeacher over B*L tokens."""
    with torch.no_grad():
        return TopKTeacher.from_logits(teacher(ids).flatten(0, 1), k, T=T)


# ----------------------------------------------------------------------------- training


def _setup_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_arg != "cpu" and torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if world > 1:
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


def _param_spread(params: list[Tensor], world: int) -> tuple[float, float]:
    """A checksum of the parameters and their largest difference across ranks."""
    flat = torch.cat([p.detach().flatten() for p in params]).double()
    checksum = float(flat.sum())
    if world == 1:
        return checksum, 0.0
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return checksum, float((hi - lo).abs().max())


def train(args: argparse.Namespace) -> dict:
    rank, world, device = _setup_distributed(args.device)
    torch.set_num_threads(args.threads or (1 if world > 1 else min(2, os.cpu_count() or 1)))
    if args.synthetic:
        vocab, T = args.vocab, args.T
        corpus = synthetic_corpus(args.n_seq, args.seq_len, vocab, args.seed)
        teacher = synthetic_teacher(vocab, args.seed).to(device)
        cache = None
    else:
        try:
            cache = open_topk_cache(args.cache)
        except (FileNotFoundError, ValueError) as err:  # a wrong --cache: say so, no traceback
            raise SystemExit(f"[distill_lm] --cache: {err}") from None
        corpus, vocab, T = cache.ids(slice(None)), cache.vocab_size, cache.temperature
        if args.T != T:
            print(f"[distill_lm] the cache was built at T={T}; training at that temperature")
    if args.batch % world:
        raise ValueError(f"--batch {args.batch} must be divisible by the {world} ranks")
    torch.manual_seed(args.seed)  # same student init on every rank (DDP also broadcasts rank 0's)
    student = TinyLM(vocab, dim=args.dim, layers=args.layers, max_len=corpus.shape[1]).to(device)
    step_fn = DistillStep(student, divergence=args.divergence, T=T, beta=args.beta,
                          chunk_size=args.chunk_size)
    model = nn.parallel.DistributedDataParallel(step_fn) if world > 1 else step_fn
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = TAIDSchedule(args.steps) if args.divergence == "taid" else None
    order = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(args.seed))
    per_rank = args.batch // world
    losses, local_losses, ts = [], [], []
    start = time.perf_counter()
    for step in range(args.steps):
        first = (step * args.batch) % len(corpus)
        rows = order[(first + torch.arange(args.batch)) % len(corpus)]  # this step's global batch
        rows = rows[rank * per_rank:(rank + 1) * per_rank]  # this rank's share
        ids = corpus[rows].to(device)  # (B/world, L)
        if cache is None:
            teacher_k = teacher_topk(teacher, ids, args.k, T)
            mask = None
        else:
            rows_np = rows.numpy()
            top = cache.teacher(rows_np)
            teacher_k = TopKTeacher(top.indices.to(device), top.logprobs.to(device), top.T)
            mask = cache.get("mask", rows_np)
            mask = None if mask is None else mask.to(device)
        t = schedule.t if schedule else None
        loss_sum = model(ids, teacher_k, mask, t)
        n_local = ids.numel() if mask is None else int(mask.sum())
        loss, global_loss = global_token_mean(loss_sum, n_local, world)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        local_losses.append(float(loss_sum.detach()) / n_local)
        losses.append(global_loss)
        if schedule:
            ts.append(t)
            schedule.update(losses[-1])
        if rank == 0 and (step % max(1, args.steps // 10) == 0 or step == args.steps - 1):
            print(f"[distill_lm] step {step:4d}  loss {losses[-1]:.5f}" +
                  (f"  t {t:.3f}" if schedule else ""), flush=True)
    checksum, spread = _param_spread(list(student.parameters()), world)
    summary = {"rank": rank, "world_size": world, "divergence": args.divergence,
               "synthetic": bool(args.synthetic), "losses": losses, "local_losses": local_losses,
               "taid_t": ts, "param_checksum": checksum, "max_param_diff_across_ranks": spread,
               "seconds": time.perf_counter() - start, "device": str(device)}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(summary))
    if rank == 0:
        note = " (synthetic smoke test, not a result)" if args.synthetic else ""
        print(f"[distill_lm] {world} process(es), {args.steps} steps: loss {losses[0]:.4f} -> "
              f"{losses[-1]:.4f}; max parameter difference across ranks {spread:.2e}{note}")
    if world > 1:
        dist.barrier()             # no rank tears gloo down while another is still in a collective
        dist.destroy_process_group()
    return summary


def write_synthetic_cache(args: argparse.Namespace) -> None:
    corpus = synthetic_corpus(args.n_seq, args.seq_len, args.vocab, args.seed)
    teacher = synthetic_teacher(args.vocab, args.seed)
    build_topk_cache(teacher, corpus, args.write_cache, k=args.k, T=args.T, dtype=torch.float32,
                     teacher="synthetic-random-tiny", vocab_size=args.vocab, progress=False)
    print(f"[distill_lm] wrote {args.write_cache}: {corpus.shape[0]} x {corpus.shape[1]} tokens, "
          f"top-{args.k} (synthetic smoke-test teacher)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cookbook.recipes.distill_lm",
                                description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cache", help="teacher top-k cache folder (cookbook.teachers.topk_cache)")
    src.add_argument("--synthetic", action="store_true", help="smoke test: random tiny teacher")
    p.add_argument("--write-cache", help="with --synthetic: save its teacher cache here and exit")
    p.add_argument("--divergence", default="forward_kl", choices=DIVERGENCES)
    p.add_argument("--T", type=positive_float, default=1.0,
                   help="temperature of the synthetic teacher (a cache fixes its own)")
    p.add_argument("--beta", type=finite_float, default=0.5, help="JSD beta")
    p.add_argument("--steps", type=positive_int, default=50)
    p.add_argument("--batch", type=positive_int, default=8, help="global batch (sequences per step)")
    p.add_argument("--lr", type=positive_float, default=3e-3)
    p.add_argument("--dim", type=positive_int, default=32)
    p.add_argument("--layers", type=positive_int, default=1)
    p.add_argument("--chunk-size", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--device", type=device_choice, default=None,
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help="directory for per-rank JSON summaries")
    syn = p.add_argument_group("synthetic teacher")
    syn.add_argument("--vocab", type=positive_int, default=256)
    syn.add_argument("--n-seq", type=positive_int, default=64)
    syn.add_argument("--seq-len", type=positive_int, default=32)
    syn.add_argument("--k", type=positive_int, default=16, help="top-k kept (at most --vocab)")
    args = p.parse_args(argv)
    if args.write_cache and not args.synthetic:
        p.error("--write-cache needs --synthetic")
    if args.synthetic and args.k > args.vocab:
        p.error(f"--k {args.k} is larger than --vocab {args.vocab}: choose k <= vocab")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_cache:
        write_synthetic_cache(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
