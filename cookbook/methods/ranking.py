"""Ranking distillation runs (notebook 04): training lists from a teacher score file, one loss
interface for every method, evaluation and query latency.

A training example is a query, its positive and M mined negatives with the teacher's score of each
(``cookbook.teachers.rank_scores``, format ``cookbook-rank-scores-v1``). Every step draws K of the
M negatives per query (seeded), so every method sees the same documents at the same cost; only
the loss differs. Training goes through ``cookbook.train.fit`` (the one loop), evaluation through
``cookbook.metrics.ranking_metrics`` (ranx).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookbook.checks import check_choice, check_int
from cookbook.losses.ranking import (
    contrastive_loss,
    dear_loss,
    margin_mse_loss,
    multi_exit_loss,
    pld_ranking_loss,
    score_kl_loss,
)
from cookbook.metrics import ranking_metrics
from cookbook.train import History, fit

METHODS = ("contrastive", "list_ce", "margin_mse", "kl", "dear", "pld", "multi_exit")


@dataclass
class RankingLists:
    """Tokenised training lists: query i's candidates are ``[positive[i], *negatives[i]]``.

    q_ids, q_mask: (N, Lq) query tokens; d_ids, d_mask: (D, Ld) the corpus' tokens;
    positive: (N,) int64 corpus row; negatives: (N, M) int64; teacher: (N, 1+M) teacher scores in
    the same order (positive first).
    """

    q_ids: Tensor
    q_mask: Tensor
    d_ids: Tensor
    d_mask: Tensor
    positive: Tensor
    negatives: Tensor
    teacher: Tensor

    def __len__(self) -> int:
        return len(self.positive)

    def subset(self, rows: Tensor) -> RankingLists:
        """The lists of queries ``rows`` (the corpus is kept whole)."""
        return RankingLists(self.q_ids[rows], self.q_mask[rows], self.d_ids, self.d_mask, self.positive[rows],
                            self.negatives[rows], self.teacher[rows])


def lists_from_scores(scores, query_ids: list[str], doc_ids: list[str], q_tok: tuple[Tensor, Tensor],
                      d_tok: tuple[Tensor, Tensor], negatives: int) -> RankingLists:
    """Build :class:`RankingLists` from a score file's rows (``RankScores``) and tokenised texts.

    Every query of ``query_ids`` must have exactly one ``label == 1`` row and at least
    ``negatives`` others; the first ``negatives`` rows in file order are used.
    """
    check_int("negatives", negatives, 1)
    q_row = {q: i for i, q in enumerate(query_ids)}
    d_row = {d: j for j, d in enumerate(doc_ids)}
    pos: dict[int, tuple[int, float]] = {}
    neg: dict[int, list[tuple[int, float]]] = {}
    for q, d, s, y in zip(scores.qid, scores.docid, scores.score.tolist(), scores.label.tolist()):
        if q not in q_row:
            continue
        if d not in d_row:
            raise ValueError(f"score file names document {d!r}, which is not in the corpus")
        if y:
            pos[q_row[q]] = (d_row[d], s)
        else:
            neg.setdefault(q_row[q], []).append((d_row[d], s))
    missing = [query_ids[i] for i in range(len(query_ids)) if i not in pos or len(neg.get(i, [])) < negatives]
    if missing:
        raise ValueError(f"{len(missing)} queries lack a positive or {negatives} negatives in the score file "
                         f"(first: {missing[0]!r}); was it built for this Python's stdlib?")
    n = len(query_ids)
    positive = torch.tensor([pos[i][0] for i in range(n)])
    negs = torch.tensor([[j for j, _ in neg[i][:negatives]] for i in range(n)])
    teacher = torch.tensor([[pos[i][1]] + [s for _, s in neg[i][:negatives]] for i in range(n)])
    return RankingLists(*q_tok, *d_tok, positive, negs, teacher)


def _trim(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop padding columns no row of the batch uses (the batch's longest text sets the length)."""
    n = int(mask.sum(1).max())
    return ids[:, :n], mask[:, :n]


