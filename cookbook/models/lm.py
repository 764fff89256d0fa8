"""Small causal LMs (notebook 05): a Llama-architecture student and a plain continuation loop.

The student shares the teacher's tokenizer (SmolLM2, 49,152 tokens), so every distillation loss
compares distributions over the same vocabulary. With a vocabulary that large the output head
dominates the cost of a small model (49,152 x H weights, a (tokens x 49,152) matrix per step), so
the student is narrow (H = 64) and trained from scratch: a truncated copy of the teacher would keep
its 576-wide head, 9x the cost per step on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
