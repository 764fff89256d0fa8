"""Small causal-LM pieces for notebook 05: the student, stdlib token windows, a step loop, metrics.

The student shares the teacher's tokenizer (SmolLM2, 49,152 tokens), so every distillation loss
compares distributions over the same vocabulary. With a vocabulary that large the output head
dominates the cost of a small model (49,152 x H weights, a (tokens x 49,152) matrix per step), so
the student is narrow (H = 64) and trained from scratch: a truncated copy of the teacher would keep
its 576-wide head, 9x the cost per step on a CPU.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from cookbook.config import cache_dir, is_fast

# Domains of the stdlib corpus for DDK: doc prose vs three families of code.
DOMAINS = {
    "docs": ("pydoc_data",),
    "web": ("email", "http", "urllib", "xml", "html", "xmlrpc", "mailbox", "json"),
    "concurrency": ("asyncio", "multiprocessing", "concurrent", "threading", "subprocess", "queue"),
    "other code": (),
}


def domain_id(domain: str) -> int:
    """Index in ``DOMAINS`` of a stdlib document's top-level package (the last one catches all)."""
    for i, members in enumerate(DOMAINS.values()):
        if domain in members:
            return i
    return len(DOMAINS) - 1


def tiny_llama(vocab_size: int = 49_152, hidden: int = 64, layers: int = 4, heads: int = 4,
               intermediate: int = 256, max_len: int = 512, seed: int = 0) -> nn.Module:
    """A Llama-architecture student (RoPE, RMSNorm, SwiGLU, tied embeddings), randomly initialised.

    Defaults: 3.4 M parameters, 3.1 M of them the tied 49,152 x 64 embedding / head.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=max_len,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         attn_implementation="eager")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def lm_windows(tokenizer, split: str, seq_len: int) -> tuple[Tensor, Tensor]:
    """Every non-overlapping ``seq_len``-token window of the stdlib corpus split, with its domain.

    Each document is tokenised on its own (the remainder shorter than a window is dropped).
    Returns ids (S, seq_len) int64 and domain ids (S,) int64 (see ``DOMAINS``), in corpus order.
    Cached under ``cache_dir()`` (the corpus depends on the Python version).
    """
    from cookbook.data import load_stdlib_corpus

    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    file = cache_dir() / f"stdlib-windows-{split}-{seq_len}-py{platform.python_version()}.npz"
    if file.exists():
        data = np.load(file)
        return torch.from_numpy(data["ids"]).long(), torch.from_numpy(data["domain"]).long()
    ids, domain = [], []
    for doc in load_stdlib_corpus(split):
        toks = tokenizer(doc.text, add_special_tokens=False).input_ids
        n = len(toks) // seq_len
        if n:
            ids.append(np.asarray(toks[: n * seq_len], np.int32).reshape(n, seq_len))
            domain += [domain_id(doc.domain)] * n
    ids, domain = np.concatenate(ids), np.asarray(domain, np.int64)
    np.savez(file, ids=ids, domain=domain)
    return torch.from_numpy(ids).long(), torch.from_numpy(domain)


def sample_windows(ids: Tensor, domain: Tensor, n: int, seed: int,
                   stratified: bool = False) -> tuple[Tensor, Tensor]:
    """A fixed random subset of ``n`` windows: the natural domain mixture, or (``stratified``)
    n / len(DOMAINS) windows of every domain."""
    if n > len(ids):
        raise ValueError(f"asked for {n} windows but the split has {len(ids)}")
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))
    if stratified:
        per = n // len(DOMAINS)
        order = torch.cat([order[domain[order] == d][:per] for d in range(len(DOMAINS))])
    rows = order[:n].sort().values
    return ids[rows], domain[rows]


# ----------------------------------------------------------------------------- losses on LM outputs


def shift_labels(ids: Tensor) -> Tensor:
    """Next-token labels for ids (B, L), flattened to (B*L,): the last position gets -100."""
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    return labels.flatten()


def token_ce(logits: Tensor, ids: Tensor) -> Tensor:
    """Per-token next-token cross-entropy (B*L,), 0 at the last position of each sequence."""
    return F.cross_entropy(logits.flatten(0, 1).float(), shift_labels(ids), reduction="none")


# ----------------------------------------------------------------------------- training loop


@dataclass
class LMRun:
    """What a run recorded per step: its loss, anything the loss logged, and wall time."""

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
    """AdamW with linear warm-up and cosine decay for ``steps`` steps.

    Each step draws ``rows = sampler(step, generator)`` (sequence indices into whatever data the
    loss reads) and minimises ``loss_fn(student, rows, step, run)``; the loss may call
    ``run.log(name=value)`` to record per-step quantities (TAID's t, the share of kept tokens...).
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup))
                                              * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    run = LMRun()
    student.train()
    start = time.perf_counter()
    for step in tqdm(range(steps), desc=desc, leave=False,
                     disable=is_fast() if progress is None else not progress):
        loss = loss_fn(student, sampler(step, gen), step, run)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        run.loss.append(loss.item())
    run.seconds = time.perf_counter() - start
    student.eval()
    return run


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_lm(model: nn.Module, cache, rows=None, batch_size: int = 16) -> dict[str, float]:
    """Perplexity on the cached sequences and top-1 agreement with the cached teacher.

    ``cache``: a ``TopKCache`` of held-out sequences (``cookbook.teachers.topk_cache``).
    ppl = exp(mean next-token cross-entropy over the first L-1 positions); agreement = share of all
    L positions where the model's most likely next token is the teacher's.
    """
    model.eval()
    rows = np.arange(len(cache)) if rows is None else np.asarray(rows)
    nll, count, agree, total = 0.0, 0, 0, 0
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        ids = cache.ids(r)
        logits = model(ids).logits                                         # (B, L, V)
        nll += token_ce(logits, ids).sum().item()
        count += ids.shape[0] * (ids.shape[1] - 1)
        teacher_top1 = cache.get("topk_indices", r)[..., 0].long()          # (B, L)
        agree += (logits.argmax(-1) == teacher_top1).sum().item()
        total += teacher_top1.numel()
    return {"ppl": math.exp(nll / count), "agreement": agree / total}


