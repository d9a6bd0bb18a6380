"""The report over hand-written records: aggregates, flags, files, plots, --status, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from prompt_bench.report import chance_level, load_records, main, summarize, write_report
from tests.helpers.records import write_record

GROUP = ["method", "backbone", "dataset"]


def by_group(summary: pd.DataFrame) -> dict[tuple, dict]:
    return {tuple(row[name] for name in GROUP): row for row in summary.to_dict("records")}


def test_load_records_flattens_one_row_per_record(sweep_root: Path) -> None:
    frame = load_records(sweep_root)
    assert len(frame) == 11
    assert {"config.method.name", "metrics.test/primary", "efficiency.train_seconds", "chance"} <= set(frame.columns)
    assert frame["status"].value_counts().to_dict() == {"ok": 9, "failed": 1, "running": 1}


def test_chance_level_from_record_or_dataset() -> None:
    assert chance_level({"config": {"dataset": {"name": "bbc_news"}}}) == pytest.approx(0.2)
    assert chance_level({"config": {"dataset": {"name": "tweets_cars"}}}) == pytest.approx(1 / 3)
    assert chance_level({"config": {"dataset": {"name": "synthetic", "task": {"n_classes": 4}}}}) == 0.25
    assert chance_level({"metrics": {"chance": 0.1}, "config": {"dataset": {"name": "bbc_news"}}}) == 0.1
    assert chance_level({"config": {"dataset": {"name": "my_csv"}}}) is None


def test_summary_means_std_and_flags(sweep_root: Path) -> None:
    rows = by_group(summarize(load_records(sweep_root), GROUP, "primary", ["efficiency.train_seconds"]))
    full = rows[("prompt_tuning", "minilm", "bbc_news")]
    assert (full["mean"], full["std"]) == (pytest.approx(0.85), pytest.approx(0.05))
    assert (full["n_ok"], full["n_missing"], full["n_failed"], full["n_collapsed"]) == (3, 0, 0, 0)
    assert full["metric"] == "test/acc" and full["zero_shot"] == pytest.approx(0.7)
    assert full["efficiency.train_seconds"] == pytest.approx(200.0)

    short = rows[("prompt_tuning", "mpnet", "bbc_news")]
    assert short["mean"] == pytest.approx(0.91) and short["std"] == pytest.approx(math.sqrt(2e-4))
    assert (short["n_ok"], short["n_missing"], short["missing_seeds"]) == (2, 1, "42")

    broken = rows[("fine_tuning", "minilm", "bbc_news")]
    assert (broken["n_ok"], broken["n_failed"], broken["n_collapsed"], broken["n_missing"]) == (2, 1, 1, 1)
    assert broken["mean"] == pytest.approx(0.575)

    tweets = rows[("prompt_tuning", "minilm", "tweets_airline")]
    assert tweets["metric"] == "test/f1" and tweets["mean"] == pytest.approx(0.61)
    assert (tweets["n_running"], tweets["n_missing"], tweets["missing_seeds"]) == (1, 1, "42")


def test_explicit_metric_single_seed_and_seed_groups(sweep_root: Path) -> None:
    frame = load_records(sweep_root)
    by_seed = summarize(frame, ["method", "backbone", "dataset", "seed"], "test/acc")
    one = by_seed[(by_seed["backbone"] == "minilm") & (by_seed["dataset"] == "bbc_news") & (by_seed["seed"] == 13)]
    assert sorted(one["mean"]) == pytest.approx([0.80, 0.95]) and one["std"].isna().all()
    assert by_seed.loc[by_seed["n_ok"] == 1, "n_missing"].eq(0).all()  # a seed group expects only its seed
    tweets = by_group(summarize(frame, GROUP, "test/acc"))[("prompt_tuning", "minilm", "tweets_airline")]
    assert tweets["mean"] == pytest.approx(0.5) and tweets["zero_shot"] == pytest.approx(0.1)


def test_rerun_replaces_failed_record_with_same_key(tmp_path: Path) -> None:
    write_record(tmp_path, "s", "prompt_tuning", "minilm", "bbc_news", 13, status="failed", run_key="k")
    write_record(tmp_path, "s", "prompt_tuning", "minilm", "bbc_news", 13, score=0.9, run_key="k")
    row = summarize(load_records(tmp_path), GROUP).iloc[0]
    assert (row["n_ok"], row["n_failed"]) == (1, 0)


def test_unknown_column_or_metric_is_a_sentence(sweep_root: Path) -> None:
    frame = load_records(sweep_root)
    with pytest.raises(ValueError, match="config.dataset.shots"):
        summarize(frame, ["config.dataset.shots"])
    with pytest.raises(ValueError, match="test/acc"):
        summarize(frame, GROUP, "test/bleu")


def test_write_report_files_and_plots(sweep_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = write_report(load_records(sweep_root), out, GROUP, columns=["efficiency.train_seconds"])
    assert set(report.files) == {"csv", "md", "tex", "html", "scaling", "heatmap"}
    csv = pd.read_csv(out / "report.csv")
    full = csv[(csv["method"] == "prompt_tuning") & (csv["backbone"] == "minilm") & (csv["dataset"] == "bbc_news")]
    assert full["mean"].item() == pytest.approx(0.85) and full["std"].item() == pytest.approx(0.05)
    assert csv["n_failed"].sum() == 1 and csv["n_collapsed"].sum() == 1 and csv["n_running"].sum() == 1
    markdown = (out / "report.md").read_text()
    assert "| prompt_tuning | minilm | bbc_news | test/acc | 85.0 ± 5.0 |" in markdown
    assert "1 (42)" in markdown
    latex = (out / "report.tex").read_text()
    assert r"bbc\_news" in latex and r"$\pm$" in latex and "bbc_news" not in latex
    for name in ("scaling", "heatmap"):
        with Image.open(out / f"{name}.png") as image:
            image.verify()
        with Image.open(out / f"{name}.png") as image:
            assert image.width >= 300 and image.height >= 200
        assert (out / f"{name}.png").stat().st_size > 5_000


def test_no_scaling_plot_with_one_backbone_size(tmp_path: Path) -> None:
    write_record(tmp_path, "s", "prompt_tuning", "minilm", "bbc_news", 13, score=0.9)
    report = write_report(load_records(tmp_path), tmp_path / "out")
    assert "scaling" not in report.files and (tmp_path / "out" / "heatmap.png").is_file()


def test_report_on_sweep_with_only_failed_and_running(tmp_path: Path) -> None:
    write_record(tmp_path, "s", "prompt_tuning", "minilm", "bbc_news", 13, status="failed")
    write_record(tmp_path, "s", "prompt_tuning", "minilm", "bbc_news", 21, status="running")
    assert main([str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "report.csv").iloc[0]
    assert (row["n_ok"], row["n_failed"], row["n_running"], row["n_missing"]) == (0, 1, 1, 2)
    assert not (tmp_path / "heatmap.png").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prompt_bench.report", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_writes_report(sweep_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli_out"
    result = run_cli(str(sweep_root), "--out", str(out), "--columns", "efficiency.train_seconds")
    assert result.returncode == 0, result.stderr
    assert "prompt_tuning" in result.stdout and "85.0 ± 5.0" in result.stdout
    assert {path.name for path in out.iterdir()} == {
        "report.md",
        "report.csv",
        "report.tex",
        "report.html",
        "scaling.png",
        "heatmap.png",
    }


def test_cli_status_counts_and_failures(sweep_root: Path) -> None:
    result = run_cli(str(sweep_root), "--status")
    assert result.returncode == 0, result.stderr
    rows = {  # sweep dir -> [ok, failed, running, corrupt, other, total], read off the rich table
        cells[0]: cells[1:]
        for line in result.stdout.splitlines()
        if len(cells := [cell.strip() for cell in line.split("│")[1:-1]]) == 7
    }
    assert rows[str(sweep_root / "s1")] == ["7", "1", "0", "0", "0", "8"]
    assert rows[str(sweep_root / "s2")] == ["2", "0", "1", "0", "0", "3"]
    assert "fine_tuning_minilm_bbc_news_s42_failed: RuntimeError: CUDA out of memory" in result.stdout
    assert "Traceback line two" not in result.stdout


def test_cli_empty_dir_fails_with_message(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path))
    assert result.returncode == 1
    assert "no record.json under" in result.stdout


def test_a_sweep_whose_runs_mixed_transformers_versions_is_flagged(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    for seed, version in ((13, "5.23.0"), (21, "5.24.0"), (42, "5.24.0")):
        run_dir = write_record(root, "mixed", "prompt_tuning", "minilm", "bbc_news", seed, score=0.8)
        record = json.loads((run_dir / "record.json").read_text())
        record["versions"] = {"torch": "2.13.0", "transformers": version}
        (run_dir / "record.json").write_text(json.dumps(record))
    write_record(root, "plain", "prompt_tuning", "minilm", "bbc_news", 13, score=0.8)  # no versions: not flagged
    result = run_cli(str(root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    warning = " ".join(result.stdout.split())
    assert "runs used different transformers versions, 5.23.0 (1 runs), 5.24.0 (2 runs)" in warning
    assert str(root / "mixed") in warning and "torch versions" not in warning
    assert str(root / "plain") + ":" not in warning
