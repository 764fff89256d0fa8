"""Text in eight categories (three natural languages, five programming languages) for tokenizer science.

Notebook 08b trains BPE tokenizers on known mixtures of these categories and recovers the
proportions from the merge list alone (P69), and builds character-level tasks from their words.
Every category is real text that a Debian machine with Python, a JDK, Node and Perl carries:

==========  ===================================================  =================
category    source on the machine                                licence
==========  ===================================================  =================
english     man pages ``/usr/share/man/man{1,5,7,8}`` (groff     per page (GPL and
            stripped to plain text)                              others)
german      ``/usr/share/man/de/man*`` (translated pages)         same
french      ``/usr/share/man/fr/man*``                           same
python      the standard library ``.py`` files (no tests)        PSF
c           ``/usr/include/**/*.h``                              various (glibc LGPL, ...)
java        the JDK's ``lib/src.zip`` (``java.base``)             GPL-2 + Classpath
javascript  ``/usr/lib/node_modules/npm/**/*.js``                Artistic-2 / MIT
perl        ``/usr/share/perl/5.*/**/*.pm``                      Artistic / GPL
==========  ===================================================  =================

A new machine may lack the JDK or Node, so the sample is committed: ``assets/data/textmix.json.xz``
(about 700 kB of text per category, documents taken in a fixed hash order; 1.3 MB compressed),
rebuilt by ``python -m cookbook.data build textmix``. Resolution order:
``$COOKBOOK_DATA/textmix.json.xz`` -> the committed file -> a build from this machine's files.

Each document goes by a hash of its id to one of two disjoint pools: ``"train"`` (what a
tokenizer is trained on) and ``"count"`` (the attacker's own sample of each category, used to
count byte pairs); the split is fixed so the attack never sees the tokenizer's training text.
"""

from __future__ import annotations

import glob
import gzip
import json
import lzma
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cookbook.checks import check_choice
from cookbook.config import ASSETS
from cookbook.data._common import Found, locate_user_or_committed, unit_hash

ASSET = "data/textmix.json.xz"
CATEGORIES = ("english", "german", "french", "python", "c", "java", "javascript", "perl")
POOLS = ("train", "count")
BYTES_PER_CATEGORY = 700_000
COUNT_SHARE = 0.35  # share of documents (by id hash) in the attacker's "count" pool
_MAX_DOC_BYTES = 40_000  # long files are cut so that no single file dominates a category


@dataclass(frozen=True)
class TextMix:
    """Documents per category and pool: ``docs[category][pool]`` is a list of strings."""

    docs: dict[str, dict[str, list[str]]]
    found: Found

    @property
    def source(self) -> str:
        return self.found.source

    def text(self, category: str, pool: str = "train") -> str:
        """All documents of one category and pool joined by blank lines."""
        check_choice("category", category, CATEGORIES)
        check_choice("pool", pool, POOLS)
        return "\n\n".join(self.docs[category][pool])

    def nbytes(self, category: str, pool: str = "train") -> int:
        return len(self.text(category, pool).encode("utf-8"))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{c} {self.nbytes(c, 'train') // 1000}+{self.nbytes(c, 'count') // 1000} kB"
                          for c in CATEGORIES)
        return f"TextMix({sizes}; source={self.found})"


_GROFF_KEEP = re.compile(r"^\.(SH|SS|B|I|BR|RB|IR|RI|BI|IB|TP|IP|TQ|Nm|Nd|Ar|Fl)\b\s*")
_GROFF_NAMED = re.compile(r"\\\*?(?:\((..)|\[([^\]]*)\])")  # \(xx, \*(xx, \[name]
_GROFF_GLYPHS = {
    "aq": "'", "cq": "'", "oq": "'", "lq": '"', "rq": '"', "dq": '"', "em": "-", "en": "-", "hy": "-",
    "mi": "-", "bu": "*", "co": "(c)", "rg": "(R)", "ss": "ß", "Fo": "«", "Fc": "»", "Eu": "€",
    **{f":{c}": u for c, u in zip("aouAOUeiy", "äöüÄÖÜëïÿ")},
    **{f"'{c}": u for c, u in zip("aeiouEAOU", "áéíóúÉÁÓÚ")},
    **{f"`{c}": u for c, u in zip("aeiouAEU", "àèìòùÀÈÙ")},
    **{f"^{c}": u for c, u in zip("aeiouAEIOU", "âêîôûÂÊÎÔÛ")},
    ",c": "ç", ",C": "Ç", "~n": "ñ", "~N": "Ñ",
}
_GROFF_ESC = [(re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""), (re.compile(r"\\n(\[[^\]]*\]|\(..|.)"), ""),
              (re.compile(r"\\[-e]"), "-"), (re.compile(r"\\[&|^~0:/%]"), ""),
              (re.compile(r"\\s[+-]?\d"), ""), (re.compile(r"\\(.)"), r"\1")]


