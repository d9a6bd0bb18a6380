"""`prompt-bench-report --paper` on hand-written records (no training): methods x (dataset x scale) cells as
mean ± std over seeds, the best per column in bold in every format, the zero-shot row, cost columns, rows that
never mix configs, and the scaling plot."""

from __future__ import annotations

import pandas as pd
import pytest

from prompt_bench.report import load_records
from prompt_bench.report import main as report_main
from prompt_bench.report.grouping import resolve_group_by
from prompt_bench.report.paper import ZERO_SHOT_ROW, paper_table, scale_of
from prompt_bench.report.paper_output import cell_text, compact, latex, markdown, write_paper
from prompt_bench.report.paper_plot import ladders
from tests.helpers.records import write_record

SEEDS = {13: -0.01, 21: 0.0, 42: 0.01}  # seed -> offset: each cell's sample std is 0.01
# method -> dataset -> (minilm score, mpnet score); the CoOp family runs on the dual twins.
SCORES = {
    "linear_probe": {"bbc_news": (0.80, 0.85), "tweets_airline": (0.50, 0.55)},
    "prompt_tuning": {"bbc_news": (0.88, 0.90), "tweets_airline": (0.55, 0.60)},
    "coop": {"bbc_news": (0.86, 0.92), "tweets_airline": (0.52, 0.58)},
    "spot": {"bbc_news": (0.87, 0.91), "tweets_airline": (0.56, 0.59)},
}
PAIRS = {"bbc_news": "tweets_all_to_bbc_news", "tweets_airline": "tweets_cars_to_airline"}
PARAMS = {"linear_probe": 1920, "prompt_tuning": 7680, "coop": 4096, "spot": 7680}


def write_sweep(root, sweep="headline", seeds=SEEDS, scores=SCORES):
    for method, per_dataset in scores.items():
        for dataset, by_scale in per_dataset.items():
            for scale, score in zip(("minilm", "mpnet"), by_scale):
                for seed, offset in seeds.items():
                    dual = method == "coop"
                    memory = {"peak_rss_mb": 900.0 if scale == "minilm" else 1800.0, "peak_rss_scope": "run"}
                    if method == "prompt_tuning":
                        memory["peak_gpu_mb"] = 300.0
                    write_record(
                        root,
                        sweep,
                        method,
                        f"{scale}_dual" if dual else scale,
                        dataset,
                        seed,
                        score=score + offset,
                        primary="acc" if dataset == "bbc_news" else "f1",
                        train_seconds=10.0 if scale == "minilm" else 40.0,
                        family="dual_encoder" if dual else "encoder",
                        config={"transfer": {"name": PAIRS[dataset], "source": {"name": "x"}}}
                        if method == "spot"
                        else None,
                        efficiency={"trainable_params": PARAMS[method] * (2 if scale == "mpnet" else 1), **memory},
                    )
    return root / sweep


@pytest.fixture
def table(tmp_path):
    return paper_table(load_records(write_sweep(tmp_path)))


def cell(table, row, dataset, scale):
    found = table.cells[
        (table.cells["row"] == row) & (table.cells["dataset"] == dataset) & (table.cells["scale"] == scale)
    ]
    assert len(found) == 1, found
    return found.iloc[0]


def test_cells_are_mean_and_std_over_seeds_in_dataset_by_scale_columns(table):
    assert table.columns == [(d, s) for d in ("bbc_news", "tweets_airline") for s in ("minilm", "mpnet")]
    assert table.rows == [ZERO_SHOT_ROW, "linear_probe", "prompt_tuning", "spot", "coop"]  # references first
    assert table.metrics == {"bbc_news": "acc", "tweets_airline": "f1"}
    coop = cell(table, "coop", "bbc_news", "minilm")
    assert coop["backbone"] == "minilm_dual"  # the dual twin sits in its text scale's column
    assert (coop["mean"], coop["std"], coop["n"]) == (pytest.approx(0.86), pytest.approx(0.01), 3)
    assert cell_text(coop, 3) == "86.0 ± 1.0" and cell_text(coop, 5) == "86.0 ± 1.0 (n=3)"
    zero_shot = cell(table, ZERO_SHOT_ROW, "tweets_airline", "mpnet")  # the helper's zero_shot/<primary> is 0.7
    assert (zero_shot["mean"], zero_shot["n"], zero_shot["backbone"]) == (pytest.approx(0.7), 3, "mpnet")
    assert scale_of("mpnet_dual") == "mpnet" and scale_of("clip_vit_b16") == "clip_vit_b16"


