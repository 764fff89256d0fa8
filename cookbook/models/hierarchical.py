"""P10's hierarchical autoregressive transformer: byte encoder per word, word backbone, byte decoder.

Neitemeier et al., "Hierarchical Autoregressive Transformers: Combining Byte- and Word-Level
Processing for Robust, Adaptable Language Models" (ICLR 2025, arXiv 2501.10322). Text is split
into words (a word starts at a whitespace after a non-whitespace, so it carries its leading
space); a small bidirectional encoder reads each word's bytes behind a prepended [W] token and
its output there is the word embedding; a causal backbone runs over word embeddings; a small
causal decoder predicts the bytes of word k+1 (then an end-of-word symbol) from the backbone's
output at word k, fed as its first input. No vocabulary: 256 bytes plus 3 specials.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

BYTE_PAD, BYTE_W, BYTE_EOW = 256, 257, 258  # padding, the encoder's [W] slot, end of word
_WORD = re.compile(r"\s*\S+|\s+$")


def split_words(text: str) -> list[bytes]:
    """Words with their leading whitespace, as UTF-8 bytes; ``b"".join(...)`` gives the text back."""
    return [w.encode("utf-8") for w in _WORD.findall(text)]


def pack_words(words: list[bytes], max_bytes: int) -> Tensor:
    """(N, max_bytes) byte ids, padded with BYTE_PAD; longer words are cut into several words."""
    rows = []
    for w in words:
        for k in range(0, max(len(w), 1), max_bytes):
            piece = list(w[k:k + max_bytes])
            rows.append(piece + [BYTE_PAD] * (max_bytes - len(piece)))
    return torch.tensor(rows, dtype=torch.long)


def _causal(n: int, device) -> Tensor:
    return torch.triu(torch.full((n, n), float("-inf"), device=device), 1)


def _stack(dim: int, layers: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class HierarchicalLM(nn.Module):
    """Byte encoder -> word backbone -> byte decoder (P10); ``forward`` returns the summed NLL.

    ``words``: (B, W, L) byte ids of W consecutive words per row (BYTE_PAD after each word's bytes).
    The loss is the negative log-likelihood, in nats, of every byte of words 2..W and of their
    end-of-word symbols (word 1 is context only), and ``n_bytes`` is how many bytes it covers,
    so ``bits_per_byte(nll, n_bytes)`` scores it against any tokenized model.
    """

    def __init__(self, dim: int = 64, backbone_dim: int = 128, encoder_layers: int = 1,
                 backbone_layers: int = 2, decoder_layers: int = 1, heads: int = 4, max_words: int = 64,
                 max_bytes: int = 16):
        super().__init__()
        self.max_bytes = max_bytes
        self.byte_emb = nn.Embedding(259, dim)
        self.enc_pos = nn.Parameter(torch.zeros(max_bytes + 1, dim))
        self.encoder = _stack(dim, encoder_layers, heads)
        self.up = nn.Linear(dim, backbone_dim)
        self.word_pos = nn.Parameter(torch.zeros(max_words, backbone_dim))
        self.backbone = _stack(backbone_dim, backbone_layers, heads)
        self.down = nn.Linear(backbone_dim, dim)
        self.dec_pos = nn.Parameter(torch.zeros(max_bytes + 2, dim))
        self.decoder = _stack(dim, decoder_layers, heads)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 259)
        for p in (self.enc_pos, self.word_pos, self.dec_pos):
            nn.init.normal_(p, std=0.02)

    def forward(self, words: Tensor) -> tuple[Tensor, int]:
        nll, n_bytes = self.word_nll(words)
        return nll.sum(), n_bytes

    def word_nll(self, words: Tensor) -> tuple[Tensor, int]:
        """(B, W - 1) NLL of each predicted word (its bytes and end-of-word), and the bytes covered."""
        B, W, L = words.shape
        if L != self.max_bytes:
            raise ValueError(f"words must have max_bytes={self.max_bytes} byte slots, got {L}")
        flat = words.reshape(B * W, L)
        pad = flat == BYTE_PAD
        # encoder: [W] + bytes, bidirectional, padding masked -> one vector per word
        x = torch.cat([flat.new_full((B * W, 1), BYTE_W), flat], 1)
        h = self.byte_emb(x) + self.enc_pos[: L + 1]
        h = self.encoder(h, src_key_padding_mask=torch.cat([pad.new_zeros(B * W, 1), pad], 1))
        word_vec = self.up(h[:, 0]).view(B, W, -1) + self.word_pos[:W]            # (B, W, D)
        ctx = self.down(self.backbone(word_vec, mask=_causal(W, words.device)))   # (B, W, d)
        # decoder for word k+1: [context of word k] + its bytes, predicting bytes then EOW
        nxt = words[:, 1:].reshape(B * (W - 1), L)
        lengths = (nxt != BYTE_PAD).sum(1)
        target = torch.cat([nxt, nxt.new_full((len(nxt), 1), BYTE_PAD)], 1)
        target[torch.arange(len(nxt)), lengths] = BYTE_EOW                          # (N, L + 1)
        inp = torch.cat([ctx[:, :-1].reshape(-1, 1, ctx.shape[-1]),
                         self.byte_emb(nxt.clamp(max=BYTE_PAD))], 1) + self.dec_pos[: L + 1]
        out = self.head(self.norm(self.decoder(inp, mask=_causal(L + 1, words.device))))  # (N, L + 1, 259)
        nll = nn.functional.cross_entropy(out.transpose(1, 2), target, ignore_index=BYTE_PAD, reduction="none")
        return nll.sum(1).view(B, W - 1), int(lengths.sum())
