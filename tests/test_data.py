"""Tests for cookbook.data: shapes, dtypes, splits, sources, checksums, graph and text invariants.

Nothing here downloads: online=True is never passed. Tests that need a Debian data package skip
without it; the committed files under assets/data are only ever read (corruption is tested on
temporary copies).
"""

from __future__ import annotations

import ast
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

import cookbook.assets as assets_mod
from cookbook import data
from cookbook.data import _common, images, stdlib, wordnet

REAL_ASSETS = assets_mod.ASSETS
HAS_DEBIAN_FASHION = all(images._idx_files(d) for d in images.FASHION_SYSTEM_DIRS)
HAS_DEBIAN_WORDNET = all((d / "data.noun").exists() for d in wordnet.SYSTEM_DIRS)
needs_fashion = pytest.mark.skipif(not HAS_DEBIAN_FASHION, reason="Debian dataset-fashion-mnist not installed")
needs_wordnet = pytest.mark.skipif(not HAS_DEBIAN_WORDNET, reason="Debian wordnet-base not installed")


@pytest.fixture
def no_user_data(monkeypatch, tmp_path):
    """No $COOKBOOK_DATA and an empty cache dir, so only assets/ and system installs count."""
    monkeypatch.delenv("COOKBOOK_DATA", raising=False)
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def subset_only(no_user_data, monkeypatch):
    """Fashion-MNIST as on a machine without the Debian package: the committed subset."""
    monkeypatch.setattr(images, "FASHION_SYSTEM_DIRS", [])


@pytest.fixture
def empty_assets(monkeypatch, tmp_path):
    """An assets/ folder with an empty MANIFEST and no files."""
    root = tmp_path / "assets"
    root.mkdir()
    (root / "MANIFEST").write_text("")
    monkeypatch.setattr(assets_mod, "ASSETS", root)
    monkeypatch.setattr(assets_mod, "MANIFEST", root / "MANIFEST")
    return root


def _copy_assets(tmp_path: Path, rel: str, monkeypatch) -> Path:
    root = tmp_path / "assets"
    (root / rel).parent.mkdir(parents=True)
    shutil.copy(assets_mod.ASSETS / rel, root / rel)
    shutil.copy(assets_mod.MANIFEST, root / "MANIFEST")
    monkeypatch.setattr(assets_mod, "ASSETS", root)
    monkeypatch.setattr(assets_mod, "MANIFEST", root / "MANIFEST")
    return root / rel


def _check_images(split, n=None):
    X, y = split
    assert X.dtype == torch.uint8 and X.dim() == 3 and X.shape[1:] == (28, 28)
    assert y.dtype == torch.int64 and y.shape == (X.shape[0],)
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    assert split.index.shape == y.shape and split.index.dtype == torch.int64
    if n is not None:
        assert X.shape[0] == n


def _check_stats(X: torch.Tensor, name: str) -> None:
    """IMAGE_STATS[name] equals the pixel mean/std of X/255 (from a 256-bin histogram: exact, fast)."""
    h = torch.bincount(X.flatten(), minlength=256).double()
    v = torch.arange(256, dtype=torch.float64) / 255
    mean = (h * v).sum() / h.sum()
    std = ((h * (v - mean) ** 2).sum() / h.sum()).sqrt()
    assert abs(mean.item() - data.IMAGE_STATS[name][0]) < 1e-4
    assert abs(std.item() - data.IMAGE_STATS[name][1]) < 1e-4


# ----------------------------------------------------------------------------- Fashion-MNIST

@needs_fashion
def test_fashion_full_from_debian(no_user_data):
    sizes = {"train": 55_000, "val": 5_000, "test": 10_000, "train_full": 60_000}
    splits = {s: data.load_fashion_mnist(s) for s in sizes}
    for s, n in sizes.items():
        _check_images(splits[s], n)
        assert splits[s].source == "debian"
    assert torch.bincount(splits["test"].y).tolist() == [1000] * 10
    assert torch.bincount(splits["train_full"].y).tolist() == [6000] * 10
    assert splits["train"].index.max() == 54_999 and splits["val"].index.min() == 55_000
    assert torch.equal(torch.cat([splits["train"].X, splits["val"].X]), splits["train_full"].X)
    again = data.load_fashion_mnist("val")
    assert torch.equal(again.X, splits["val"].X) and torch.equal(again.y, splits["val"].y)
    _check_stats(splits["train_full"].X, "fashion-mnist")


