"""Retrieval sets for notebook 04: the Python FAQ (question -> answer) and hard-negative mining.

**Python FAQ** (out-of-domain test): the 8 FAQ pages of the Python 3.11 documentation, as shipped
in their reST sources by Debian's ``python3.11-doc`` (``make data``). Every section heading that
ends in "?" is a query; the text under it, up to the next heading of any level, is its one
relevant document; the corpus is all answers. Measured: 174 pairs (notes/data.md counted 172
with a cruder parser). Resolution order:
``$COOKBOOK_DATA/python_faq.json.gz`` -> Debian's folder -> the committed copy
``assets/data/python_faq.json.gz`` (all 174 pairs parsed from the Debian files, 0.1 MB; PSF
licence). The Debian files are preferred over the committed copy so that ``build`` can
reproduce it; both give the same pairs.

**Hard negatives**: :func:`mine_negatives` takes any (Q, D) score matrix (BM25's, a teacher's)
and returns each query's top-scoring documents that are not its positive, the way the
Margin-MSE authors (P61) mined BM25 negatives for their training triples.

The text-to-code set itself (docstring summary -> function code) is
``cookbook.data.stdlib.load_code_retrieval``.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from cookbook.checks import check_int, check_tensor
from cookbook.config import ASSETS
from cookbook.data._common import Found, committed, find_user_file, not_found

FAQ_ASSET = "data/python_faq.json.gz"
FAQ_DEBIAN = Path("/usr/share/doc/python3.11/html/_sources/faq")
FAQ_PAGES = ("general", "programming", "design", "library", "extending", "windows", "gui", "installed")
_UNDERLINE = re.compile(r"^([=\-~^*#+\"'`])\1+\s*$")


@dataclass
class QueryDocSet:
    """Queries, documents and one relevant document per query: ``relevance[i]`` answers query i.

    ids name queries and documents stably across machines ("general#what-is-python").
    """

    name: str
    queries: list[str]
    documents: list[str]
    relevance: torch.Tensor
    ids: list[str]
    found: Found

    @property
    def source(self) -> str:
        return self.found.source

    def __len__(self) -> int:
        return len(self.queries)

    def __repr__(self) -> str:
        return f"QueryDocSet({self.name!r}, pairs={len(self)}, source={self.found})"


def parse_faq_page(text: str, page: str) -> list[tuple[str, str, str]]:
    """(id, question, answer) for every heading ending in "?" of one reST FAQ page.

    A heading is a non-empty line followed by an underline of one punctuation character at least
    as long (reST); an overline above it is allowed. The answer is the text up to the next heading,
    whitespace-stripped; an empty answer is skipped.
    """
    lines = text.split("\n")
    heads = [i for i in range(len(lines) - 1)
             if lines[i].strip() and not _UNDERLINE.match(lines[i])
             and _UNDERLINE.match(lines[i + 1]) and len(lines[i + 1].rstrip()) >= len(lines[i].rstrip())]
    out = []
    for n, i in enumerate(heads):
        title = lines[i].strip()
        if not title.endswith("?"):
            continue
        end = heads[n + 1] if n + 1 < len(heads) else len(lines)
        if n + 1 < len(heads) and end >= 1 and _UNDERLINE.match(lines[end - 1]):
            end -= 1  # the next heading's overline
        body = "\n".join(lines[i + 2:end]).strip()
        if body:
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            out.append((f"{page}#{slug}", title, body))
    return out


def build_python_faq(folder: str | Path = FAQ_DEBIAN) -> list[tuple[str, str, str]]:
    """(id, question, answer) of every FAQ page under ``folder`` (Debian's reST sources)."""
    folder = Path(folder)
    rows, seen = [], set()
    for page in FAQ_PAGES:
        path = folder / f"{page}.rst.txt"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: install Debian's python3.11-doc (make data)")
        for row in parse_faq_page(path.read_text(encoding="utf-8"), page):
            if row[0] not in seen:  # two identical headings on one page keep the first
                seen.add(row[0])
                rows.append(row)
    return rows


def write_faq(rows: list[tuple[str, str, str]], out: str | Path) -> Path:
    """Write pairs as gzip'd json with a fixed timestamp (byte-reproducible)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"format": "cookbook-faq-v1", "source": "Debian python3.11-doc, _sources/faq/*.rst.txt",
                          "licence": "PSF", "pairs": rows}, ensure_ascii=False, indent=0).encode("utf-8")
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    return out


def locate_python_faq() -> Found:
    """Where the FAQ pairs come from: COOKBOOK_DATA, Debian's folder, or the committed copy."""
    searched: list[str] = []
    user = find_user_file("python_faq.json.gz", searched)
    if user is not None:
        return user
    searched.append(f"{FAQ_DEBIAN} (debian python3.11-doc)")
    if (FAQ_DEBIAN / "general.rst.txt").exists():
        return Found("debian", FAQ_DEBIAN)
    searched.append(f"{ASSETS / FAQ_ASSET} (assets)")
    path = committed(FAQ_ASSET)
    if path is not None:
        return Found("assets", path)
    raise not_found("Python FAQ", searched, "apt-get install python3.11-doc (make data), or restore assets/")


def load_python_faq() -> QueryDocSet:
    """The Python FAQ as a retrieval set: 174 questions, 174 answers, answer i answers question i."""
    found = locate_python_faq()
    if found.source == "debian":
        rows = build_python_faq(found.path)
    else:
        with gzip.open(found.path, "rt", encoding="utf-8") as f:
            rows = [tuple(r) for r in json.load(f)["pairs"]]
    return QueryDocSet("python-faq", [r[1] for r in rows], [r[2] for r in rows], torch.arange(len(rows)),
                       [r[0] for r in rows], found)


def mine_negatives(scores: torch.Tensor, positives: torch.Tensor, k: int,
                   skip: int = 0) -> torch.Tensor:
    """Each query's ``k`` highest-scoring documents other than its positive: (Q, k) int64.

    scores: (Q, D) from any retriever (BM25, a teacher); positives: (Q,) int64 document index of
    each query's relevant document. ``skip`` drops the first ``skip`` non-positive documents (the
    highest-ranked "negatives" are the likeliest false negatives). Ties break by lower index.
    """
    check_tensor("scores", scores, ndim=2)
    check_tensor("positives", positives, ndim=1)
    k, skip = check_int("k", k, 1), check_int("skip", skip, 0)
    Q, D = scores.shape
    if len(positives) != Q:
        raise ValueError(f"positives has {len(positives)} entries for {Q} queries")
    if k + skip > D - 1:
        raise ValueError(f"k + skip = {k + skip} negatives asked for, but only {D - 1} documents are not the positive")
    masked = scores.float().clone()
    masked[torch.arange(Q), positives] = float("-inf")
    order = torch.sort(masked, dim=1, descending=True, stable=True).indices   # (Q, D)
    return order[:, skip:skip + k].contiguous()


if __name__ == "__main__":  # python -m cookbook.data.retrieval build: re-parse Debian's FAQ into assets/
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m cookbook.data.retrieval build")
    from cookbook import assets

    path = write_faq(build_python_faq(), ASSETS / FAQ_ASSET)
    print(f"wrote {path} ({path.stat().st_size:,} bytes), sha256 {assets.register(path)[:16]}...")
