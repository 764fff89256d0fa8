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
    assert "FAST smoke run" in out and "NOT results" in out          # never read as findings
    assert "none committed yet for these notebooks" in out
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


def _error_line(capsys) -> str:
    """The one error line a refused command prints (argparse puts the usage above it), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1, err
    return lines[0]


def _exit_code(argv) -> int:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code


@pytest.mark.slow
def test_run_reports_a_cell_timeout_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COOKBOOK_RESULTS", str(tmp_path / "results"))
    slow = _notebook(tmp_path / "93_slow.ipynb", ["x = 1", "import time; time.sleep(5)", "y = 2"])
    good = _notebook(tmp_path / "94_good.ipynb", ["1 + 1"])
    code = cli.main(["run", "--fast", "--timeout", "1", str(slow), str(good)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL 93_slow" in out and "cell 1 timed out after 1 s" in out
    assert "ok   94_good" in out and "# Results summary" in out   # the rest and the summary still ran


def _dies(self, cell, index, **kw):
    from nbclient.exceptions import DeadKernelError

    raise DeadKernelError("Kernel died")


def _never_ready(self):
    raise RuntimeError("Kernel didn't respond in 60 seconds")


@pytest.mark.slow
@pytest.mark.parametrize("method, fake, message", [
    ("execute_cell", _dies, "cell 0: the kernel died (Kernel died)"),
    ("start_new_kernel_client", _never_ready, "kernel could not start: Kernel didn't respond in 60 seconds"),
])
def test_run_reports_dead_and_unstartable_kernels(tmp_path, monkeypatch, capsys, method, fake, message):
    import nbclient

    monkeypatch.setenv("COOKBOOK_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(nbclient.NotebookClient, method, fake)
    nb = _notebook(tmp_path / "95_nb.ipynb", ["1"])
    good = _notebook(tmp_path / "96_nb.ipynb", ["1"])
    assert cli.main(["run", "--fast", str(nb), str(good)]) == 1
    out = capsys.readouterr().out
    assert "FAIL 95_nb" in out and message in out
    assert "FAIL 96_nb" in out and "# Results summary" in out   # the next notebook was still tried


def test_run_refuses_directories_and_other_files(tmp_path, capsys):
    assert _exit_code(["run", str(tmp_path)]) == 2
    assert "is a directory" in _error_line(capsys)
    script = tmp_path / "x.py"
    script.write_text("1")
    assert _exit_code(["run", str(script)]) == 2
    assert "is not a notebook (.ipynb)" in _error_line(capsys)


@pytest.mark.parametrize("value", ["-5", "0", "soon"])
def test_run_timeout_must_be_a_positive_integer(value, capsys):
    assert _exit_code(["run", "--timeout", value]) == 2
    assert "argument --timeout" in _error_line(capsys)


def test_version(capsys):
    import cookbook

    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cookbook {cookbook.__version__}"


@pytest.mark.parametrize("argv, flag", [
    (["kd-loss", "--n", "0"], "--n"), (["kd-loss", "--n", "abc"], "--n"),
    (["kd-loss", "--n", "256,-1"], "--n"), (["kd-loss", "--threads", "0"], "--threads"),
    (["kd-loss", "--max-gb", "nan"], "--max-gb"),
    (["graph", "--nodes", "0"], "--nodes"), (["graph", "--queries", "-1"], "--queries"),
    (["graph", "--repeats", "abc"], "--repeats"), (["graph", "--hidden", "0"], "--hidden"),
    (["graph", "--threads", "0"], "--threads"),
])
def test_bench_refuses_bad_numbers(argv, flag, capsys):
    assert _exit_code(["bench", *argv]) == 2
    assert f"argument {flag}:" in _error_line(capsys)


def test_bench_kd_loss_refuses_cuda_without_a_gpu(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _exit_code(["bench", "kd-loss", "--device", "cuda"]) == 2
    assert "CUDA is not available here: use --device cpu" in _error_line(capsys)


def test_bench_kd_loss_as_a_module_gives_one_line(tmp_path):
    import subprocess
    import sys

    from cookbook.config import ROOT

    proc = subprocess.run([sys.executable, "-m", "cookbook.bench.kd_loss", "--n", "abc"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("argument --n: 'abc' is not an integer")


def test_unknown_bench_goes_to_stderr(capsys):
    assert cli.main(["bench", "no-such-bench"]) == 2
    assert "unknown benchmark 'no-such-bench'" in _error_line(capsys)


def test_committed_results_are_the_readme_blocks():
    from cookbook import results

    text = results.committed_results(["00_quickstart"])
    assert text.startswith("## 00_quickstart (FULL, committed)") and "| FULL |" in text
    assert "01a_vision" not in text and results.committed_results(["no-such"]) == ""