def test_fashion_subset(subset_only):
    s = {k: data.load_fashion_mnist(k) for k in images.FASHION_SPLITS}
    for k, n in {"train": 9000, "val": 1000, "test": 2000, "train_full": 10_000}.items():
        _check_images(s[k], n)
        assert s[k].source == "assets subset"
        assert torch.bincount(s[k].y, minlength=10).tolist() == [n // 10] * 10  # class-balanced
    assert s["train"].index.max() < images.FASHION_VAL_START <= s["val"].index.min()
    assert not set(s["train"].index.tolist()) & set(s["val"].index.tolist())
    assert torch.equal(torch.sort(torch.cat([s["train"].index, s["val"].index])).values, s["train_full"].index)
    assert torch.equal(data.load_fashion_mnist("train").X, s["train"].X)  # deterministic
    X, y = s["test"]  # unpacks like a tuple
    assert X is s["test"].X and y is s["test"].y
    assert "assets subset" in repr(s["test"])


@needs_fashion
def test_fashion_subset_is_drawn_from_full(no_user_data, monkeypatch):
    full = {k: data.load_fashion_mnist(k) for k in ("train_full", "test")}
    monkeypatch.setattr(images, "FASHION_SYSTEM_DIRS", [])
    for k in ("train_full", "test"):
        sub = data.load_fashion_mnist(k)
        assert torch.equal(full[k].X[sub.index], sub.X) and torch.equal(full[k].y[sub.index], sub.y)


def test_fashion_returns_fresh_tensors(subset_only):
    X, _ = data.load_fashion_mnist("val")
    X.zero_()
    assert data.load_fashion_mnist("val").X.any()


def test_fashion_from_cookbook_data(monkeypatch, tmp_path):
    if not HAS_DEBIAN_FASHION:
        pytest.skip("needs the Debian IDX files to copy")
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    for p in images._idx_files(images.FASHION_SYSTEM_DIRS[0]).values():
        (d / p.name).symlink_to(p)
    monkeypatch.setenv("COOKBOOK_DATA", str(tmp_path))
    s = data.load_fashion_mnist("test")
    assert s.source == "COOKBOOK_DATA" and s.X.shape == (10_000, 28, 28)


def test_bad_split_lists_valid_ones():
    with pytest.raises(ValueError, match="'train', 'val', 'test', 'train_full'"):
        data.load_fashion_mnist("training")
    with pytest.raises(ValueError, match="valid"):
        data.load_mnist10k("val")
    with pytest.raises(ValueError, match="valid"):
        data.load_stdlib_corpus("dev")
    with pytest.raises(ValueError, match="valid"):
        data.load_code_retrieval("dev")
    with pytest.raises(ValueError, match="valid"):
        data.locate("cifar10")


def test_normalize_images(subset_only):
    X, _ = data.load_fashion_mnist("train_full")
    x = data.normalize_images(X)
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05  # subset ~ full stats
    assert torch.allclose(data.normalize_images(X[:3], "none"), X[:3, None].float() / 255)
    assert data.normalize_images(X[:2, None]).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="uint8"):
        data.normalize_images(X.float())
    with pytest.raises(ValueError, match="valid"):
        data.normalize_images(X, "cifar")


def test_missing_everything_says_how_to_get_it(no_user_data, empty_assets, monkeypatch):
    monkeypatch.setattr(images, "FASHION_SYSTEM_DIRS", [])
    monkeypatch.setattr(wordnet, "SYSTEM_DIRS", [])
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        data.load_fashion_mnist("train")
    assert "make data" in str(err.value) and "online=True" in str(err.value)
    with pytest.raises(FileNotFoundError, match="python -m cookbook.data build mnist10k"):
        data.load_mnist10k()
    with pytest.raises(FileNotFoundError, match="python -m cookbook.data build wordnet"):
        data.load_wordnet_nouns(num_nodes=10)