def strip_groff(source: str) -> str:
    """Plain text of a man page: comments, macro definitions and layout requests dropped.

    Section and font macros (``.SH``, ``.B``, ``.TP`` ...) keep their argument text; other
    requests (``.TH``, ``.PP``, ``.nf`` ...) and ``.de`` ... ``..`` definitions are dropped;
    named glyphs (``\\(:a``, ``\\[aq]``) become their characters, font escapes vanish. Not a
    groff renderer: enough to leave the prose of the page, which is what a tokenizer counts.
    """
    out, in_macro = [], False
    for line in source.splitlines():
        if in_macro:
            in_macro = line.strip() != ".."
            continue
        if line.startswith((".de ", ".de1 ", ".am ")):
            in_macro = True
            continue
        if line.startswith(('.\\"', "'\\\"", "\\\"")):
            continue
        if line.startswith((".", "'")):
            keep = _GROFF_KEEP.match(line)
            if not keep:
                continue
            line = line[keep.end():].replace('"', "")
        line = _GROFF_NAMED.sub(lambda m: _GROFF_GLYPHS.get(m.group(1) or m.group(2), ""), line)
        for pattern, repl in _GROFF_ESC:
            line = pattern.sub(repl, line)
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


_STOPWORDS = {"english": {"the", "and", "is", "of", "to", "with", "this", "that"},
              "german": {"der", "die", "und", "ist", "nicht", "mit", "das", "wird"},
              "french": {"le", "la", "les", "et", "est", "des", "une", "pour"}}


def is_language(text: str, language: str) -> bool:
    """True when ``language``'s stopwords outnumber English ones (drops untranslated man pages)."""
    words = re.findall(r"[a-zäöüéèàç]+", text.lower())
    own = sum(w in _STOPWORDS[language] for w in words)
    return own > 20 and own > 2 * sum(w in _STOPWORDS["english"] for w in words)


def _man(lang_dir: str) -> list[tuple[str, str]]:
    files = sorted(glob.glob(f"/usr/share/man/{lang_dir}/*.gz"))
    docs = []
    for f in files:
        try:
            docs.append((f, strip_groff(gzip.open(f, "rt", encoding="utf-8", errors="replace").read())))
        except (OSError, EOFError):
            continue
    return docs


def _files(pattern: str) -> list[tuple[str, str]]:
    out = []
    for f in sorted(glob.glob(pattern, recursive=True)):
        if "/test" in f or "/tests/" in f or "site-packages" in f or "dist-packages" in f:
            continue
        try:
            out.append((f, Path(f).read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return out


def _java() -> list[tuple[str, str]]:
    zips = [z for z in sorted(glob.glob("/usr/lib/jvm/*17*/lib/src.zip")) + sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip"))
            if Path(z).is_file()]
    if not zips:
        return []
    with zipfile.ZipFile(zips[0]) as z:
        names = sorted(n for n in z.namelist() if n.startswith("java.base/") and n.endswith(".java"))
        return [(n, z.read(n).decode("utf-8", errors="replace")) for n in names]


def _sources() -> dict[str, list[tuple[str, str]]]:
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    return {
        "english": [d for s in ("man1", "man5", "man7", "man8") for d in _man(s)],
        "german": [d for d in _man("de/man*") if is_language(d[1], "german")],
        "french": [d for d in _man("fr/man*") if is_language(d[1], "french")],
        "python": _files(f"{stdlib}/**/*.py"),
        "c": _files("/usr/include/**/*.h"),
        "java": _java(),
        "javascript": _files("/usr/lib/node_modules/npm/**/*.js"),
        "perl": _files("/usr/share/perl/5.*/**/*.pm"),
    }


def _sample(docs: list[tuple[str, str]], budget: int) -> list[tuple[str, str]]:
    """Distinct documents in a fixed hash order of their ids until ``budget`` bytes, each cut to 40 kB."""
    out, used, seen = [], 0, set()
    for doc_id, text in sorted(docs, key=lambda d: unit_hash("textmix:" + d[0])):
        text = text.strip()
        if len(text) < 200 or text in seen:  # man pages are often one file under several names
            continue
        seen.add(text)
        text = text.encode("utf-8")[:_MAX_DOC_BYTES].decode("utf-8", errors="ignore")
        out.append((doc_id, text))
        used += len(text.encode("utf-8"))
        if used >= budget:
            break
    return out


def build_textmix(out: str | Path | None = None) -> Path:
    """Sample every category from this machine's files and write the committed xz json."""
    out = Path(out) if out is not None else ASSETS / ASSET
    sources = _sources()
    missing = [c for c, d in sources.items() if not d]
    if missing:
        raise FileNotFoundError(f"no files found for {missing}: build textmix on a machine with man pages "
                                "(manpages, manpages-de, manpages-fr), a JDK, Node/npm and Perl")
    table = {c: [[i, t] for i, t in _sample(sources[c], BYTES_PER_CATEGORY)] for c in CATEGORIES}
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(table, ensure_ascii=False, sort_keys=True).encode("utf-8")
    out.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    return out


def _pools(table: dict[str, list[list[str]]], found: Found) -> TextMix:
    docs = {c: {"train": [], "count": []} for c in CATEGORIES}
    for c in CATEGORIES:
        for doc_id, text in table[c]:
            pool = "count" if unit_hash("textmix-pool:" + doc_id) < COUNT_SHARE else "train"
            docs[c][pool].append(text)
    return TextMix(docs, found)


def locate_textmix() -> Found:
    return locate_user_or_committed("textmix.json.xz", ASSET, "textmix",
                                    "python -m cookbook.data build textmix (needs man pages, a JDK, "
                                    "Node/npm and Perl on the machine)")


def load_textmix() -> TextMix:
    """The eight categories split into the "train" and "count" pools (see the module docstring)."""
    found = locate_textmix()
    table = json.loads(lzma.decompress(found.path.read_bytes()).decode("utf-8"))
    return _pools(table, found)
