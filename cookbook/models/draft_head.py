r"""Feature-level draft heads (EAGLE; FSPAD): draft from the target's own last hidden states.

A token-level draft (a small LM) predicts tokens from tokens. A feature-level head predicts the
target's *next last-layer feature* $f_{t+1}$ from its features $f_{\le t}$ and the tokens
$x_{\le t+1}$ already chosen, and reads the token off the target's own (frozen) LM head:
$x_{t+2} \sim \mathrm{softmax}(W_{head}\, \hat f_{t+1})$. Features are more regular than tokens
(Li et al., EAGLE, ICML 2024, arXiv 2401.15077).

**FSPAD** (Gui et al., 2024, arXiv 2408.15562; official code ``github.com/Luc4Gui/FSPAD``,
``eagle/model/cnets_fspad.py``) changes two things, both here:

- *feature sampling*: the fused input $h = W_{fc}[e(x_{t+1}); f_t]$ goes through a gated MLP whose
  gate reads the token embedding, $h \leftarrow h + W_d(\sigma(W_g e) \odot W_u \mathrm{norm}(h))$
  (``Efc`` / ``EMLP``): the token selects which parts of the uncertain feature to pass on;
- *partial alignment*: the decoder layer's MLP outputs $2H$ (residual duplicated), split into
  ``predict`` (first half: through the LM head, distilled to the target's distribution) and
  ``regress`` (second half: regressed on $f_{t+1}$ and fed back as the next input feature), so the
  feature loss no longer fights the logit loss. ``partial=False`` is the EAGLE-style head
  (one output for both).

The head reuses the target's embedding and LM head (frozen, not copied). One decoder layer, causal
self-attention without positional encoding (the official layer uses RoPE), recomputed over the
whole sequence at each call (no KV cache of its own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureDraftHead(nn.Module):
    """EAGLE / FSPAD draft head over a frozen target's embedding (V, H) and LM head (V, H).

    ``forward(features (B, L, H), next_ids (B, L))`` -> (predict, regress), each (B, L, H): at
    position i it reads the target feature f_i and the embedding of token x_{i+1} and predicts
    f_{i+1}. ``logits(predict)`` -> (..., V) through the target's head.
    """

    def __init__(self, embed_weight: Tensor, head_weight: Tensor, *, heads: int = 4,
                 intermediate: int | None = None, partial: bool = True, seed: int = 0):
        super().__init__()
        if embed_weight.dim() != 2 or embed_weight.shape != head_weight.shape:
            raise ValueError(f"embedding and LM head must both be (V, H), got {tuple(embed_weight.shape)} "
                             f"and {tuple(head_weight.shape)}")
        hidden = embed_weight.shape[1]
        if hidden % heads:
            raise ValueError(f"heads ({heads}) must divide the hidden size ({hidden})")
        torch.manual_seed(seed)
        inter = intermediate or 2 * hidden
        self.embed_weight, self.head_weight = embed_weight.detach(), head_weight.detach()   # frozen, not copied
        self.hidden, self.heads, self.partial = hidden, heads, partial
        self.fc = nn.Linear(2 * hidden, hidden)
        self.sample_norm = nn.RMSNorm(hidden, eps=1e-6)
        self.sample_gate = nn.Linear(hidden, inter, bias=False)      # reads the token embedding
        self.sample_up = nn.Linear(hidden, inter, bias=False)        # reads the fused feature
        self.sample_down = nn.Linear(inter, hidden, bias=False)
        self.attn_norm = nn.RMSNorm(hidden, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.out = nn.Linear(hidden, hidden, bias=False)
        self.mlp_norm = nn.RMSNorm(hidden, eps=1e-6)
        self.gate = nn.Linear(hidden, inter, bias=False)
        self.up = nn.Linear(hidden, inter, bias=False)
        self.down = nn.Linear(inter, (2 if partial else 1) * hidden, bias=False)

    def forward(self, features: Tensor, next_ids: Tensor) -> tuple[Tensor, Tensor]:
        if features.dim() != 3 or features.shape[-1] != self.hidden or next_ids.shape != features.shape[:2]:
            raise ValueError(f"need features (B, L, {self.hidden}) and next_ids (B, L), got "
                             f"{tuple(features.shape)} and {tuple(next_ids.shape)}")
        e = F.embedding(next_ids, self.embed_weight).to(features.dtype)                     # (B, L, H)
        h = self.fc(torch.cat([e, features], dim=-1))
        h = h + self.sample_down(F.silu(self.sample_gate(e)) * self.sample_up(self.sample_norm(h)))
        b, n, _ = h.shape
        q, k, v = self.qkv(self.attn_norm(h)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        h = h + self.out(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, -1))
        x = self.mlp_norm(h)
        y = self.down(F.silu(self.gate(x)) * self.up(x))
        if not self.partial:
            out = h + y
            return out, out
        out = torch.cat([h, h], dim=-1) + y                                                 # (B, L, 2H)
        return out[..., :self.hidden], out[..., self.hidden:]

    def logits(self, predict: Tensor) -> Tensor:
        return predict @ self.head_weight.to(predict.dtype).T
