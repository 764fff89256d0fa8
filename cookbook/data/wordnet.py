"""The WordNet 3.0 noun graph: a real, Cora-like node-classification graph with text features.

Nodes are the 82,115 noun synsets of WordNet 3.0 (``data.noun``). The default edges are the
hypernym links (``@`` and ``@i``: "a dog is a canine", "Paris is an instance of city"), made
undirected: 84,427 edges (no pair repeats), one connected component. Other noun-noun pointer
types can be added with ``edge_types`` (undirected edges in brackets): "meronym" (part, member or
substance of; 22,187), "domain" (topic, region or usage; 6,508), "derivation" (derivationally
related nouns; 1,347) and "antonym" (975); "all" five give 115,310 edges. Labels are the 26 lexicographer files (``noun.artifact``, ``noun.person``,
...); node features come from the gloss (definition plus example sentences): a bag of words over
the 2,000 most frequent non-stop-words (scikit-learn's English stop list), ~4 non-zeros per node;
3,377 nodes (4.1%) have none.

Licence: WordNet 3.0 licence (Princeton University; permissive, BSD-like: use, copy, modify and
distribute for any purpose with the copyright notice kept). "WordNet 3.0 Copyright 2006 by
Princeton University. All rights reserved." The stop-word list is scikit-learn's (BSD-3-Clause).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from cookbook.checks import check_choice
from cookbook.config import ASSETS, cache_dir
from cookbook.data._common import (
    Found,
    committed,
    file_digest,
    find_user_file,
    not_found,
    pack_strings,
    read_npz,
    unit_hash,
    unpack_strings,
    user_data,
    write_npz,
)

ASSET = "data/wordnet_nouns.npz"
SYSTEM_DIRS = [Path("/usr/share/wordnet")]  # Debian package `wordnet-base`
NUM_FEATURES = 2000
FEATURES = ("tfidf", "bow")
# Noun -> noun pointer symbols kept per edge type. Reverse pointers (hyponym ~, holonym #,
# domain member -) are left out: they repeat the same links the other way round.
EDGE_TYPES = {
    "hypernym": ("@", "@i"),
    "meronym": ("%m", "%s", "%p"),
    "domain": (";c", ";r", ";u"),
    "derivation": ("+",),
    "antonym": ("!",),
}
EDGE_TYPE_NAMES = tuple(EDGE_TYPES)
_SYMBOL_TYPE = {sym: i for i, syms in enumerate(EDGE_TYPES.values()) for sym in syms}

# Lexicographer files 03..28 (lexnames(5WN)); label = file number - 3.
CLASS_NAMES = [
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body",
    "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food",
    "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
]
_FIRST_NOUN_LEXFILE = 3

# scikit-learn's ENGLISH_STOP_WORDS (318 words, BSD-3-Clause), copied so the graph extra is not needed.
STOP_WORDS = frozenset("""
    a about above across after afterwards again against all almost alone along already also although
    always am among amongst amoungst amount an and another any anyhow anyone anything anyway
    anywhere are around as at back be became because become becomes becoming been before beforehand
    behind being below beside besides between beyond bill both bottom but by call can cannot cant co
    con could couldnt cry de describe detail do done down due during each eg eight either eleven
    else elsewhere empty enough etc even ever every everyone everything everywhere except few
    fifteen fifty fill find fire first five for former formerly forty found four from front full
    further get give go had has hasnt have he hence her here hereafter hereby herein hereupon hers
    herself him himself his how however hundred i ie if in inc indeed interest into is it its itself
    keep last latter latterly least less ltd made many may me meanwhile might mill mine more
    moreover most mostly move much must my myself name namely neither never nevertheless next nine
    no nobody none noone nor not nothing now nowhere of off often on once one only onto or other
    others otherwise our ours ourselves out over own part per perhaps please put rather re same see
    seem seemed seeming seems serious several she should show side since sincere six sixty so some
    somehow someone something sometime sometimes somewhere still such system take ten than that the
    their them themselves then thence there thereafter thereby therefore therein thereupon these
    they thick thin third this those though three through throughout thru thus to together too top
    toward towards twelve twenty two un under until up upon us very via was we well were what
    whatever when whence whenever where whereafter whereas whereby wherein whereupon wherever
    whether which while whither who whoever whole whom whose why will with within without would yet
    you your yours yourself yourselves
