r"""A teacher's top-k next-token cache on disk: memory-mapped arrays plus a manifest.

Running a 135M-parameter teacher costs seconds per batch on a laptop CPU; its top-k next-token
log-probabilities for the training sequences cost kilobytes. So the teacher runs **once**
(:func:`build_topk_cache`) and every distillation run reads the cache (:func:`open_topk_cache`).

Format ``cookbook-topk-v2`` (a folder)::

    manifest.json         format, teacher (name, weights fingerprint, tokenizer), vocab_size, k,
                          temperature, shapes, dtypes, sha256 per file
    input_ids.npy         (S, L) int32   the token sequences the teacher read
    topk_indices.npy      (S, L, k) int32  at position l: the teacher's k most likely next tokens
                                       after input_ids[:, :l+1], most likely first
    topk_logprobs.npy     (S, L, k) float16|float32  their log-probs log_softmax(z_t / T) over the
                                       FULL vocabulary (the tail 1 - sum exp is the loss's job)
    target_logprobs.npy   (S, L) float32, optional  the teacher's log-prob of the actual next token
                                       (NaN at the last position): exact teacher perplexity
    mask.npy, <extra>.npy optional  e.g. a padding mask (S, L) or a per-sequence domain id (S,)

What is written is validated (finite log-probs <= 0 whose top-k mass is <= 1, most likely first, no
repeated id in a row, T > 0, k <= vocab), and what is opened is checked for consistent shapes, so a
broken cache fails loudly instead of training a student on garbage. ``build_topk_cache`` refuses to
reuse a folder built by another teacher (name, weights, tokenizer), k, T or other inputs.

The .npy files are opened with ``mmap_mode="r"``: a run touches only the rows it reads. Files are
checked against the manifest's sha256 on open (``verify=False`` skips it for huge caches).
Size: k = 16 in float16 with int32 ids is 96 bytes per token (a dense fp32 row is 196,608).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cookbook.losses.llm import TopKTeacher
from cookbook.teachers.wrapper import select_output
from cookbook.utils import weights_fingerprint

FORMAT = "cookbook-topk-v2"
_REQUIRED = ("input_ids", "topk_indices", "topk_logprobs")
_RESERVED = (*_REQUIRED, "target_logprobs", "mask")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class TopKCache:
    """An opened cache (see the module docstring). Arrays are read-only numpy memmaps."""

    path: Path
    manifest: dict
    arrays: dict[str, np.ndarray] = field(repr=False)

    @property
    def input_ids(self) -> np.ndarray:
        return self.arrays["input_ids"]

    @property
    def k(self) -> int:
        return int(self.manifest["k"])

    @property
    def temperature(self) -> float:
        return float(self.manifest["temperature"])

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def get(self, name: str, rows) -> Tensor | None:
        """Rows of any stored array as a tensor (None if the cache does not have it)."""
        if name not in self.arrays:
            return None
        return torch.from_numpy(np.array(self.arrays[name][rows]))  # a copy: memmaps are read-only

    def ids(self, rows) -> Tensor:
        """Token ids of some sequences, int64 (B, L)."""
        return self.get("input_ids", rows).long()

    def teacher(self, rows, k: int | None = None) -> TopKTeacher:
        """The teacher for those sequences' B*L positions, flattened like the student's logits.

        ``k`` < the stored k keeps the k most likely (the stored order is most likely first).
        """
        k = self.k if k is None else k
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be in [1, {self.k}] for this cache, got {k}")
        idx = self.get("topk_indices", rows)[..., :k].long().flatten(0, 1)      # (B*L, k)
        lp = self.get("topk_logprobs", rows)[..., :k].float().flatten(0, 1)     # (B*L, k)
        return TopKTeacher(idx, lp, self.temperature)


_LOGPROB_TOL = {torch.float16: 1e-2, torch.float32: 1e-4}   # rounding of stored log-probs


def _check_topk_arrays(input_ids: Tensor, indices: Tensor, logprobs: Tensor, vocab_size: int,
                       temperature: float, target_logprobs: Tensor | None) -> None:
    """Refuse what would silently corrupt every run that reads the cache (see the module docstring)."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (S, L), got {tuple(input_ids.shape)}")
    S, L = input_ids.shape
    if indices.shape != logprobs.shape or indices.dim() != 3 or indices.shape[:2] != (S, L):
        raise ValueError(f"need input_ids (S, L) and indices, logprobs (S, L, k); got "
                         f"{tuple(input_ids.shape)}, {tuple(indices.shape)}, {tuple(logprobs.shape)}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if not (isinstance(vocab_size, int) and vocab_size >= 1):
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    k = indices.shape[-1]
    if not 1 <= k <= vocab_size:
        raise ValueError(f"k = {k} must be in [1, vocab_size = {vocab_size}]")
    if logprobs.dtype not in _LOGPROB_TOL:
        raise ValueError(f"store logprobs as float16 or float32, got {logprobs.dtype}")
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"indices must be integer token ids, got {indices.dtype}")
    if indices.numel() and (int(indices.max()) >= vocab_size or int(indices.min()) < 0):
        raise ValueError(f"indices must lie in [0, vocab_size={vocab_size})")
    if indices.numel() and (indices.sort(-1).values.diff(dim=-1) == 0).any():
        raise ValueError("a position lists the same token id twice in its top-k: the ids must be distinct")
    lp, tol = logprobs.float(), _LOGPROB_TOL[logprobs.dtype]
    if not torch.isfinite(lp).all():
        raise ValueError("logprobs contain NaN or inf: store the teacher's finite log-probabilities")
    if (lp > tol).any() or (lp.logsumexp(-1) > math.log1p(tol * k)).any():
        raise ValueError("logprobs are not log-probabilities (a value > 0, or the top-k mass > 1): "
                         "store log_softmax(logits / T), not raw logits")
    if (lp.diff(dim=-1) > tol).any():
        raise ValueError("the top-k must be stored most likely first (non-increasing logprobs)")
    if target_logprobs is not None:
        if target_logprobs.shape != (S, L):
            raise ValueError(f"target_logprobs must be (S, L) = {(S, L)}, got {tuple(target_logprobs.shape)}")
        body = target_logprobs[:, :-1].float()
        if not torch.isfinite(body).all() or (body > 1e-4).any():
            raise ValueError("target_logprobs must be finite log-probabilities <= 0 (NaN only at the last position)")


