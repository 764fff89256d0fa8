"""The argparse types the CLIs share: bad values are refused with a message, good ones come back typed."""

import argparse

import pytest
import torch

from cookbook.argtypes import comma_list, device_choice, finite_float, positive_float, positive_int


def test_positive_int():
    assert positive_int("3") == 3
    for bad, why in [("0", "positive integer"), ("-5", "positive integer"), ("abc", "not an integer"),
                     ("1.5", "not an integer")]:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            positive_int(bad)


def test_finite_and_positive_float():
    assert finite_float("-0.5") == -0.5 and positive_float("1e-3") == 1e-3
    for bad in ("nan", "inf", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            finite_float(bad)
    for bad in ("0", "-1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)


def test_comma_list_checks_every_item():
    ints = comma_list(positive_int)
    assert ints("256, 512,") == [256, 512]
    with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
        ints("256,0")
    with pytest.raises(argparse.ArgumentTypeError, match="at least one"):
        ints(",")


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_choice("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="CUDA is not available"):
        device_choice("cuda")
    with pytest.raises(argparse.ArgumentTypeError, match="cpu or cuda"):
        device_choice("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_choice("cuda") == "cuda"


def test_a_parser_reports_the_argument_in_one_line(capsys):
    p = argparse.ArgumentParser(prog="tool")
    p.add_argument("--n", type=positive_int)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--n", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tool: error: argument --n: 0 is not allowed")
