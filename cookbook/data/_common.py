"""Shared plumbing for the loaders: where a data set was found, deterministic npz files, splits.

Every loader resolves its data in the same order (DESIGN.md, "Offline-first data"):
``$COOKBOOK_DATA`` -> the committed ``assets/data`` file -> a system install (Debian) -> an online
download only when the caller passes ``online=True``. What was used is reported as a
:class:`Found` so notebooks can print it.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cookbook import assets as _assets
from cookbook.config import data_dir

# Fixed zip timestamp: np.savez_compressed stamps entries with the current time, which makes every
# rebuild differ byte for byte. 1980-01-01 is the earliest date a zip entry can carry.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Found:
    """Where a data set came from: ``source`` is a short label, ``path`` the file or folder."""

    source: str  # "COOKBOOK_DATA" | "assets" | "assets subset" | "debian" | "cache" | "online" | "python stdlib"
    path: Path

    def __str__(self) -> str:
        return f"{self.source} ({self.path})"


def user_data(*names: str) -> list[Path]:
    """Candidate paths under ``$COOKBOOK_DATA`` (empty when it is not set)."""
    root = data_dir()
    return [root / n for n in names] if root is not None else []


def find_user_file(name: str, searched: list[str], note: str = "COOKBOOK_DATA") -> Found | None:
    """``$COOKBOOK_DATA/<name>`` as a Found if it exists; every candidate is appended to ``searched``."""
    for p in user_data(name):
        searched.append(f"{p} ({note})")
        if p.exists():
            return Found("COOKBOOK_DATA", p)
    return None


def committed(rel: str) -> Path | None:
    """``assets/<rel>`` verified against MANIFEST, or None when the file is not there.

    A file that is present but fails its checksum raises ValueError (from ``cookbook.assets``):
    a corrupt committed file must be loud, not silently skipped.
    """
    if not (_assets.ASSETS / rel).exists():
        return None
    return _assets.asset(rel)


def locate_user_or_committed(filename: str, rel: str, name: str, how: str) -> Found:
    """``$COOKBOOK_DATA/<filename>``, else the committed ``assets/<rel>``, else ``not_found``.

    The lookup order of every data set that ships one committed file (no system package).
    """
    searched: list[str] = []
    if found := find_user_file(filename, searched):
        return found
    searched.append(f"{_assets.ASSETS / rel} (committed)")
    path = committed(rel)
    if path is not None:
        return Found("assets", path)
    raise not_found(name, searched, how)


def not_found(name: str, searched: list[str], how: str) -> FileNotFoundError:
    """The one error a loader raises when no source has the data set."""
    lines = "\n".join(f"  - {s}" for s in searched)
    return FileNotFoundError(f"{name} not found. Looked in:\n{lines}\nTo get it: {how}")


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], level: int = 9) -> Path:
    """Write ``arrays`` like ``np.savez_compressed`` but byte-reproducible.

    Entries are sorted by name, carry a fixed timestamp and are deflated at level 9, so the same
    arrays give the same bytes (with the same zlib; a different zlib build may compress
    differently, the content read back is identical either way). ``np.load`` reads the result.
    ``level`` is the deflate level: 9 for committed files, 1 for quick local caches.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            if arr.dtype == object:
                raise TypeError(f"{name}: object arrays would need pickle; encode strings with pack_strings")
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=level)
    os.replace(tmp, path)
    return path


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def pack_strings(strings: list[str]) -> np.ndarray:
    """A list of strings as one uint8 array (UTF-8, newline-separated; no string may hold one)."""
    if any("\n" in s for s in strings):
        raise ValueError("pack_strings: a string contains a newline")
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8).copy()


def unpack_strings(arr: np.ndarray) -> list[str]:
    """Inverse of :func:`pack_strings`."""
    return arr.tobytes().decode("utf-8").split("\n") if arr.size else []


def unit_hash(key: str) -> float:
    """A stable pseudo-random number in [0, 1) from ``key`` (sha256; same on every machine)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def file_digest(path: str | Path, n: int = 16) -> str:
    """First ``n`` hex digits of a file's sha256 (used to key caches of parsed system files)."""
    return _assets.sha256(path)[:n]


def to_tensor(a: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A torch tensor that owns a copy of ``a``, so callers may modify it without touching caches."""
    t = torch.from_numpy(np.array(a, copy=True))
    return t.to(dtype) if dtype is not None else t
