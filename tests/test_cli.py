"""`cookbook run` executes notebooks headless, reports failures with their cell, writes the summary."""

import json

import nbformat
import pytest

from cookbook import cli


def _notebook(path, code_cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in code_cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_run_records_results_and_reports_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COOKBOOK_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(cli, "NOTEBOOKS", tmp_path)
    good = _notebook(tmp_path / "91_good.ipynb", [
        "from cookbook import results, config",
        "assert config.is_fast()",
        "results.record('91_good', 'method', 'acc', [0.5, 0.7])",
    ])
    _notebook(tmp_path / "92_bad.ipynb", ["x = 1", "raise ValueError('boom')", "y = 2"])
    code = cli.main(["run", "--fast", str(good), str(tmp_path / "92_bad.ipynb")])
    out = capsys.readouterr().out
    assert code == 1                                            # one notebook failed ...
    assert "FAIL 92_bad" in out and "cell 1 failed" in out and "boom" in out
    assert "ok   91_good" in out                                # ... the other still ran
    assert "| 91_good | method | acc | 0.6000 +- 0.1414 (2 seeds) |" in out
    rows = json.loads((tmp_path / "results" / "91_good.json").read_text())
    assert rows[0]["mode"] == "FAST"
    # FAST runs never overwrite the committed notebook
    assert (tmp_path / "results" / "executed" / "91_good.ipynb").exists()
    assert not any(c.get("outputs") for c in nbformat.read(good, as_version=4).cells)


def test_list_and_unknown_names(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "NOTEBOOKS", tmp_path)
    _notebook(tmp_path / "00_a.ipynb", ["1"])
    assert cli.main(["list"]) == 0 and "00_a" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no notebook"):
        cli.main(["run", "zz_missing"])
    assert cli.main(["bench", "no-such-bench"]) == 2
