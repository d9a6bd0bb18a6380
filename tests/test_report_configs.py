"""Reports never average two configs: differing config keys become columns, an explicit --group-by
that mixes configs warns, sweeps get a selected-on-dev table, report.html is self-contained, and
the plots carry n, std, zero-shot and chance."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from prompt_bench.report import load_records, main, write_report
from prompt_bench.report.grouping import varying_keys
from prompt_bench.report.plots import draw_heatmap, draw_scaling, heatmap_cells, scaling_points
from tests.helpers.records import write_record

LR = "config.method.optimizer.lr"
N_TOKENS = "config.method.module.n_tokens"


def lr_sweep(root: Path) -> Path:
    """The issue's example: prompt_tuning/minilm/bbc_news at lr 0.03 and 3.0, seeds 13 and 21.

    lr 0.03 scores 0.40, 0.30 (dev 0.50, 0.40); lr 3.0 scores 0.20, 0.30 (dev 0.30, 0.20). Each run also
    carries what every real record has: paths, a sweep name, seed-following seeds and a key that copies lr.
    """
    scores = {0.03: ((13, 0.40, 0.50), (21, 0.30, 0.40)), 3.0: ((13, 0.20, 0.30), (21, 0.30, 0.20))}
    for lr, runs in scores.items():
        for seed, score, dev in runs:
            config = {
                "method": {"optimizer": {"lr": lr}, "module": {"n_tokens": 20, "seed": seed}, "head_lr": lr},
                "dataset": {"split_seed": seed},
                "paths": {"output_dir": f"/out/{lr}/{seed}"},
                "sweep_name": f"sweep-{seed}",
                "trainer": {"enable_progress_bar": seed == 13},
            }
            write_record(root, "lr", "prompt_tuning", "minilm", "bbc_news", seed, score=score, dev=dev, config=config)
    return root


def test_differing_config_keys_are_found_but_not_seed_paths_sweep_name_or_copies(tmp_path: Path) -> None:
    frame = load_records(lr_sweep(tmp_path))
    assert varying_keys(frame, ["method", "backbone", "dataset"]) == [LR]


def test_lr_sweep_gives_one_row_per_lr_with_n_2_and_an_lr_column(tmp_path: Path) -> None:
    root = lr_sweep(tmp_path / "outputs")
    report = write_report(load_records(root), tmp_path / "out")
    assert report.group_by == ["method", "backbone", "dataset", LR] and report.warnings == []
    rows = report.summary.set_index(LR)
    assert rows.loc[0.03, "mean"] == pytest.approx(0.35) and rows.loc[3.0, "mean"] == pytest.approx(0.25)
    assert rows["n_ok"].tolist() == [2, 2] and rows.loc[0.03, "dev"] == pytest.approx(0.45)
    assert list(report.table.columns[:4]) == ["method", "backbone", "dataset", "lr"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| prompt_tuning | minilm | bbc_news | 0.03 | 35.0 ± 7.1 | 70.0 | 2 |" in markdown
    assert "| prompt_tuning | minilm | bbc_news | 3 | 25.0 ± 7.1 | 70.0 | 2 |" in markdown
    assert pd.read_csv(tmp_path / "out" / "report.csv")[LR].tolist() == [0.03, 3.0]


def test_cli_lr_sweep_prints_two_rows_and_the_selection(tmp_path: Path, capsys) -> None:
    root = lr_sweep(tmp_path / "outputs")
    assert main([str(root), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "35.0 ± 7.1" in out and "25.0 ± 7.1" in out and "selected on dev" in out
    assert "warning" not in out


def test_group_by_override_that_mixes_configs_warns_naming_the_keys(tmp_path: Path, capsys) -> None:
    root = lr_sweep(tmp_path / "outputs")
    report = write_report(load_records(root), tmp_path / "out", ["method", "backbone", "dataset"])
    assert len(report.summary) == 1 and report.summary["n_ok"].item() == 4
    (warning,) = report.warnings
    assert "method=prompt_tuning, backbone=minilm, dataset=bbc_news holds 4 runs of different configs" in warning
    assert "method.optimizer.lr: 0.03, 3.0" in warning and "split_seed" not in warning
    assert "warning: the group method=prompt_tuning" in (tmp_path / "out" / "report.md").read_text()
    assert main([str(root), "--out", str(tmp_path / "cli"), "--group-by", "method,dataset"]) == 0
    assert "holds 4 runs of different configs (method.optimizer.lr: 0.03, 3.0; method.head_lr: 0.03, 3.0)" in " ".join(
        capsys.readouterr().out.split()
    )
    # naming the key in --group-by splits the rows again, with no warning
    split = write_report(load_records(root), tmp_path / "split", ["method", LR])
    assert split.warnings == [] and split.summary["n_ok"].tolist() == [2, 2]


def test_selected_on_dev_picks_the_best_dev_setting_and_reports_its_test_score(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    # lr 0.3 wins on test (0.9) but lr 0.03 wins on dev (0.8 vs 0.6): the selection reports 0.5.
    for lr, tokens, score, dev in ((0.03, 5, 0.5, 0.8), (0.3, 5, 0.9, 0.6), (0.3, 20, 0.7, 0.7)):
        config = {"method": {"optimizer": {"lr": lr}, "module": {"n_tokens": tokens}}}
        write_record(root, "optuna", "prompt_tuning", "minilm", "bbc_news", 13, score=score, dev=dev, config=config)
    report = write_report(load_records(root), tmp_path / "out")
    assert report.group_by == ["method", "backbone", "dataset", LR, N_TOKENS]
    chosen = report.selection.iloc[0]
    assert (chosen[LR], chosen[N_TOKENS], chosen["settings"]) == (0.03, 5, 3)
    assert chosen["chosen_dev"] == pytest.approx(0.8) and chosen["mean"] == pytest.approx(0.5)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## selected on dev" in markdown
    assert "| prompt_tuning | minilm | bbc_news | 0.03 | 5 | 3 | 80.0 | 50.0 ± - | 1 |" in markdown
    assert pd.read_csv(tmp_path / "out" / "selected_on_dev.csv")["mean"].item() == pytest.approx(0.5)


def test_no_selection_table_when_each_cell_has_one_config(sweep_root: Path, tmp_path: Path) -> None:
    report = write_report(load_records(sweep_root), tmp_path / "out")
    assert report.selection is None and "selected on dev" not in (tmp_path / "out" / "report.md").read_text()


def test_report_html_is_self_contained_and_holds_the_tables_and_plots(sweep_root: Path, tmp_path: Path) -> None:
    write_report(load_records(sweep_root), tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "report.html fetches something"
    assert "<script" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') == 2  # scaling and heatmap
    assert "<td>85.0 ± 5.0</td>" in page and "<td>91.0 ± 1.4</td>" in page
    assert '<td class="label">tweets_airline</td>' in page


def test_scaling_plot_has_n_std_zero_shot_chance_and_a_line_per_method_and_family(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    for backbone, family, scores in (
        ("minilm", "encoder", (0.6, 0.8)),
        ("mpnet", "encoder", (0.7, 0.9)),
        ("t5_small", "seq2seq", (0.5, 0.5)),
    ):
        for seed, score in zip((13, 21), scores):
            write_record(root, "s", "prompt_tuning", backbone, "bbc_news", seed, score=score, family=family)
    write_record(root, "s", "prompt_tuning", "minilm", "bbc_news", 42, score=0.7)
    points = scaling_points(load_records(root))
    by_backbone = points.set_index("backbone")
    assert by_backbone.loc["minilm", "n_ok"] == 3 and by_backbone.loc["mpnet", "std"] == pytest.approx(0.1414, 1e-3)
    axis = draw_scaling(points).axes[0]
    assert sorted(text.get_text() for text in axis.texts) == ["n=2", "n=2", "n=3"]
    labels = axis.get_legend_handles_labels()[1]
    assert {"prompt_tuning (encoder)", "prompt_tuning (seq2seq)", "zero-shot (encoder)", "chance (20.0)"} <= set(labels)
    chance = [line for line in axis.get_lines() if line.get_label().startswith("chance")]
    assert chance and list(chance[0].get_ydata()) == pytest.approx([20.0, 20.0])
    zero_shot = next(line for line in axis.get_lines() if line.get_label() == "zero-shot (encoder)")
    assert list(zero_shot.get_ydata()) == pytest.approx([70.0, 70.0])
    error_bars = [c for c in axis.containers if c.get_label() == "prompt_tuning (encoder)"]
    segments = error_bars[0].lines[2][0].get_segments()  # the y error bar of each point: mean ± std
    assert [seg[1][1] - seg[0][1] for seg in segments] == pytest.approx([20.0, 2 * 14.142], 1e-3)


def test_heatmap_cells_show_mean_std_and_n(sweep_root: Path) -> None:
    cells = heatmap_cells(load_records(sweep_root))
    texts = {text.get_text() for axis in draw_heatmap(cells).axes for text in axis.texts}
    assert {"85.0 ± 5.0\nn=3", "57.5 ± 53.0\nn=2", "61.0 ± 1.4\nn=2", "91.0 ± 1.4\nn=2"} <= texts
