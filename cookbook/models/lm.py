"""Small causal LMs (notebooks 05a/05b): a Llama-architecture student, its embedding init, and decoding.

The student shares the teacher's tokenizer (SmolLM2, 49,152 tokens), so every distillation loss
compares distributions over the same vocabulary. With a vocabulary that large the output head
dominates the cost of a small model (49,152 x H weights, a (tokens x 49,152) matrix per step), so
the student is narrow (H = 64): a truncated copy of the teacher would keep its 576-wide head, 9x
the cost per step on a CPU. Its embedding can start as the teacher's table projected on its top
principal directions (``low_rank_embedding``); the pre-trained checkpoint built that way is the
registered ``stdlib-llama-3m`` (``cookbook.teachers.lm_student``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def tiny_llama(vocab_size: int = 49_152, hidden: int = 64, layers: int = 4, heads: int = 4,
               intermediate: int = 256, max_len: int = 512, seed: int = 0,
               embedding: Tensor | None = None) -> nn.Module:
    """A Llama-architecture student (RoPE, RMSNorm, SwiGLU, tied embeddings), randomly initialised.

    Defaults: 3.4 M parameters, 3.1 M of them the tied 49,152 x 64 embedding / head.
    ``embedding`` (vocab_size, hidden), e.g. :func:`low_rank_embedding` of a teacher's table,
    replaces the random embedding (and so the tied output head) at init.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=max_len,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         attn_implementation="eager")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if embedding is not None:
        if embedding.shape != (vocab_size, hidden):
            raise ValueError(f"embedding must be (vocab_size, hidden) = {(vocab_size, hidden)}, "
                             f"got {tuple(embedding.shape)}")
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(embedding)
    return model


@torch.no_grad()
def low_rank_embedding(weight: Tensor, rank: int, std: float = 0.02) -> Tensor:
    """A teacher's embedding table (V, H_t) projected on its top ``rank`` principal directions.

    Rows are centred (the mean row adds the same logit to every token of a tied head, so it carries
    nothing), projected on the top right-singular vectors and rescaled to entry std ``std`` (the
    usual init scale). Tokens the teacher places close together start close together in the student.
    """
    if not 1 <= rank <= min(weight.shape):
        raise ValueError(f"rank must be in [1, {min(weight.shape)}], got {rank}")
    centred = weight.float() - weight.float().mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)                # vh (H_t, H_t)
    low = centred @ vh[:rank].T                                                # (V, rank)
    return low * (std / low.std())


@torch.no_grad()
def continue_ids(model: nn.Module, ids: Tensor, n_new: int, *, greedy: bool = True,
                 temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Append ``n_new`` tokens to ids (B, L0) -> (B, L0 + n_new): greedy, or sampled at ``temperature``.

    Uses the model's key/value cache (one new position per forward) when it has one, so a
    continuation costs n_new small forwards instead of n_new full ones.
    """
    if n_new < 0 or temperature <= 0:
        raise ValueError(f"need n_new >= 0 and temperature > 0, got {n_new}, {temperature}")
    was_training = model.training
    model.eval()
    out = model(ids, use_cache=True)
    for i in range(n_new):
        last = out.logits[:, -1].float()                                         # (B, V)
        nxt = last.argmax(-1, keepdim=True) if greedy else torch.multinomial(
            (last / temperature).softmax(-1), 1, generator=generator)            # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
        if i + 1 < n_new:
            cache = getattr(out, "cache", None)            # transformers >= 5 names it cache
            out = model(nxt, cache=cache, use_cache=True) if cache is not None else model(ids)
    model.train(was_training)
    return ids


def first_line(text: str) -> str:
    """The text up to its first newline, without surrounding whitespace."""
    return text.split("\n", 1)[0].strip()


def complete_lines(model: nn.Module, prompts: Tensor, tokenizer, max_new_tokens: int = 24) -> list[str]:
    """Greedy completion of the line each prompt (B, L0) stops in: decode, cut at the first newline.

    ``tokenizer`` is the model's (anything with ``decode(ids)``). Pairs with
    ``cookbook.data.stdlib.line_completion_set`` (held-out code lines) and the text metrics of
    ``cookbook.metrics`` (exact match, ROUGE-L).
    """
    out = continue_ids(model, prompts, max_new_tokens)[:, prompts.shape[1]:]     # (B, max_new)
    return [first_line(tokenizer.decode(row)) for row in out.tolist()]