def write_topk_cache(path: str | Path, input_ids: Tensor, indices: Tensor, logprobs: Tensor, *,
                     vocab_size: int, temperature: float, teacher: str,
                     target_logprobs: Tensor | None = None, mask: Tensor | None = None,
                     extras: dict[str, Tensor] | None = None, note: str = "",
                     teacher_fingerprint: str = "", tokenizer: str = "") -> TopKCache:
    """Write a cache folder (format in the module docstring) and return it opened.

    teacher_fingerprint / tokenizer: identify the weights and tokenizer that made it (``build_topk_cache``
    fills the first from the model); a later build into the same folder must match them.
    """
    _check_topk_arrays(input_ids, indices, logprobs, vocab_size, temperature, target_logprobs)
    S, L = input_ids.shape
    if mask is not None and mask.shape != (S, L):
        raise ValueError(f"mask must be (S, L) = {(S, L)}, got {tuple(mask.shape)}")
    for name, tensor in (extras or {}).items():
        if name in _RESERVED or tensor.shape[:1] != (S,):
            raise ValueError(f"extra array {name!r} must not reuse a cache name and must have S = {S} rows, "
                             f"got shape {tuple(tensor.shape)}")
    arrays = {"input_ids": input_ids.to(torch.int32), "topk_indices": indices.to(torch.int32),
              "topk_logprobs": logprobs}
    if target_logprobs is not None:
        arrays["target_logprobs"] = target_logprobs.float()
    if mask is not None:
        arrays["mask"] = mask.bool()
    arrays.update(extras or {})
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, tensor in arrays.items():
        np.save(path / f"{name}.npy", tensor.detach().cpu().contiguous().numpy())
        files[name] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", ""),
                       "sha256": _sha256(path / f"{name}.npy")}
    manifest = {"format": FORMAT, "teacher": teacher, "teacher_fingerprint": teacher_fingerprint,
                "tokenizer": tokenizer, "vocab_size": int(vocab_size),
                "k": int(indices.shape[-1]), "temperature": float(temperature),
                "sequences": int(S), "seq_len": int(L), "note": note, "files": files}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return open_topk_cache(path, verify=False)        # the sums were just computed from these files


def open_topk_cache(path: str | Path, verify: bool = True) -> TopKCache:
    """Open a cache folder memory-mapped; check its format and (by default) every file's sha256."""
    path = Path(path)
    man_file = path / "manifest.json"
    if not man_file.exists():
        raise FileNotFoundError(f"no teacher cache at {path} (missing manifest.json): build it with "
                                "cookbook.teachers.topk_cache.build_topk_cache")
    manifest = json.loads(man_file.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} cache (format {manifest.get('format')!r})")
    missing = [n for n in _REQUIRED if n not in manifest["files"]]
    if missing:
        raise ValueError(f"{path}: the manifest lists no {missing}")
    arrays = {}
    for name, info in manifest["files"].items():
        file = path / f"{name}.npy"
        if verify and _sha256(file) != info["sha256"]:
            raise ValueError(f"{file} does not match its sha256 in the manifest: rebuild the cache")
        arrays[name] = np.load(file, mmap_mode="r")
    _check_opened(path, manifest, arrays)
    return TopKCache(path, manifest, arrays)