""".split())
_TOKEN = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphabetic tokens of two or more letters, stop words removed."""
    return [w for w in _TOKEN.findall(text.lower()) if len(w) > 1 and w not in STOP_WORDS]


# ----------------------------------------------------------------------------- building

def parse_data_noun(path: str | Path, num_features: int = NUM_FEATURES) -> dict[str, np.ndarray]:
    """Parse WordNet's ``data.noun`` into the arrays the committed file holds.

    Returns offsets int32 (N,), labels uint8 (N,), edges int32 (2, E) directed as written in the
    file, edge_type uint8 (E,) indexing ``EDGE_TYPE_NAMES``, the gloss bag of words as CSR
    (bow_indptr int32 (N+1,), bow_indices uint16 (nnz,) sorted per row, bow_counts uint8 (nnz,)),
    and packed strings (see ``pack_strings``): vocab (K, by document frequency then
    alphabetically), class_names, lemmas (space-separated per node) and glosses.
    """
    offsets, labels, lemmas, glosses, pointers = [], [], [], [], []
    with open(path, encoding="latin-1") as f:  # data.noun is ASCII; latin-1 never fails
        for line in f:
            if line.startswith("  "):  # licence header
                continue
            head, gloss = line.split(" | ", 1)
            t = head.split()
            w = int(t[3], 16)
            k = 4 + 2 * w
            ptrs = []
            for _ in range(int(t[k])):
                sym, target, pos = t[k + 1:k + 4]
                k += 4
                if pos == "n" and sym in _SYMBOL_TYPE:
                    ptrs.append((int(target), _SYMBOL_TYPE[sym]))
            offsets.append(int(t[0]))
            labels.append(int(t[1]) - _FIRST_NOUN_LEXFILE)
            lemmas.append(" ".join(t[4:4 + 2 * w:2]))
            glosses.append(gloss.strip())
            pointers.append(ptrs)
    node_of = {off: i for i, off in enumerate(offsets)}
    edges = sorted({(typ, i, node_of[tgt]) for i, ptrs in enumerate(pointers) for tgt, typ in ptrs})
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 3)

    tokens = [tokenize(g) for g in glosses]
    df = Counter(w for toks in tokens for w in set(toks))
    vocab = [w for w, _ in sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[:num_features]]
    col = {w: j for j, w in enumerate(vocab)}
    indptr, indices, counts = [0], [], []
    for toks in tokens:
        row = sorted(Counter(col[w] for w in toks if w in col).items())
        indices += [j for j, _ in row]
        counts += [c for _, c in row]
        indptr.append(len(indices))
    if max(counts) > 255 or len(vocab) > 65535:
        raise ValueError("bag of words does not fit uint8 counts / uint16 columns")
    return {
        "offsets": np.asarray(offsets, dtype=np.int32),
        "labels": np.asarray(labels, dtype=np.uint8),
        "edges": e[:, 1:].T.astype(np.int32),
        "edge_type": e[:, 0].astype(np.uint8),
        "bow_indptr": np.asarray(indptr, dtype=np.int32),
        "bow_indices": np.asarray(indices, dtype=np.uint16),
        "bow_counts": np.asarray(counts, dtype=np.uint8),
        "vocab": pack_strings(vocab),
        "class_names": pack_strings(CLASS_NAMES),
        "lemmas": pack_strings(lemmas),
        "glosses": pack_strings(glosses),
    }


def _raw_user() -> list[Path]:
    return [p / "data.noun" for p in user_data("wordnet")]


def _raw_system() -> list[Path]:
    return [p / "data.noun" for p in SYSTEM_DIRS]


