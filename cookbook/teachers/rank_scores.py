r"""Teacher score files for ranking distillation: (query id, document id, score), documented.

The Margin-MSE authors (P61) shipped their teachers' scores for the MS MARCO training triples as
TSV files, so that a student never runs the teacher; users of PyLate, ColBERT and RetroMAE keep
asking for such files. Ours follow the same idea, one row per scored pair, with the teacher's
identity in the header so a file can never be mistaken for another teacher's.

Format ``cookbook-rank-scores-v1``: a gzip'd UTF-8 text file (``.tsv.gz``)::

    #cookbook-rank-scores-v1 {"teacher": "all-MiniLM-L6-v2@<weights sha256[:16]>", "score": "...",
                              "set": "...", ...any other json fields}
    qid<TAB>docid<TAB>score<TAB>label<TAB>source
    json/decoder.py::JSONDecoder.decode<TAB>json/decoder.py::JSONDecoder.decode<TAB>0.712345<TAB>1<TAB>pos
    ...

- ``qid``, ``docid``: stable string ids (no tab or newline); a (qid, docid) pair appears once.
- ``score``: the teacher's raw score of the pair (here: cosine similarity of unit embeddings, in
  [-1, 1]; a cross-encoder would store its logit), finite, written with 6 decimals.
- ``label``: 1 for the judged relevant document, 0 for every other (mined negatives, unjudged).
- ``source``: why the row is there: ``pos`` (the positive), ``bm25`` / ``teacher`` (a hard
  negative mined by that retriever), ``run`` (the teacher's own top-k ranking of a test corpus).

Readable without the cookbook: ``pandas.read_csv(path, sep="\t", skiprows=1)`` (ids may contain "#"). Written with a
fixed gzip timestamp, so the same rows give the same bytes. Build ours with
``python -m cookbook.teachers.rank_scores build`` (~3-5 min on a 2-core CPU).
"""

from __future__ import annotations

import gzip
import io
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

FORMAT = "cookbook-rank-scores-v1"
COLUMNS = ("qid", "docid", "score", "label", "source")
SOURCES = ("pos", "bm25", "teacher", "run")
ASSET_DIR = "ranking"
FILES = {"train": "minilm-stdlib-train.tsv.gz", "test": "minilm-stdlib-test-top20.tsv.gz",
         "faq": "minilm-python-faq-top20.tsv.gz"}