def _check_opened(path: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """The arrays agree with each other and with the manifest (shapes, dtypes, k, vocab)."""
    ids, idx, lp = arrays["input_ids"], arrays["topk_indices"], arrays["topk_logprobs"]
    S, L = ids.shape if ids.ndim == 2 else (None, None)
    k = int(manifest.get("k", -1))
    problems = []
    if ids.ndim != 2:
        problems.append(f"input_ids has shape {ids.shape}, expected (S, L)")
    elif idx.shape != (S, L, k) or lp.shape != (S, L, k):
        problems.append(f"topk_indices {idx.shape} / topk_logprobs {lp.shape} do not match (S, L, k) = {(S, L, k)}")
    if lp.dtype not in (np.float16, np.float32) or idx.dtype.kind not in "iu":
        problems.append(f"dtypes {idx.dtype} / {lp.dtype}: expected integer ids and float16/32 log-probs")
    if not 1 <= k <= int(manifest.get("vocab_size", 0)):
        problems.append(f"k = {k} is not in [1, vocab_size = {manifest.get('vocab_size')}]")
    for name, arr in arrays.items():
        if name in _REQUIRED:
            continue
        want = (S, L) if name in ("target_logprobs", "mask") else (S,)
        if arr.shape[:len(want)] != want:
            problems.append(f"{name} has shape {arr.shape}, expected leading {want}")
        if list(arr.shape) != manifest["files"][name]["shape"]:
            problems.append(f"{name} has shape {arr.shape} but the manifest says {manifest['files'][name]['shape']}")
    for name in _REQUIRED:
        if list(arrays[name].shape) != manifest["files"][name]["shape"]:
            problems.append(f"{name} has shape {arrays[name].shape} but the manifest says "
                            f"{manifest['files'][name]['shape']}")
    if problems:
        raise ValueError(f"{path} is not a consistent teacher cache: " + "; ".join(problems) + ": rebuild it")


@torch.no_grad()
def teacher_topk_batch(model, ids: Tensor, k: int, T: float = 1.0,
                       dtype: torch.dtype = torch.float16) -> tuple[Tensor, Tensor, Tensor]:
    """One teacher forward: top-k ids (B, L, k), their log-probs (B, L, k) in ``dtype``, and the
    log-prob of the actual next token (B, L), NaN at the last position."""
    out = model(ids)
    logits = select_output(out)                                               # HF output or tensor
    logp = torch.log_softmax(logits.float() / T, dim=-1)                     # (B, L, V)
    top = logp.topk(k, dim=-1)                                                # most likely first
    target = torch.full(ids.shape, float("nan"))
    target[:, :-1] = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    return top.indices, top.values.to(dtype), target


def build_topk_cache(model, input_ids: Tensor, path: str | Path, *, k: int, T: float = 1.0,
                     dtype: torch.dtype = torch.float16, batch_size: int = 16, teacher: str = "",
                     vocab_size: int | None = None, extras: dict[str, Tensor] | None = None,
                     tokenizer: str = "", overwrite: bool = False, progress: bool = True) -> TopKCache:
    """Run ``model`` (a causal LM: ids (B, L) -> logits (B, L, V)) over ``input_ids`` (S, L) once and
    write its top-k cache to ``path``.

    An existing cache in ``path`` is reused only if it was built from the same inputs by the same
    teacher (``teacher`` name, weights fingerprint, ``tokenizer`` id) with the same k and T; any other
    cache there raises ValueError (pass ``overwrite=True`` to replace it).
    """
    from tqdm.auto import tqdm

    path = Path(path)
    fingerprint = weights_fingerprint(model)
    if (path / "manifest.json").exists() and not overwrite:
        old = open_topk_cache(path, verify=False)
        wanted = {"teacher": teacher, "teacher_fingerprint": fingerprint, "tokenizer": tokenizer,
                  "k": int(k), "temperature": float(T)}
        differs = [f"{key}: {old.manifest.get(key)!r} there, {value!r} asked"
                   for key, value in wanted.items() if old.manifest.get(key) != value]
        if not np.array_equal(old.input_ids, input_ids.numpy()):
            differs.append("input_ids: other sequences")
        if not differs:
            return old
        raise ValueError(f"{path} holds another teacher cache ({'; '.join(differs)}): "
                         "choose another path or pass overwrite=True")
    parts = []
    batches = range(0, len(input_ids), batch_size)
    for start in tqdm(batches, desc=f"teacher top-{k}", disable=not progress):
        parts.append(teacher_topk_batch(model, input_ids[start:start + batch_size], k, T, dtype))
    idx, lp, target = (torch.cat(p) for p in zip(*parts))
    vocab = vocab_size or model.config.vocab_size
    return write_topk_cache(path, input_ids, idx, lp, vocab_size=vocab, temperature=T, teacher=teacher,
                            target_logprobs=target, extras=extras, teacher_fingerprint=fingerprint,
                            tokenizer=tokenizer)