# ----------------------------------------------------------------------------- MNIST 10k

def test_mnist10k_splits():
    s = {k: data.load_mnist10k(k) for k in images.MNIST10K_SPLITS}
    for k, n in {"train": 7996, "test": 2004, "all": 10_000}.items():
        _check_images(s[k], n)
        assert s[k].source == "assets"
    per_class = torch.bincount(s["all"].y).tolist()
    assert per_class == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert torch.bincount(s["test"].y).tolist() == [-(-c // 5) for c in per_class]  # stratified
    tr, te = set(s["train"].index.tolist()), set(s["test"].index.tolist())
    assert not tr & te and len(tr | te) == 10_000
    assert torch.equal(s["all"].X[s["test"].index], s["test"].X)
    assert torch.equal(data.load_mnist10k("test").X, s["test"].X)
    _check_stats(s["all"].X, "mnist10k")
    assert len(torch.unique(s["all"].X.reshape(10_000, -1), dim=0)) == 10_000  # all distinct


def test_manifest_catches_a_corrupt_file(monkeypatch, tmp_path):
    monkeypatch.delenv("COOKBOOK_DATA", raising=False)
    copy = _copy_assets(tmp_path, images.MNIST10K_ASSET, monkeypatch)
    assert data.load_mnist10k("test").path == copy  # the intact copy verifies
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        data.load_mnist10k("test")


def test_cookbook_data_comes_first(monkeypatch, tmp_path):
    shutil.copy(assets_mod.ASSETS / images.MNIST10K_ASSET, tmp_path / "mnist10k.npz")
    monkeypatch.setenv("COOKBOOK_DATA", str(tmp_path))
    assert data.load_mnist10k("test").source == "COOKBOOK_DATA"
    assert data.locate("mnist10k").path == tmp_path / "mnist10k.npz"


def test_write_npz_is_byte_reproducible(tmp_path):
    arrays = {"b": np.arange(1000, dtype=np.int32), "a": _common.pack_strings(["x y", "zé", ""])}
    p1 = _common.write_npz(tmp_path / "1.npz", arrays)
    p2 = _common.write_npz(tmp_path / "2.npz", dict(reversed(arrays.items())))
    assert p1.read_bytes() == p2.read_bytes()
    back = _common.read_npz(p1)
    assert np.array_equal(back["b"], arrays["b"]) and _common.unpack_strings(back["a"]) == ["x y", "zé", ""]


# ----------------------------------------------------------------------------- WordNet

def _connected(edge_index: torch.Tensor, n: int) -> bool:
    adj = [[] for _ in range(n)]
    for s, d in edge_index.t().tolist():
        adj[s].append(d)
    seen, todo = {0}, deque([0])
    while todo:
        for v in adj[todo.popleft()]:
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return len(seen) == n


def _check_edges(edge_index: torch.Tensor, n: int) -> None:
    assert edge_index.dtype == torch.int64 and edge_index.shape[0] == 2
    assert int(edge_index.min()) >= 0 and int(edge_index.max()) < n
    s, d = edge_index
    code, back = torch.sort(s * n + d).values, torch.sort(d * n + s).values
    assert torch.unique(code).numel() == code.numel()  # no duplicates
    assert not torch.any(s == d)  # no self loops
    assert torch.equal(code, back)  # symmetric


@pytest.fixture(scope="module")
def wn_cut():
    return data.load_wordnet_nouns(num_nodes=3000, seed=0, glosses=True)


def test_wordnet_full_graph_counts():
    found = data.locate("wordnet")
    a = wordnet._arrays(found)
    n = len(a["labels"])
    assert n == 82_115
    ei = torch.from_numpy(wordnet._undirected(found, ("hypernym",)).copy())
    assert ei.shape[1] == 2 * 84_427
    _check_edges(ei, n)
    assert np.bincount(a["labels"], minlength=26).min() > 0 and a["labels"].max() == 25
    assert len(wordnet.unpack_strings(a["vocab"])) == 2000
    assert len(wordnet.unpack_strings(a["glosses"])) == n
    all_types = wordnet._undirected(found, wordnet.EDGE_TYPE_NAMES)
    assert all_types.shape[1] > ei.shape[1]


def test_wordnet_subgraph_invariants(wn_cut):
    g = wn_cut
    assert g.num_nodes == 3000 and g.num_classes == 26 and len(g.class_names) == 26
    assert g.x.shape == (3000, 2000) and g.x.dtype == torch.float32
    norms = g.x.norm(dim=1)
    assert torch.all(((norms - 1).abs() < 1e-5) | (norms == 0))  # L2-normalised rows (or no words)
    assert g.y.dtype == torch.int64 and int(g.y.max()) < 26
    _check_edges(g.edge_index, g.num_nodes)
    assert _connected(g.edge_index, g.num_nodes)
    assert torch.all(g.node_index[1:] > g.node_index[:-1])  # kept in original order
    assert len(g.names) == len(g.lemmas) == len(g.glosses) == 3000 and g.names[0] == g.lemmas[0][0]
    assert g.source in ("assets", "COOKBOOK_DATA")
    again = data.load_wordnet_nouns(num_nodes=3000, seed=0)
    assert torch.equal(again.node_index, g.node_index) and torch.equal(again.edge_index, g.edge_index)
    other = data.load_wordnet_nouns(num_nodes=3000, seed=1)
    assert not torch.equal(other.node_index, g.node_index)


def test_wordnet_subgraph_of_subgraph_reindexes(wn_cut):
    sub = data.wordnet_subgraph(wn_cut, 500, seed=2)
    assert sub.num_nodes == 500 and _connected(sub.edge_index, 500)
    _check_edges(sub.edge_index, 500)
    pos = {int(v): i for i, v in enumerate(wn_cut.node_index)}
    rows = torch.tensor([pos[int(v)] for v in sub.node_index])
    assert torch.equal(sub.x, wn_cut.x[rows]) and torch.equal(sub.y, wn_cut.y[rows])
    assert sub.names == [wn_cut.names[i] for i in rows] and sub.glosses == [wn_cut.glosses[i] for i in rows]
    parent = set(map(tuple, wn_cut.edge_index.t().tolist()))
    mapped = {(int(rows[s]), int(rows[d])) for s, d in sub.edge_index.t().tolist()}
    assert mapped <= parent  # an induced subgraph: every edge exists in the parent
    assert len(mapped) == sum((s in set(rows.tolist())) and (d in set(rows.tolist())) for s, d in parent)


def test_wordnet_loader_cut_equals_cutting_the_full_graph():
    full = data.load_wordnet_nouns("bow")
    assert full.num_nodes == 82_115 and full.num_edges == 84_427
    cut = data.wordnet_subgraph(full, 2000, seed=5)
    assert cut.x.max() >= 1 and torch.equal(cut.x, cut.x.round())  # raw counts
    direct = data.load_wordnet_nouns("bow", num_nodes=2000, seed=5)
    assert torch.equal(cut.node_index, direct.node_index) and torch.equal(cut.x, direct.x)
    assert torch.equal(cut.edge_index, direct.edge_index) and cut.names == direct.names


def test_wordnet_bad_arguments():
    with pytest.raises(ValueError, match="valid"):
        data.load_wordnet_nouns("word2vec")
    with pytest.raises(ValueError, match="valid"):
        data.load_wordnet_nouns(edge_types=("hyponym",), num_nodes=10)
    with pytest.raises(ValueError, match="num_nodes"):
        data.load_wordnet_nouns(num_nodes=0)


def test_wordnet_more_edge_types():
    g = data.load_wordnet_nouns(edge_types="all", num_nodes=1000)
    assert g.edge_types == wordnet.EDGE_TYPE_NAMES
    _check_edges(g.edge_index, 1000)
    assert _connected(g.edge_index, 1000)


@needs_wordnet
@pytest.mark.slow
def test_wordnet_asset_matches_debian():
    parsed = wordnet.parse_data_noun(wordnet.SYSTEM_DIRS[0] / "data.noun")
    committed = _common.read_npz(assets_mod.asset(wordnet.ASSET))
    assert parsed.keys() == committed.keys()
    for k in parsed:
        assert parsed[k].dtype == committed[k].dtype and np.array_equal(parsed[k], committed[k]), k


def test_wordnet_falls_back_to_the_system_file(no_user_data, empty_assets, monkeypatch, tmp_path):
    real = _common.read_npz(REAL_ASSETS / wordnet.ASSET)
    system = tmp_path / "wordnet"
    system.mkdir()
    (system / "data.noun").write_text("stand-in: parsing is replaced below\n")
    monkeypatch.setattr(wordnet, "SYSTEM_DIRS", [system])
    monkeypatch.setattr(wordnet, "parse_data_noun", lambda path: real)
    g = data.load_wordnet_nouns(num_nodes=50)
    assert g.source == "debian" and g.found.path == system / "data.noun" and g.num_nodes == 50
    assert list((tmp_path / "cache").glob("wordnet_nouns-*.npz"))  # parsed once, then cached


def test_list_command(capsys):
    from cookbook.data.__main__ import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in data.DATASETS:
        assert name in out
    assert "82,115 nodes" in out and "NOT AVAILABLE" not in out


# ----------------------------------------------------------------------------- stdlib text

def test_stdlib_corpus():
    docs = data.load_stdlib_corpus()
    assert len(docs) > 300 and {d.kind for d in docs} == {"code", "doc"}
    assert len({d.path for d in docs}) == len(docs)
    assert all(d.text for d in docs) and sum(len(d.text) for d in docs) > 1_000_000
    for d in docs:
        parts = d.path.split("#")[0].split("/")
        assert not {"test", "tests", "idlelib", "site-packages"} & set(parts), d.path
        assert d.domain == parts[0].removesuffix(".py")
    splits = {s: data.load_stdlib_corpus(s) for s in ("train", "val", "test")}
    paths = [{d.path for d in v} for v in splits.values()]
    assert all(paths) and not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert sum(map(len, paths)) == len(docs)
    assert [d.kind for d in data.load_stdlib_corpus(kinds="doc")] == ["doc"] * sum(d.kind == "doc" for d in docs)


def test_stdlib_corpus_is_deterministic():
    docs = data.load_stdlib_corpus()
    assert stdlib.build_stdlib_corpus() == docs  # a fresh build equals the cached one
    assert stdlib.split_of("json/decoder.py") == stdlib.split_of("json/decoder.py")


def test_code_retrieval():
    r = data.load_code_retrieval("all")
    n = len(r)
    assert n > 1000
    assert len(r.documents) == len(r.paths) == len(r.qualnames) == n
    assert torch.equal(r.relevance, torch.arange(n))
    assert len(set(r.queries)) == n and len(set(r.documents)) == n  # duplicates dropped
    assert min(map(len, r.queries)) >= stdlib.MIN_QUERY_CHARS
    for code in r.documents[::50]:  # the docstring is gone from the code
        tree = ast.parse(code)
        fn = tree.body[0]
        assert isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and ast.get_docstring(fn) is None
    parts = {s: data.load_code_retrieval(s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == n
    files = [set(p.paths) for p in parts.values()]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])  # split by file
    corpus_test = {d.path for d in data.load_stdlib_corpus("test")}
    assert set(parts["test"].paths) <= corpus_test


def test_code_retrieval_is_deterministic():
    code_docs = data.load_stdlib_corpus(kinds="code")[:15]
    first, second = stdlib.build_code_retrieval(code_docs), stdlib.build_code_retrieval(code_docs)
    assert first == second and first
    full = [r for r in stdlib._pairs() if r[0] in {d.path for d in code_docs}]
    assert [tuple(r) for r in first] == full