@dataclass
class RankScores:
    """The rows of one score file: ``qid[i], docid[i], score[i], label[i], source[i]`` plus its header."""

    header: dict
    qid: list[str]
    docid: list[str]
    score: Tensor   # (N,) float32
    label: Tensor   # (N,) int64, 1 = relevant
    source: list[str]

    def __len__(self) -> int:
        return len(self.qid)

    @property
    def teacher(self) -> str:
        return self.header["teacher"]

    def run(self) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}``: the rows as a ranking run (ranx / trec_eval style)."""
        out: dict[str, dict[str, float]] = {}
        for q, d, s in zip(self.qid, self.docid, self.score.tolist()):
            out.setdefault(q, {})[d] = s
        return out

    def qrels(self) -> dict[str, dict[str, int]]:
        """``{qid: {docid: 1}}`` for the rows labelled relevant."""
        out: dict[str, dict[str, int]] = {}
        for q, d, y in zip(self.qid, self.docid, self.label.tolist()):
            if y:
                out.setdefault(q, {})[d] = 1
        return out


def _validate(qid, docid, score: Tensor, label: Tensor, source) -> None:
    n = len(qid)
    if not (len(docid) == len(source) == len(score) == len(label) == n):
        raise ValueError(f"rank scores: columns of different lengths {[len(qid), len(docid), len(score), len(label), len(source)]}")
    if n == 0:
        raise ValueError("rank scores: no rows")
    if not torch.isfinite(score).all():
        raise ValueError("rank scores: non-finite score")
    if not ((label == 0) | (label == 1)).all():
        raise ValueError("rank scores: label must be 0 or 1")
    bad = [s for s in set(source) if s not in SOURCES]
    if bad:
        raise ValueError(f"rank scores: unknown source {bad}; allowed {SOURCES}")
    for name, col in (("qid", qid), ("docid", docid)):
        if any(("\t" in x or "\n" in x or not x) for x in col):
            raise ValueError(f"rank scores: a {name} is empty or contains a tab or newline")
    if len(set(zip(qid, docid))) != n:
        raise ValueError("rank scores: a (qid, docid) pair appears twice")


def write_rank_scores(path: str | Path, header: dict, qid: list[str], docid: list[str], score: Tensor,
                      label: Tensor, source: list[str]) -> Path:
    """Write a ``cookbook-rank-scores-v1`` file; ``header`` must name the ``teacher``."""
    if "teacher" not in header:
        raise ValueError("rank scores: the header must name the teacher (name@weights fingerprint)")
    score, label = torch.as_tensor(score, dtype=torch.float32), torch.as_tensor(label, dtype=torch.int64)
    _validate(qid, docid, score, label, source)
    buf = io.StringIO()
    buf.write(f"#{FORMAT} {json.dumps({**header, 'rows': len(qid)}, sort_keys=True)}\n")
    buf.write("\t".join(COLUMNS) + "\n")
    for q, d, s, y, src in zip(qid, docid, score.tolist(), label.tolist(), source):
        buf.write(f"{q}\t{d}\t{s:.6f}\t{y}\t{src}\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return path


def read_rank_scores(path: str | Path, teacher: str | None = None) -> RankScores:
    """Read and check a score file; with ``teacher`` given, refuse a file written by another one."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        first = f.readline().rstrip("\n")
        if not first.startswith(f"#{FORMAT} "):
            raise ValueError(f"{path}: not a {FORMAT} file (first line {first[:60]!r})")
        header = json.loads(first[len(FORMAT) + 2:])
        cols = f.readline().rstrip("\n").split("\t")
        if tuple(cols) != COLUMNS:
            raise ValueError(f"{path}: columns {cols}, expected {list(COLUMNS)}")
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if any(len(r) != len(COLUMNS) for r in rows):
        raise ValueError(f"{path}: a row does not have {len(COLUMNS)} fields")
    if header.get("rows") != len(rows):
        raise ValueError(f"{path}: header says {header.get('rows')} rows, file has {len(rows)} (truncated?)")
    if teacher is not None and header.get("teacher") != teacher:
        raise ValueError(f"{path}: scores of {header.get('teacher')!r}, not of {teacher!r}")
    qid, docid = [r[0] for r in rows], [r[1] for r in rows]
    score = torch.tensor([float(r[2]) for r in rows], dtype=torch.float32)
    label = torch.tensor([int(r[3]) for r in rows], dtype=torch.int64)
    source = [r[4] for r in rows]
    _validate(qid, docid, score, label, source)
    return RankScores(header, qid, docid, score, label, source)


def stdlib_ids(paths: list[str], qualnames: list[str]) -> list[str]:
    """Stable ids of stdlib retrieval pairs: ``json/decoder.py::JSONDecoder.decode`` (query and code share it).

    A qualname defined twice in one file (e.g. in both branches of an ``if``) gets ``#2``, ``#3``...
    in file order, so every id is unique.
    """
    seen: dict[str, int] = {}
    out = []
    for p, q in zip(paths, qualnames):
        key = f"{p}::{q}"
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return out


def committed_scores(name: str) -> RankScores:
    """One of the committed files (``train``, ``test``, ``faq``), checked against assets/MANIFEST."""
    from cookbook import assets

    if name not in FILES:
        raise ValueError(f"unknown score file {name!r}; one of {sorted(FILES)}")
    return read_rank_scores(assets.asset(f"{ASSET_DIR}/{FILES[name]}"))


# ----------------------------------------------------------------------------- build

def _topk_rows(scores: Tensor, ids: list[str], doc_ids: list[str], relevant: Tensor, k: int):
    """The teacher's top ``k`` of each query ("run"), plus the positive ("pos") when it ranks lower,
    so every query has its judged document in the file and metrics count every query."""
    top = scores.topk(k, dim=1)
    rows = []
    for i in range(len(ids)):
        r = int(relevant[i])
        for s, j in zip(top.values[i].tolist(), top.indices[i].tolist()):
            rows.append((ids[i], doc_ids[j], s, int(j == r), "run"))
        if r not in top.indices[i].tolist():
            rows.append((ids[i], doc_ids[r], float(scores[i, r]), 1, "pos"))
    return rows