def build_wordnet(out: Path | None = None) -> Path:
    """Parse ``data.noun`` ($COOKBOOK_DATA/wordnet/ or Debian's) and write the committed npz.

    Byte-reproducible (see ``write_npz``).
    """
    for path in _raw_user() + _raw_system():
        if path.exists():
            return write_npz(Path(out) if out is not None else ASSETS / ASSET, parse_data_noun(path))
    raise FileNotFoundError("building the WordNet graph needs WordNet 3.0's data.noun: `make data` "
                            "(sudo apt-get install wordnet-base) or $COOKBOOK_DATA/wordnet/data.noun")


# ----------------------------------------------------------------------------- loading

def locate_wordnet() -> Found:
    """Where :func:`load_wordnet_nouns` will read from (see its docstring for the order)."""
    searched = []
    if found := find_user_file("wordnet_nouns.npz", searched, "COOKBOOK_DATA, processed"):
        return found
    for path in _raw_user():
        searched.append(f"{path} (COOKBOOK_DATA, raw)")
        if path.exists():
            return Found("COOKBOOK_DATA", path)
    searched.append(f"{ASSETS / ASSET} (committed)")
    path = committed(ASSET)
    if path is not None:
        return Found("assets", path)
    for path in _raw_system():
        searched.append(f"{path} (debian)")
        if path.exists():
            return Found("debian", path)
    raise not_found("WordNet noun graph", searched,
                    f"`git checkout assets/{ASSET}`, or `make data` (sudo apt-get install wordnet-base), "
                    "or rebuild the committed file with `python -m cookbook.data build wordnet`.")


@lru_cache(maxsize=2)
def _arrays(found: Found) -> dict[str, np.ndarray]:
    if found.path.suffix == ".npz":
        return read_npz(found.path)
    cached = cache_dir() / f"wordnet_nouns-{file_digest(found.path)}.npz"
    if not cached.exists():  # parsing takes a few seconds; keep the result
        write_npz(cached, parse_data_noun(found.path), level=1)
    return read_npz(cached)