def teacher_perplexity(cache, rows=None) -> float:
    """The teacher's perplexity on cached sequences, from its stored log-prob of each next token."""
    rows = slice(None) if rows is None else rows
    target = cache.get("target_logprobs", rows)[:, :-1]
    return math.exp(-target.double().mean().item())


@torch.no_grad()
def continue_ids(model: nn.Module, ids: Tensor, n_new: int, *, greedy: bool = True,
                 generator: torch.Generator | None = None) -> Tensor:
    """Append ``n_new`` tokens to ids (B, L0) -> (B, L0 + n_new): greedy, or sampled at T = 1."""
    was_training = model.training
    model.eval()
    for _ in range(n_new):
        last = model(ids).logits[:, -1].float()                                  # (B, V)
        nxt = last.argmax(-1, keepdim=True) if greedy else torch.multinomial(
            last.softmax(-1), 1, generator=generator)
        ids = torch.cat([ids, nxt], dim=1)
    model.train(was_training)
    return ids


# ----------------------------------------------------------------------------- the teacher caches

CACHE_SPLITS = {"train": "train", "val": "val", "eval": "test"}   # cache name -> corpus split


def stdlib_caches(sizes: dict[str, int], *, seq_len: int = 64, k: int = 32, root=None,
                  seed: int = 0, batch_size: int = 16, progress: bool = True) -> dict:
    """SmolLM2's top-k caches over stdlib windows: {"train", "val", "eval"} -> TopKCache.

    ``sizes`` gives the number of windows per cache; "val" (the same number from every domain) is
    for choices made during training (DDK's domain losses), "eval" (the corpus's test split) only
    for the final numbers. Each cache also stores every window's ``domain``. Built once under
    ``root`` (default: cache_dir()), running the teacher; later calls open them without loading it.
    The committed FAST cache (assets/llm/smollm2-topk32-L64-fast) was built by this function with
    sizes {"train": 128, "val": 32, "eval": 48}.
    """
    from cookbook.teachers.llm import NAME, load_teacher, load_tokenizer
    from cookbook.teachers.topk_cache import build_topk_cache, open_topk_cache

    unknown = set(sizes) - set(CACHE_SPLITS)
    if unknown:
        raise ValueError(f"unknown cache names {sorted(unknown)}; choose from {list(CACHE_SPLITS)}")
    root = cache_dir() / f"{NAME}-topk{k}-L{seq_len}" if root is None else root
    out, teacher, tokenizer = {}, None, None
    for name, n in sizes.items():
        path = root / f"{name}-{n}"
        if (path / "manifest.json").exists():
            out[name] = open_topk_cache(path)
            continue
        tokenizer = tokenizer or load_tokenizer()
        teacher = teacher or load_teacher()
        ids, domain = sample_windows(*lm_windows(tokenizer, CACHE_SPLITS[name], seq_len), n, seed,
                                     stratified=name == "val")
        out[name] = build_topk_cache(teacher, ids, path, k=k, teacher=NAME, batch_size=batch_size,
                                     extras={"domain": domain}, progress=progress)
    return out