def build(out_dir: str | Path | None = None, negatives_per_source: int = 4, top_k: int = 20) -> dict[str, Path]:
    """Score the training triples and the two test corpora with MiniLM; write the three files.

    train: for each stdlib train query, its positive, the ``negatives_per_source`` best BM25
    documents that are not the positive, and as many of the teacher's best that BM25 did not pick.
    test / faq: the teacher's top ``top_k`` documents of the whole test corpus per query, plus the
    positive when it ranks lower (exact @10 metrics and Recall@20 for every query).
    """
    from cookbook.assets import register
    from cookbook.config import ASSETS
    from cookbook.data.retrieval import load_python_faq, mine_negatives
    from cookbook.data.stdlib import load_code_retrieval
    from cookbook.models.text import BM25
    from cookbook.teachers.text import load_minilm, teacher_fingerprint

    out_dir = Path(out_dir) if out_dir is not None else ASSETS / ASSET_DIR
    t0 = time.perf_counter()
    teacher = load_minilm()
    fp = teacher_fingerprint(teacher)
    common = {"teacher": fp, "score": "cosine similarity of L2-normalised mean-pooled embeddings (max 256 tokens)",
              "python": platform.python_version()}
    written = {}

    tr = load_code_retrieval("train")
    ids = stdlib_ids(tr.paths, tr.qualnames)
    q, d = _cached_encode(teacher, fp, "train-q", tr.queries), _cached_encode(teacher, fp, "train-d", tr.documents)
    tscores = q @ d.T                                                         # (Q, D) teacher cosines
    bm = BM25(tr.documents).scores(tr.queries)
    n = negatives_per_source
    bm_neg = mine_negatives(bm, tr.relevance, n)
    t_cand = mine_negatives(tscores, tr.relevance, 3 * n)
    rows = []
    for i in range(len(ids)):
        picked = bm_neg[i].tolist()
        t_neg = [j for j in t_cand[i].tolist() if j not in picked][:n]
        for j, src in [(i, "pos")] + [(j, "bm25") for j in picked] + [(j, "teacher") for j in t_neg]:
            rows.append((ids[i], ids[j], float(tscores[i, j]), int(src == "pos"), src))
    written["train"] = _write(out_dir / FILES["train"], {**common, "set": "stdlib docstring->code, train split",
                              "negatives": f"{n} BM25 (bm25s k1=1.2 b=0.75) + {n} teacher, positive excluded"}, rows)

    te = load_code_retrieval("test")
    te_ids = stdlib_ids(te.paths, te.qualnames)
    s = _cached_encode(teacher, fp, "test-q", te.queries) @ _cached_encode(teacher, fp, "test-d", te.documents).T
    written["test"] = _write(out_dir / FILES["test"], {**common, "set": f"stdlib docstring->code, test split, teacher top-{top_k}"},
                             _topk_rows(s, te_ids, te_ids, te.relevance, top_k))

    faq = load_python_faq()
    s = _cached_encode(teacher, fp, "faq-q", faq.queries) @ _cached_encode(teacher, fp, "faq-d", faq.documents).T
    written["faq"] = _write(out_dir / FILES["faq"], {**common, "set": f"Python FAQ question->answer, teacher top-{top_k}"},
                            _topk_rows(s, faq.ids, faq.ids, faq.relevance, top_k))
    for path in written.values():
        if path.resolve().is_relative_to(ASSETS.resolve()):
            register(path)
    print(f"teacher {fp}: wrote {', '.join(str(p) for p in written.values())} in {time.perf_counter() - t0:.0f} s")
    return written


def _cached_encode(teacher, fingerprint: str, name: str, texts: list[str]) -> Tensor:
    """Teacher embeddings, kept under the cache folder (keyed by teacher and texts) so a rebuild is cheap."""
    import hashlib

    from cookbook.config import cache_dir
    from cookbook.teachers.text import teacher_encode

    key = hashlib.sha256("\n\0".join(texts).encode()).hexdigest()[:12]
    path = cache_dir() / f"rank-emb-{fingerprint.replace('@', '-')}-{name}-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)  # a plain tensor: no pickled code
    emb = teacher_encode(teacher, texts, progress=True)
    torch.save(emb, path)
    return emb


def _write(path: Path, header: dict, rows: list[tuple]) -> Path:
    q, d, s, y, src = zip(*rows)
    return write_rank_scores(path, header, list(q), list(d), torch.tensor(s), torch.tensor(y), list(src))


if __name__ == "__main__":
    if sys.argv[1:2] != ["build"]:
        sys.exit("usage: python -m cookbook.teachers.rank_scores build [OUT_DIR]")
    build(sys.argv[2] if len(sys.argv) > 2 else None)
