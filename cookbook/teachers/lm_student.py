"""A pre-trained student LM that shares SmolLM2's tokenizer: ``stdlib-llama-3m``.

LLM distillation papers start from a student that can already model language (GPT-2, OPT,
TinyLlama, Qwen...), then distil on a task. A 3.4M-parameter Llama trained from scratch for a few
hundred steps is not such a student (perplexity ~1000 against the teacher's ~24), so the
notebooks start from this registered checkpoint instead:

- **Architecture:** ``cookbook.models.lm.tiny_llama`` (4 layers, width 64, 4 heads, SwiGLU 256,
  tied embeddings; 3.4M parameters, 3.1M of them the 49,152 x 64 embedding). Same tokenizer and
  vocabulary as the teacher, so every distillation loss compares distributions over one vocabulary.
- **Init:** the embedding is the teacher's (SmolLM2-135M-Instruct's 49,152 x 576 table) projected
  on its top 64 principal directions (``low_rank_embedding``); the blocks are random.
- **Data:** plain next-token cross-entropy (no teacher outputs) on the stdlib corpus's "train"
  files of every domain except ``HELD_OUT`` ("web": email, http, urllib, xml, html, json...),
  128-token windows. "web" is kept out so that a distillation run has a domain the student has
  never read (notebooks 05a, 05b).
- **Storage:** float16 safetensors (6.8 MB); the card's perplexities are measured after rounding.

``python -m cookbook.teachers build stdlib-llama-3m`` rebuilds it (the card records steps, tokens,
seconds and device). ``teachers.load("stdlib-llama-3m", trainable=True)`` returns a copy to
train (train mode, gradients on); ``teachers.load("stdlib-llama-3m")`` a frozen one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cookbook.data.stdlib import DOMAINS, domain_names, lm_windows, sample_windows
from cookbook.kernels import fused_linear_ce
from cookbook.losses.llm import shift_labels, token_ce
from cookbook.models.lm import low_rank_embedding, tiny_llama
from cookbook.teachers.spec import TeacherSpec
from cookbook.train import train_lm, uniform_sampler

NAME = "stdlib-llama-3m"
HELD_OUT = "web"                       # the domain the student never reads (see the module docstring)
PRETRAIN_DOMAINS = tuple(d for d in DOMAINS if d != HELD_OUT)
SEQ_LEN, BATCH, STEPS, LR, WARMUP, WEIGHT_DECAY = 128, 16, 1200, 3e-3, 100, 0.01
EVAL_LEN, EVAL_WINDOWS = 64, 128       # the notebooks' window length; held-out windows per score


def architecture() -> nn.Module:
    """The untrained student (its embedding is overwritten by the recipe or the stored weights)."""
    return tiny_llama(49_152)


def domain_windows(tokenizer, split: str, seq_len: int, domains) -> Tensor:
    """Every ``seq_len``-token window of the corpus split whose document is in ``domains``."""
    ids, dom = lm_windows(tokenizer, split, seq_len)
    return ids[torch.isin(dom, torch.tensor(domain_names(domains)))]


@torch.no_grad()
def perplexity_on(model: nn.Module, ids: Tensor, batch_size: int = 32) -> float:
    """exp(mean next-token cross-entropy) of ``model`` over windows ids (S, L)."""
    model.eval()
    nll = sum(token_ce(model(ids[s:s + batch_size]).logits, ids[s:s + batch_size]).sum().item()
              for s in range(0, len(ids), batch_size))
    return math.exp(nll / (ids.shape[0] * (ids.shape[1] - 1)))


def held_out_windows(tokenizer, domains, n: int = EVAL_WINDOWS, seed: int = 0, split: str = "test") -> Tensor:
    """A fixed sample of n windows (EVAL_LEN tokens) of ``domains`` from the corpus split."""
    ids, dom = lm_windows(tokenizer, split, EVAL_LEN)
    keep = torch.isin(dom, torch.tensor(domain_names(domains)))
    return sample_windows(ids[keep], dom[keep], min(n, int(keep.sum())), seed)[0]


def stdlib_llama(seed: int = 0, steps: int = STEPS, lr: float = LR) -> tuple[nn.Module, dict]:
    """The recipe: teacher-PCA embedding, then CE on the stdlib train windows outside ``HELD_OUT``."""
    from cookbook.teachers.llm import NAME as TEACHER
    from cookbook.teachers.llm import load_teacher, load_tokenizer

    tokenizer = load_tokenizer()
    train = domain_windows(tokenizer, "train", SEQ_LEN, PRETRAIN_DOMAINS)            # (S, 128)
    seen, unseen = held_out_windows(tokenizer, PRETRAIN_DOMAINS), held_out_windows(tokenizer, [HELD_OUT])
    teacher = load_teacher()
    embedding = low_rank_embedding(teacher.model.embed_tokens.weight, 64)
    teacher_ppl = {"seen": perplexity_on(teacher, seen), "web": perplexity_on(teacher, unseen)}
    del teacher
    model = tiny_llama(49_152, seed=seed, embedding=embedding)
    init_ppl = perplexity_on(model, seen)

    monitor = held_out_windows(tokenizer, PRETRAIN_DOMAINS, 64, split="val")

    def ce(student, rows, step, run):
        if step % 250 == 0 and step:               # progress on validation windows (not used to choose)
            run.log(val_ppl=perplexity_on(student, monitor))
            student.train()
            print(f"step {step}: validation perplexity {run.logs['val_ppl'][-1]:.1f}", flush=True)
        ids = train[rows]
        hidden = student.model(ids).last_hidden_state.flatten(0, 1)                  # (B*L, 64)
        return fused_linear_ce(hidden, student.lm_head.weight, shift_labels(ids))

    run = train_lm(model, ce, uniform_sampler(len(train), BATCH), steps=steps, lr=lr, warmup=WARMUP,
                   weight_decay=WEIGHT_DECAY, seed=seed, progress=True, desc=NAME)
    with torch.no_grad():                      # what is stored is float16: measure that model
        for p in model.parameters():
            p.copy_(p.half().float())
    metrics = {
        "test_ppl": round(perplexity_on(model, seen), 2),
        "test_ppl_web": round(perplexity_on(model, unseen), 2),
        "teacher_test_ppl": round(teacher_ppl["seen"], 2),
        "teacher_test_ppl_web": round(teacher_ppl["web"], 2),
        "init_test_ppl": round(init_ppl, 1),
        "eval": f"{len(seen)} / {len(unseen)} test-split windows of {EVAL_LEN} tokens "
                f"({'+'.join(PRETRAIN_DOMAINS)} / {HELD_OUT}), same windows for the teacher ({TEACHER})",
        "data": f"stdlib corpus 'train' files, domains {list(PRETRAIN_DOMAINS)} ({HELD_OUT!r} held out), "
                f"{len(train)} windows of {SEQ_LEN} tokens; next-token cross-entropy only",
        "init": f"embedding = {TEACHER}'s embedding table on its top 64 principal directions",
        "steps": steps, "batch_windows": BATCH, "tokens": steps * BATCH * SEQ_LEN,
        "epochs": round(steps * BATCH / len(train), 2),
        "optimizer": f"AdamW lr {lr}, warm-up {WARMUP}, cosine, weight decay {WEIGHT_DECAY}, clip 1.0",
        "final_train_loss": round(sum(run.loss[-50:]) / len(run.loss[-50:]), 4),
        "val_ppl_every_250_steps": [round(v, 1) for v in run.logs.get("val_ppl", [])],
        "train_seconds": round(run.seconds, 1),
        "storage": "float16",
    }
    return model, metrics


SPEC = TeacherSpec(
    name=NAME,
    architecture=architecture,
    recipe=stdlib_llama,
    metric="test_ppl",
    description="tiny_llama (4 x 64, 3.4M params, SmolLM2 tokenizer), teacher-PCA embedding, CE on stdlib "
                "code + docs except 'web'; the competent student of notebooks 05a/05b",
    storage_dtype=torch.float16,
    labels="none: next-token cross-entropy on stdlib text (no task labels; the held-out 'web' domain unseen)",
)