def make_loss(method: str, lists: RankingLists, *, k: int, scale: float = 20.0, seed: int = 0,
              exit_layers: tuple[int, ...] | None = None, num_layers: int | None = None,
              **loss_kwargs) -> Callable[[nn.Module, Tensor], Tensor]:
    """``loss_fn(model, rows)`` for ``fit``: draw K negatives per query, score, apply ``method``.

    method: "contrastive" (labels only: in-batch softmax CE over every document of the batch),
    "list_ce" (labels only on the same 1+K candidates the distillation losses see), "margin_mse", "kl", "dear", "pld" (the teacher's scores of the same candidates), or
    "multi_exit" (the contrastive loss at every exit of ``exit_layers``, depth-weighted, P21).
    Scores are ``scale`` x cosine for the student and the teacher alike (scale = 1 / temperature).
    """
    check_choice("method", method, METHODS)
    check_int("k", k, 1)
    if k > lists.negatives.shape[1]:
        raise ValueError(f"k = {k} negatives per query, but the lists hold {lists.negatives.shape[1]}")
    gen = torch.Generator().manual_seed(seed)
    distill = {"margin_mse": margin_mse_loss, "kl": score_kl_loss, "dear": dear_loss, "pld": pld_ranking_loss}

    def loss_fn(model: nn.Module, rows: Tensor) -> Tensor:
        rows = rows.cpu()
        B, M = len(rows), lists.negatives.shape[1]
        pick = torch.rand(B, M, generator=gen).argsort(1)[:, :k]                       # (B, K) which negatives
        cand = torch.cat([lists.positive[rows, None], lists.negatives[rows].gather(1, pick)], 1)   # (B, 1+K)
        dev = next(model.parameters()).device
        q_ids, q_mask = _trim(lists.q_ids[rows], lists.q_mask[rows])
        d_ids, d_mask = _trim(lists.d_ids[cand.reshape(-1)], lists.d_mask[cand.reshape(-1)])
        if method == "multi_exit":
            qs = model.exits(q_ids.to(dev), q_mask.to(dev))
            ds = model.exits(d_ids.to(dev), d_mask.to(dev))
            targets = torch.arange(B, device=dev) * (1 + k)                                 # each positive's row
            losses = [contrastive_loss(qs[layer - 1], ds[layer - 1], targets, scale=scale) for layer in exit_layers]
            return multi_exit_loss(losses, exit_layers, num_layers or model.num_layers)
        q = model(q_ids.to(dev), q_mask.to(dev))                                           # (B, E)
        d = model(d_ids.to(dev), d_mask.to(dev))                                           # (B(1+K), E)
        if method == "contrastive":
            return contrastive_loss(q, d, torch.arange(B, device=dev) * (1 + k), scale=scale)
        s = scale * (q.unsqueeze(1) * d.view(B, 1 + k, -1)).sum(-1)                        # (B, 1+K)
        if method == "list_ce":
            return F.cross_entropy(s, torch.zeros(B, dtype=torch.long, device=dev))
        t = scale * torch.cat([lists.teacher[rows, :1], lists.teacher[rows, 1:].gather(1, pick)], 1).to(dev)
        return distill[method](s, t, **loss_kwargs)

    return loss_fn


def train_ranker(model: nn.Module, method: str, lists: RankingLists, *, epochs: int, lr: float, batch_size: int,
                 k: int, seed: int, weight_decay: float = 0.01, progress: bool | None = None,
                 **loss_kwargs) -> History:
    """Train ``model`` with ``method`` (see :func:`make_loss`) through ``cookbook.train.fit``."""
    loss_fn = make_loss(method, lists, k=k, seed=seed, **loss_kwargs)
    return fit(model, loss_fn, (torch.arange(len(lists)),), epochs=epochs, lr=lr, batch_size=batch_size,
               weight_decay=weight_decay, seed=seed, progress=progress, desc=method, device=torch.device("cpu"))


@torch.no_grad()
def _embed_exits(model: nn.Module, ids: Tensor, mask: Tensor, upto: int, batch_size: int = 256) -> list[Tensor]:
    model.eval()
    parts = [model.exits(ids[i:i + batch_size], mask[i:i + batch_size], upto=upto) for i in range(0, len(ids), batch_size)]
    return [torch.cat([p[e] for p in parts]) for e in range(upto)]


def evaluate_ranker(model: nn.Module, q_tok: tuple[Tensor, Tensor], d_tok: tuple[Tensor, Tensor],
                    relevant: Tensor, *, exits: tuple[int | None, ...] = (None,),
                    metrics: tuple[str, ...] = ("mrr@10", "ndcg@10", "recall@10")) -> dict[int | None, dict[str, float]]:
    """Rank the whole corpus for every query with the bi-encoder ``model`` at each exit (None: the
    last layer); one forward pass serves every exit. Returns {exit: {metric: value}} (ranx)."""
    top = max(model.num_layers if e is None else e for e in exits)
    q = _embed_exits(model, *q_tok, upto=top)
    d = _embed_exits(model, *d_tok, upto=top)
    out = {}
    for e in exits:
        layer = (model.num_layers if e is None else e) - 1
        out[e] = ranking_metrics(q[layer] @ d[layer].T, relevant, metrics)
    return out


def queries_per_second(search: Callable[[int], object], n: int, warmup: int = 3) -> float:
    """Single-query throughput: ``search(i)`` answers query i alone; n timed calls after ``warmup``."""
    check_int("n", n, 1)
    for i in range(min(warmup, n)):
        search(i)
    start = time.perf_counter()
    for i in range(n):
        search(i)
    return n / (time.perf_counter() - start)