@lru_cache(maxsize=8)
def _undirected(found: Found, edge_types: tuple[str, ...]) -> np.ndarray:
    """(2, E) int64: the chosen edge types, both directions, no self loops, no duplicates, sorted."""
    a = _arrays(found)
    n = len(a["labels"])
    codes = [EDGE_TYPE_NAMES.index(t) for t in edge_types]
    src, dst = a["edges"][:, np.isin(a["edge_type"], codes)].astype(np.int64)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    key = np.unique(np.concatenate([src * n + dst, dst * n + src]))
    out = np.stack([key // n, key % n])
    out.flags.writeable = False
    return out


def _features(a: dict[str, np.ndarray], rows: np.ndarray, kind: str) -> torch.Tensor:
    """Dense (len(rows), K) float32 bag of words or L2-normalised TF-IDF for the chosen nodes.

    TF-IDF = count * idf with idf = ln((1 + N) / (1 + df)) + 1 (scikit-learn's smooth idf), df
    counted over all N nodes, so a subgraph keeps the full graph's weights.
    """
    indptr, indices, counts = a["bow_indptr"], a["bow_indices"].astype(np.int64), a["bow_counts"]
    k = len(unpack_strings(a["vocab"]))
    start, stop = indptr[rows], indptr[rows + 1]
    lengths = stop - start
    pos = np.repeat(stop - lengths.cumsum(), lengths) + np.arange(lengths.sum())
    r = np.repeat(np.arange(len(rows)), lengths)
    vals = counts[pos].astype(np.float32)
    if kind == "tfidf":
        n = len(indptr) - 1
        df = np.bincount(indices, minlength=k)
        idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        vals = vals * idf[indices[pos]]
        norm = np.sqrt(np.bincount(r, weights=vals.astype(np.float64) ** 2, minlength=len(rows)))
        vals = (vals / norm[r]).astype(np.float32)  # rows without vocabulary words stay zero
    x = torch.zeros(len(rows) * k)  # filled sparsely: never a second dense copy (full x is 657 MB)
    x[torch.from_numpy(r * k + indices[pos])] = torch.from_numpy(vals)
    return x.view(len(rows), k)


def _bfs(edge_index: np.ndarray, n: int, num_nodes: int, seed: int) -> np.ndarray:
    """Sorted indices of the first ``num_nodes`` nodes of a breadth-first search.

    The start node is drawn from ``seed`` by hashing (the same on every machine and numpy);
    neighbours are visited in index order. If the start's component is smaller than
    ``num_nodes`` the next drawn start is tried. Every kept node except the start has its BFS
    parent kept, so the induced subgraph is connected.
    """
    if not 1 <= num_nodes <= n:
        raise ValueError(f"num_nodes must be in 1..{n}, got {num_nodes}")
    src, dst = edge_index
    order = np.argsort(src, kind="stable")
    nbr = dst[order]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    for attempt in range(64):
        start = int(unit_hash(f"wordnet-bfs:{seed}:{attempt}") * n)
        seen = np.zeros(n, bool)
        seen[start] = True
        visited, frontier, total = [np.array([start])], np.array([start]), 1
        while total < num_nodes and frontier.size:
            cand = np.concatenate([nbr[ptr[v]:ptr[v + 1]] for v in frontier])
            cand = cand[~seen[cand]]
            _, first = np.unique(cand, return_index=True)
            frontier = cand[np.sort(first)][:num_nodes - total]  # FIFO order, cut at the size
            seen[frontier] = True
            visited.append(frontier)
            total += frontier.size
        if total == num_nodes:
            return np.sort(np.concatenate(visited))
    raise ValueError(f"no connected component with {num_nodes} nodes found from 64 start nodes; "
                     "use fewer nodes or more edge types")


def _induced(edge_index: np.ndarray, n: int, keep: np.ndarray) -> torch.Tensor:
    """Edges among ``keep`` (sorted), re-indexed to 0..len(keep)-1."""
    new = np.full(n, -1, dtype=np.int64)
    new[keep] = np.arange(len(keep))
    src, dst = new[edge_index[0]], new[edge_index[1]]
    mask = (src >= 0) & (dst >= 0)
    return torch.from_numpy(np.stack([src[mask], dst[mask]]))


@dataclass
class WordNetGraph:
    """A (sub)graph of WordNet nouns; torch_geometric-free (``to_pyg()`` converts).

    x: float32 (N, K) features ("tfidf": L2-normalised rows; "bow": raw counts);
    edge_index: int64 (2, E), undirected (both directions), no self loops, no duplicates;
    y: int64 (N,) in 0..25 (``class_names``); names: first lemma of each node ("dog");
    lemmas: all lemmas of each node; offsets: int64 (N,) WordNet 3.0 synset offsets (NLTK:
    ``wn.synset_from_pos_and_offset("n", off)``); node_index: int64 (N,) position in the full
    82,115-node graph; vocab: the K feature words; glosses: the gloss texts (if requested).
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    y: torch.Tensor
    class_names: list[str]
    names: list[str]
    lemmas: list[tuple[str, ...]]
    offsets: torch.Tensor
    node_index: torch.Tensor
    vocab: list[str]
    features: str
    edge_types: tuple[str, ...]
    found: Found
    glosses: list[str] | None = None

    @property
    def source(self) -> str:
        return self.found.source

    @property
    def num_nodes(self) -> int:
        return int(self.y.numel())

    @property
    def num_edges(self) -> int:
        """Undirected edges (each stored twice in ``edge_index``)."""
        return int(self.edge_index.shape[1]) // 2

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_pyg(self):
        """A ``torch_geometric.data.Data`` with x, edge_index, y (needs the graph extra)."""
        from torch_geometric.data import Data

        return Data(x=self.x, edge_index=self.edge_index, y=self.y)

    def __repr__(self) -> str:
        return (f"WordNetGraph(nodes={self.num_nodes}, edges={self.num_edges} undirected, "
                f"classes={self.num_classes}, x={tuple(self.x.shape)} {self.features}, "
                f"edge_types={self.edge_types}, source={self.found})")


def _edge_types(edge_types) -> tuple[str, ...]:
    if isinstance(edge_types, str):
        edge_types = EDGE_TYPE_NAMES if edge_types == "all" else (edge_types,)
    edge_types = tuple(edge_types)
    if not edge_types:
        raise ValueError("edge_types is empty")
    for t in edge_types:
        check_choice("edge type", t, EDGE_TYPE_NAMES + ("all",))
    return tuple(t for t in EDGE_TYPE_NAMES if t in edge_types)


def load_wordnet_nouns(features: str = "tfidf", *, edge_types=("hypernym",), num_nodes: int | None = None,
                       seed: int = 0, glosses: bool = False) -> WordNetGraph:
    """The WordNet 3.0 noun graph as a :class:`WordNetGraph` (see the module docstring).

    features: "tfidf" (default) or "bow"; K = 2,000 words.
    edge_types: any of "hypernym" (default), "meronym", "domain", "derivation", "antonym", or
        "all"; always made undirected.
    num_nodes, seed: if given, a connected breadth-first cut (``wordnet_subgraph``) taken before
        the dense features are built. The full graph's x is 82,115 x 2,000 float32 = 657 MB, so
        cut first when you can (the calibration runs used ``num_nodes=15_000``).
    glosses: also return the 82,115 gloss strings.

    Full graph, hypernyms only: N = 82,115 nodes, 84,427 undirected edges, 26 classes.

    Resolution: ``$COOKBOOK_DATA/wordnet_nouns.npz`` (processed, same format) or
    ``$COOKBOOK_DATA/wordnet/data.noun`` (a WordNet 3.0 dict folder) -> the committed
    ``assets/data/wordnet_nouns.npz`` (checked against MANIFEST) -> Debian's
    ``/usr/share/wordnet/data.noun`` (parsed once, cached under ``cache_dir()``). ``.source``
    says which. Arrays are cached in memory; each call builds fresh tensors.
    """
    check_choice("features", features, FEATURES)
    edge_types = _edge_types(edge_types)
    found = locate_wordnet()
    a = _arrays(found)
    n = len(a["labels"])
    ei = _undirected(found, edge_types)
    keep = np.arange(n) if num_nodes is None else _bfs(ei, n, num_nodes, seed)
    edge_index = torch.from_numpy(ei.copy()) if num_nodes is None else _induced(ei, n, keep)
    lemmas = [tuple(s.split(" ")) for s in unpack_strings(a["lemmas"])]
    all_glosses = unpack_strings(a["glosses"]) if glosses else []
    return WordNetGraph(
        x=_features(a, keep, features),
        edge_index=edge_index,
        y=torch.from_numpy(a["labels"][keep].astype(np.int64)),
        class_names=unpack_strings(a["class_names"]),
        names=[lemmas[i][0] for i in keep],
        lemmas=[lemmas[i] for i in keep],
        offsets=torch.from_numpy(a["offsets"][keep].astype(np.int64)),
        node_index=torch.from_numpy(keep.astype(np.int64)),
        vocab=unpack_strings(a["vocab"]),
        features=features,
        edge_types=edge_types,
        found=found,
        glosses=[all_glosses[i] for i in keep] if glosses else None,
    )


def wordnet_subgraph(graph: WordNetGraph, num_nodes: int, seed: int = 0) -> WordNetGraph:
    """A connected breadth-first cut of ``graph`` with ``num_nodes`` nodes, re-indexed 0..n-1.

    The start node is drawn from ``seed`` (deterministic on every machine); neighbours are
    visited in index order and the last BFS level is cut in visiting order. Nodes keep their
    relative order; ``node_index`` maps them back to the full graph. Cutting the full graph
    gives the same nodes as ``load_wordnet_nouns(num_nodes=..., seed=...)`` with the same edges.
    """
    n = graph.num_nodes
    ei = graph.edge_index.numpy()
    keep = _bfs(ei, n, num_nodes, seed)
    idx = torch.from_numpy(keep)
    return replace(
        graph,
        x=graph.x[idx],
        edge_index=_induced(ei, n, keep),
        y=graph.y[idx],
        names=[graph.names[i] for i in keep],
        lemmas=[graph.lemmas[i] for i in keep],
        offsets=graph.offsets[idx],
        node_index=graph.node_index[idx],
        glosses=[graph.glosses[i] for i in keep] if graph.glosses is not None else None,
    )