def test_the_best_method_per_column_is_bold_in_every_format_and_zero_shot_never(table, tmp_path):
    best = table.cells[table.cells["best"]].set_index(["dataset", "scale"])["row"].to_dict()
    assert best == {
        ("bbc_news", "minilm"): "prompt_tuning",
        ("bbc_news", "mpnet"): "coop",
        ("tweets_airline", "minilm"): "spot",
        ("tweets_airline", "mpnet"): "prompt_tuning",  # zero-shot's 70.0 is higher: context, not a method
    }
    md = markdown(table)
    assert "| coop | 86.0 ± 1.0 | **92.0 ± 1.0** | 52.0 ± 1.0 | 58.0 ± 1.0 |" in md
    assert "| zero-shot | 70.0 ± 0.0 | 70.0 ± 0.0 | 70.0 ± 0.0 | 70.0 ± 0.0 | - | - | - |" in md
    tex = latex(table)
    assert r"\textbf{92.0 $\pm$ 1.0}" in tex and r"\multicolumn{2}{c}{bbc\_news (acc)}" in tex
    assert tex.count(r"\textbf{") == 4
    _, files = write_paper(load_records(tmp_path / "headline"), tmp_path / "out")
    assert "<strong>92.0 ± 1.0</strong>" in files["paper html"].read_text()
    csv = pd.read_csv(files["paper csv"])
    assert len(csv) == 20 and csv["best"].sum() == 4  # 5 rows x 4 columns, raw fractions
    assert sorted(csv.loc[csv["best"], "mean"].round(2)) == [0.56, 0.6, 0.88, 0.92]


def test_cost_columns_give_each_scale_its_params_time_and_peak_memory(table):
    md = markdown(table)
    header = "trainable params (minilm / mpnet) | train s / run (minilm / mpnet) | peak MiB / run (minilm / mpnet)"
    assert header in md
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["prompt_tuning"].endswith("| 7.68k / 15.4k | 10 / 40 | 300 / 300 |")  # GPU peak first
    assert rows["linear_probe"].endswith("| 1.92k / 3.84k | 10 / 40 | 900 / 1.8k |")  # then the run's own peak RSS
    assert compact(2_071_802) == "2.07M" and compact(float("nan")) == "-"


def test_a_row_never_mixes_configs(tmp_path):
    root = tmp_path
    for lr, score in ((0.3, 0.88), (0.03, 0.70)):
        for seed in (13, 21):
            write_record(
                root,
                "s",
                "prompt_tuning",
                "minilm",
                "bbc_news",
                seed,
                score=score,
                config={"method": {"optimizer": {"lr": lr}}},
            )
    for source, score in (("tweets_all", 0.9), ("tweets_cars", 0.5)):
        transfer = {"transfer": {"name": f"{source}_to_bbc_news", "source": {"name": source}}}
        write_record(root, "s", "spot", "minilm", "bbc_news", 13, score=score, config=transfer)
    frame = load_records(root / "s")
    # the main report's grouping too: lr is a setting though spot's runs have no lr (missing counts as a value)
    assert (
        resolve_group_by(frame, None, ["method", "backbone", "dataset", "transfer"])[-1] == "config.method.optimizer.lr"
    )
    table = paper_table(frame)
    assert table.rows == [
        ZERO_SHOT_ROW,
        "prompt_tuning lr=0.03",
        "prompt_tuning lr=0.3",
        "spot [transfer=tweets_all_to_bbc_news]",
        "spot [transfer=tweets_cars_to_bbc_news]",
    ]
    assert cell(table, "prompt_tuning lr=0.03", "bbc_news", "minilm")["mean"] == pytest.approx(0.70)
    assert cell(table, "spot [transfer=tweets_cars_to_bbc_news]", "bbc_news", "minilm")["n"] == 1


def test_a_cell_short_of_seeds_says_how_many_it_has(tmp_path):
    sweep = write_sweep(tmp_path, scores={"prompt_tuning": SCORES["prompt_tuning"]})
    write_record(tmp_path, "headline", "linear_probe", "minilm", "bbc_news", 13, score=0.8)
    md = markdown(paper_table(load_records(sweep)))
    assert "| linear_probe | 80.0 (n=1) | - | - | - |" in md


def test_the_scaling_plot_has_a_line_per_method_and_ladder(tmp_path):
    _, files = write_paper(load_records(write_sweep(tmp_path)), tmp_path / "out")
    assert files["paper scaling"].stat().st_size > 10_000
    backbones = pd.DataFrame(
        [
            ("bert_base", "encoder", 110),
            ("bert_large", "encoder", 340),
            ("roberta_base", "encoder", 125),
            ("roberta_large", "encoder", 355),
            ("minilm", "encoder", 22.7),
            ("mpnet", "encoder", 109.5),
            ("gpt2", "causal", 124),
            ("gpt2_medium", "causal", 355),
            ("minilm_dual", "dual_encoder", 22.7),
        ],
        columns=["backbone", "family", "params_m"],
    )
    assert ladders(backbones) == {
        "bert_base": "bert",
        "bert_large": "bert",
        "roberta_base": "roberta",
        "roberta_large": "roberta",
        "minilm": "encoder",  # one size per name: the family is the ladder
        "mpnet": "encoder",
        "gpt2": "gpt2",
        "gpt2_medium": "gpt2",
        "minilm_dual": "dual_encoder",
    }


def test_report_cli_writes_the_paper_files(tmp_path):
    sweep = write_sweep(tmp_path)
    assert report_main([str(sweep), "--paper", "--out", str(tmp_path / "out")]) == 0
    for name in ("paper.md", "paper.csv", "paper.tex", "paper.html", "paper_scaling.png", "report.md"):
        assert (tmp_path / "out" / name).exists(), name
