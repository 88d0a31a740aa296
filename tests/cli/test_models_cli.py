import json

import pytest

from resnetlab.cli import main

PAPER_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                "resnet101": 44_549_160, "resnet152": 60_192_808, "resnet20": 269_722,
                "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018, "resnet110": 1_727_962}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_summary_json_gives_the_paper_counts(name, capsys):
    assert main(["summary", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == PAPER_PARAMS[name]
    assert isinstance(out["mult_adds"], int) and out["mult_adds"] > 0


def test_summary_table_with_input_size(capsys):
    assert main(["summary", "resnet20", "--input-size", "1", "28", "28"]) == 0
    out = capsys.readouterr().out
    assert "64x7x7" in out and "parameters" in out


def test_models_lists_names_with_params(capsys):
    assert main(["models", "--family", "cifar", "--json"]) == 0
    rows = {r["name"]: r["params"] for r in json.loads(capsys.readouterr().out)}
    assert rows["resnet56"] == 853_018 and rows["plain56"] == 853_018


def test_conv_command(capsys):
    assert main(["conv", "7", "3", "--stride", "3"]) == 0
    assert "does not tile" in capsys.readouterr().out


def test_bad_model_name_is_one_error_line(capsys):
    assert main(["summary", "resnet21"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'resnet21'")


def test_bad_conv_arguments_are_one_error_line(capsys):
    assert main(["conv", "3", "5"]) == 2
    assert capsys.readouterr().err.startswith("error: filter 5 is larger")
