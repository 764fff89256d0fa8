"""Committed assets and their checksums.

``assets/MANIFEST`` has one line per file: ``<sha256>  <bytes>  <path relative to assets/>``.
Loaders call :func:`asset` to get a verified path; builders call :func:`register` after writing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cookbook.config import ASSETS

MANIFEST = ASSETS / "MANIFEST"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest() -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, bytes)}``."""
    if not MANIFEST.exists():
        return {}
    out = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, size, rel = line.split(maxsplit=2)
            out[rel] = (digest, int(size))
    return out


def register(path: str | Path) -> str:
    """Add or update ``path`` (inside assets/) in the MANIFEST; returns its sha256."""
    path = Path(path).resolve()
    rel = path.relative_to(ASSETS.resolve()).as_posix()
    entries = read_manifest()
    digest = sha256(path)
    entries[rel] = (digest, path.stat().st_size)
    lines = ["# sha256  bytes  path (relative to assets/); rebuilt by the commands in README.md"]
    lines += [f"{d}  {n}  {r}" for r, (d, n) in sorted(entries.items())]
    MANIFEST.write_text("\n".join(lines) + "\n")
    return digest


def asset(rel: str, verify: bool = True) -> Path:
    """Path of a committed asset, checked against its MANIFEST sha256.

    Raises FileNotFoundError if it is absent and ValueError if its checksum differs (a corrupt
    or hand-edited file: rebuild it with the command the README names).
    """
    path = ASSETS / rel
    if not path.exists():
        raise FileNotFoundError(f"asset {rel!r} is missing from {ASSETS}; rebuild it (see README.md, 'Assets').")
    if verify:
        expected = read_manifest().get(rel)
        if expected is None:
            raise ValueError(f"asset {rel!r} is not listed in {MANIFEST}; register it with cookbook.assets.register().")
        got = sha256(path)
        if got != expected[0]:
            raise ValueError(f"asset {rel!r} has sha256 {got[:12]}..., MANIFEST says {expected[0][:12]}...: "
                             "the file is corrupt or was rebuilt without updating MANIFEST.")
    return path
