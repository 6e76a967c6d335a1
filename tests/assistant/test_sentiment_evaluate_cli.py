"""``lovedcrm sentiment evaluate``: its JSON on a small file, its refusals, and the shared
RePro test split against LeIA alone (skipped outside the workplace, a failure under CI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lovedcrm.cli import main
from tests.conftest import shared_path

ROWS = [
    ("Adorei, chegou rápido!", "1", "test"),
    ("Péssimo, veio quebrado", "-1", "test"),
    ("não gostei nada", "-1", "test"),
    ("muito bom, recomendo", "1", "test"),
    ("top demais kkkk", "1", "train"),
    ("não recebi até hoje", "-1", "train"),
    ("excelente produto", "1", "train"),
    ("horrível, quero meu dinheiro de volta", "-1", "train"),
]


def _csv(path: Path, rows: list[tuple[str, str, str]] = ROWS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["mensagem", "rotulo", "parte"])
        out.writerows(rows)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sentiment", "evaluate", *args])
    return result.exit_code, result.output


def test_evaluate_prints_metrics_and_the_leia_baseline(tmp_path: Path) -> None:
    path = _csv(tmp_path / "msgs.csv")
    code, output = _run(
        *("--csv", str(path), "--text-column", "mensagem", "--label-column", "rotulo"),
        *("--split-column", "parte", "--split", "test"),
    )
    assert code == 0, output
    report = json.loads(output)
    assert report["n"] == 4 and report["accuracy"] == 1.0 and report["macro_f1"] == 1.0
    counts = report["confusion_matrix"]["counts"]
    assert counts["negative"]["negative"] == 2 and counts["positive"]["positive"] == 2
    assert set(report["baseline_leia"]) >= {"accuracy", "macro_f1", "confusion_matrix", "n"}


def test_learning_curve_on_a_small_file(tmp_path: Path) -> None:
    path = _csv(tmp_path / "msgs.csv")
    code, output = _run(
        *("--csv", str(path), "--text-column", "mensagem", "--label-column", "rotulo"),
        *("--split-column", "parte", "--split", "test", "--learning-curve", "4"),
    )
    assert code == 0, output
    (point,) = json.loads(output)["learning_curve"]
    assert point["train_rows"] == 4 and 0 <= point["accuracy"] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--text-column", "texto", "--label-column", "rotulo"), "--text-column 'texto'"),
        (("--text-column", "mensagem", "--label-column", "nota"), "--label-column 'nota'"),
        (
            ("--text-column", "mensagem", "--label-column", "rotulo", "--split-column", "x"),
            "--split-column 'x'",
        ),
        (
            ("--text-column", "mensagem", "--label-column", "rotulo", "--split", "test"),
            "--split needs --split-column",
        ),
    ],
)
def test_refusals(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    path = _csv(tmp_path / "msgs.csv")
    code, output = _run("--csv", str(path), *args)
    assert code != 0 and message in output, output


def test_refuses_unknown_labels_and_missing_files(tmp_path: Path) -> None:
    path = _csv(tmp_path / "bad.csv", [("ok", "talvez", "test")])
    code, output = _run("--csv", str(path), "--text-column", "mensagem", "--label-column", "rotulo")
    assert code != 0 and "label 'talvez'" in output
    code, output = _run(
        *("--csv", str(tmp_path / "none.csv"), "--text-column", "a", "--label-column", "b")
    )
    assert code != 0 and "no such file" in output


@pytest.mark.shared
def test_repro_test_split_beats_leia_alone() -> None:
    path = shared_path("data/repro_americanas_reviews_ptbr.csv")
    code, output = _run(
        *("--csv", str(path), "--text-column", "text", "--label-column", "label"),
        *("--split-column", "split", "--split", "test"),
    )
    assert code == 0, output
    report = json.loads(output)
    assert report["n"] == 1516
    assert report["baseline_leia"]["accuracy"] == pytest.approx(0.843, abs=0.001)
    assert report["accuracy"] >= report["baseline_leia"]["accuracy"]
    assert report["accuracy"] >= 0.88
