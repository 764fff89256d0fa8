"""Small text encoders for retrieval (notebook 04): a multi-exit bi-encoder student and BM25.

``TextEncoder`` is a tiny transformer (default 2 layers x 128, 4 heads) on MiniLM's WordPiece
vocabulary: token + position embeddings, pre-norm encoder layers, mean pooling over real tokens,
one linear projection head per exit, L2-normalised output. Every layer can be an exit
(ModularStarEncoder, P21, puts heads at layers 4/9/18/27/36 of 36); ``forward(..., exit=l)`` stops
after layer l, so an early exit is also cheaper to run.

``BM25`` wraps the ``bm25s`` library (Lucene's BM25 variant) with a code-aware pre-tokenizer
(snake_case and camelCase split into words), the classical baseline of every ranking paper.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookbook.checks import check_int, check_tensor


class TextEncoder(nn.Module):
    """Bi-encoder with an exit after every layer: ``model(ids, mask, exit=l)`` -> (B, dim) unit vectors.

    vocab_size: tokenizer vocabulary (MiniLM: 30,522); dim: width; layers: depth; heads: attention
    heads; max_len: longest input (positions); out_dim: projection size (default ``dim``).
    ``init_embeddings`` (V, E) optionally seeds the token table (e.g. a PCA of a teacher's table,
    projected to ``dim``); ``exit=None`` means the last layer. Residual branches are zero-initialised
    and square heads start at the identity, so the untrained model is a bag of token embeddings.
    """

    def __init__(self, vocab_size: int, *, dim: int = 128, layers: int = 2, heads: int = 4, max_len: int = 256,
                 out_dim: int | None = None, dropout: float = 0.1, init_embeddings: Tensor | None = None):
        super().__init__()
        check_int("layers", layers, 1)
        self.tok = nn.Embedding(vocab_size, dim, padding_idx=0)
        if init_embeddings is not None:
            if tuple(init_embeddings.shape) != (vocab_size, dim):
                raise ValueError(f"init_embeddings must be ({vocab_size}, {dim}), got {tuple(init_embeddings.shape)}")
            with torch.no_grad():
                self.tok.weight.copy_(init_embeddings)
        self.pos = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu",
                                                               batch_first=True, norm_first=True)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, out_dim or dim) for _ in range(layers))
        self.max_len = max_len
        # Residual branches start at zero and square heads at the identity: the untrained encoder is
        # the mean of its token embeddings (a bag of words), which training then refines. Without
        # this, random layers scramble a teacher-seeded embedding table in the first steps.
        for block in self.blocks:
            for lin in (block.self_attn.out_proj, block.linear2):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        for head in self.heads:
            if head.in_features == head.out_features:
                nn.init.eye_(head.weight)
                nn.init.zeros_(head.bias)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def _check(self, ids: Tensor, mask: Tensor) -> None:
        check_tensor("ids", ids, ndim=2)
        check_tensor("mask", mask, ndim=2)
        if ids.shape != mask.shape:
            raise ValueError(f"ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must have the same shape")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"inputs of {ids.shape[1]} tokens exceed max_len={self.max_len}")

    def _pool(self, h: Tensor, mask: Tensor, layer: int) -> Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)                                   # (B, L, 1)
        pooled = (self.norm(h) * m).sum(1) / m.sum(1).clamp(min=1.0)         # (B, dim) mean over real tokens
        return F.normalize(self.heads[layer](pooled), dim=-1)

    def exits(self, ids: Tensor, mask: Tensor, upto: int | None = None) -> list[Tensor]:
        """Embeddings (B, out_dim) at every exit 1..``upto`` (default all), one forward pass."""
        self._check(ids, mask)
        upto = self.num_layers if upto is None else check_int("exit", upto, 1)
        if upto > self.num_layers:
            raise ValueError(f"exit {upto} > number of layers {self.num_layers}")
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))  # (B, L, dim)
        pad = ~mask.bool()
        out = []
        for layer in range(upto):
            h = self.blocks[layer](h, src_key_padding_mask=pad)
            out.append(self._pool(h, mask, layer))
        return out

    def forward(self, ids: Tensor, mask: Tensor, exit: int | None = None) -> Tensor:
        return self.exits(ids, mask, upto=exit)[-1]


def pca_embeddings(weight: Tensor, dim: int) -> Tensor:
    """A (V, E) embedding table projected onto its top ``dim`` principal directions: (V, dim).

    Scaled to unit standard deviation, the scale of ``nn.Embedding``'s own N(0, 1) init, so that
    AdamW's first steps (about ``lr`` per entry) refine the geometry instead of erasing it. A cheap
    way to give a from-scratch student the teacher's token geometry (DistilBERT-style init, smaller).
    """
    check_tensor("weight", weight, ndim=2)
    if not 1 <= dim <= min(weight.shape):
        raise ValueError(f"dim must be in [1, {min(weight.shape)}], got {dim}")
    x = weight.float() - weight.float().mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)                       # v: (E, E)
    proj = x @ v[:dim].T                                                     # (V, dim)
    return proj / proj.std()


@torch.no_grad()
def encode(model: nn.Module, ids: Tensor, mask: Tensor, *, exit: int | None = None,
           batch_size: int = 256) -> Tensor:
    """Embeddings of all rows of ``ids`` (N, L) in eval mode, in batches: (N, out_dim)."""
    model.eval()
    dev = next(model.parameters()).device
    out = [model(ids[i:i + batch_size].to(dev), mask[i:i + batch_size].to(dev), exit=exit).cpu()
           for i in range(0, len(ids), batch_size)]
    return torch.cat(out)


def tokenize(tokenizer, texts: list[str], max_len: int) -> tuple[Tensor, Tensor]:
    """Token ids and attention mask (N, L) int64, padded to the longest text (<= ``max_len``)."""
    if not texts:
        raise ValueError("tokenize: no texts")
    enc = tokenizer(list(texts), max_length=max_len, truncation=True, padding="longest", return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


# ----------------------------------------------------------------------------- BM25

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def code_words(text: str) -> str:
    """Lower-cased words with identifiers split: ``getValue_from_dict`` -> ``get value from dict``."""
    return _CAMEL.sub(" ", re.sub(r"[_\W]+", " ", text)).lower()


class BM25:
    """BM25 over a fixed corpus (``bm25s``, Lucene scoring): ``BM25(docs, k1, b).scores(queries)`` -> (Q, D).

    k1, b: the usual term-saturation and length-normalisation knobs (Robertson et al.; Lucene's
    defaults 1.2 / 0.75). English stop words are dropped; identifiers are split by ``code_words``.
    """

    def __init__(self, documents: list[str], *, k1: float = 1.2, b: float = 0.75):
        import bm25s

        if not documents:
            raise ValueError("BM25 needs at least one document")
        self._bm25s = bm25s
        self.num_docs = len(documents)
        self.index = bm25s.BM25(k1=k1, b=b)
        self.index.index(bm25s.tokenize([code_words(d) for d in documents], stopwords="en", show_progress=False),
                         show_progress=False)

    def scores(self, queries: list[str]) -> Tensor:
        """(Q, D) float32 BM25 scores of every document for every query."""
        tokens = self._bm25s.tokenize([code_words(q) for q in queries], stopwords="en", show_progress=False,
                                      return_ids=False)
        return torch.stack([torch.from_numpy(self.index.get_scores(t)).float() for t in tokens])
