"""The headline grid: planning rules on described cells (no composition), the real presets' plans, the
sweeper as a Hydra plugin under the SLURM launcher, and (slow) the whole grid end to end on tiny models."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.utils import get_class
from omegaconf import OmegaConf

from prompt_bench.grid import Cell, GridRules, cached_describer, plan_grid, transfer_pairs
from tests.conftest import CONF_DIR
from tests.helpers.cli import run_cli

SWEEPER = "hydra_plugins.prompt_bench_sweeper.grid_sweeper.GridSweeper"
GRID_YAML = CONF_DIR / "hydra" / "sweeper" / "grid.yaml"
# What each name declares, as Method classes and backbone / dataset configs do.
METHODS = {
    "prompt_tuning": ("input", ("encoder", "seq2seq", "causal"), False),
    "spot": ("input", ("encoder", "seq2seq", "causal"), True),
    "relation": ("input", ("encoder",), False),
    "coop": ("class", ("dual_encoder",), False),
}
BACKBONES = {
    "minilm": ("encoder", None),
    "gpt2": ("causal", None),
    "minilm_dual": ("dual_encoder", "sentence"),
    "clip": ("dual_encoder", "clip"),
}
DATASETS = {"bbc_news": "text", "tweets_airline": "text", "images": "image"}
RULES = GridRules(
    variants={"deep": ["method=prompt_tuning", "method.module.depth=deep"]},
    dual_backbones={"minilm": "minilm_dual"},
    image_backbones={"minilm": "clip", "gpt2": "clip"},
    transfer_sources={"bbc_news": "tweets_all"},
    method_overrides={"spot": ["method.optimizer.lr=0.1"]},
)


def fake_cell(job: list[str]) -> Cell:
    """Describe a job from the tables above (the last override of a key wins, as in Hydra)."""
    values = dict(override.split("=", 1) for override in job)
    dataset = values.get("dataset") or values["transfer"].split("_to_")[1]
    site, families, needs_pair = METHODS[values["method"]]
    family, kind = BACKBONES[values["backbone"]]
    return Cell(
        values["method"], site, families, needs_pair, values["backbone"], family, kind, dataset, DATASETS[dataset]
    )


def jobs(methods, backbones, datasets, seeds=(13,)) -> list[list[str]]:
    return [
        [f"seed={s}", f"dataset={d}", f"backbone={b}", f"method={m}"]
        for s in seeds
        for d in datasets
        for b in backbones
        for m in methods
    ]


def test_class_site_methods_move_to_the_dual_twin_of_their_scale_or_are_skipped():
    plan = plan_grid(jobs(["coop"], ["minilm", "gpt2"], ["bbc_news", "images"]), RULES, fake_cell)
    assert plan.runs == [
        ["seed=13", "dataset=bbc_news", "backbone=minilm_dual", "method=coop"],
        ["seed=13", "dataset=images", "backbone=clip", "method=coop"],
    ]
    # gpt2 has no text twin; its CLIP twin is the one minilm already ran on images: merged, not run twice
    assert [(s.method, s.reason) for s in plan.skipped] == [
        ("coop", "no dual encoder paired with gpt2 for text sets (hydra.sweeper.dual_backbones)")
    ]
    assert (plan.cells, plan.duplicates) == (4, 1)


def test_input_methods_need_a_text_set_and_a_family_they_declare():
    plan = plan_grid(
        jobs(["prompt_tuning", "relation"], ["gpt2", "minilm_dual"], ["bbc_news", "images"]), RULES, fake_cell
    )
    assert plan.runs == [["seed=13", "dataset=bbc_news", "backbone=gpt2", "method=prompt_tuning"]]
    reasons = {(s.method, s.reason) for s in plan.skipped}
    assert ("relation", "gpt2 is causal; the method supports encoder") in reasons
    assert ("prompt_tuning", "minilm_dual is dual_encoder; the method supports encoder, seq2seq, causal") in reasons
    assert ("prompt_tuning", "images is an image set; input-prompt methods read text") in reasons
    assert len(plan.skipped) == 7


def test_transfer_methods_take_the_default_pair_of_their_target():
    plan = plan_grid(jobs(["spot"], ["minilm"], ["bbc_news", "tweets_airline"]), RULES, fake_cell)
    # the pair replaces the dataset (conf/transfer/tweets_all_to_bbc_news.yaml sets it); the method's overrides follow
    assert plan.runs == [
        ["seed=13", "transfer=tweets_all_to_bbc_news", "backbone=minilm", "method=spot", "method.optimizer.lr=0.1"]
    ]
    assert [s.reason for s in plan.skipped] == [
        "no default transfer source for tweets_airline (hydra.sweeper.transfer_sources)"
    ]
    given = plan_grid(
        [["dataset=tweets_airline", "transfer=tweets_cars_to_airline", "backbone=minilm", "method=spot"]],
        RULES,
        fake_cell,
    )
    assert given.runs[0][:2] == ["dataset=tweets_airline", "transfer=tweets_cars_to_airline"]  # a pair given is kept


def test_variants_expand_and_the_summary_counts_each_reason_over_its_methods():
    plan = plan_grid(jobs(["deep", "coop"], ["gpt2"], ["bbc_news"], seeds=(13, 21)), RULES, fake_cell)
    assert plan.runs[0] == [
        "seed=13",
        "dataset=bbc_news",
        "backbone=gpt2",
        "method=prompt_tuning",
        "method.module.depth=deep",
    ]
    assert plan.summary("demo").splitlines() == [
        "demo: 4 cells -> 2 runs to launch, 2 skipped (not run, not failed)",
        "  skipped    2 (coop): no dual encoder paired with gpt2 for text sets (hydra.sweeper.dual_backbones)",
    ]


def test_every_default_transfer_source_has_a_pair_file():
    sources = OmegaConf.to_container(OmegaConf.load(GRID_YAML).transfer_sources)
    pairs = {target: transfer_pairs().get((source, target)) for target, source in sources.items()}
    assert None not in pairs.values(), pairs
    assert pairs["bbc_news"] == "tweets_all_to_bbc_news" and pairs["tweets_airline"] == "tweets_cars_to_airline"
    assert "tweets_all" not in sources  # every tweet domain is inside tweets_all: no pair can avoid a leak


def preset_plan(preset: str, **params: str):
    """(composed preset, its plan), each cell described by composing the real config tree; `params`
    replace swept values (as command-line overrides would)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", [f"experiment={preset}"], return_hydra_config=True)
        sweeper = OmegaConf.to_container(cfg.hydra.sweeper)
        rules = GridRules.from_config(**{key: value for key, value in sweeper.items() if key in RULE_KEYS})
        swept = {**sweeper["params"], **params}
        grid = [
            [f"experiment={preset}", f"seed={s}", f"dataset={d}", f"backbone={b}", f"method={m}"]
            for s in str(swept["seed"]).split(",")
            for d in swept["dataset"].split(",")
            for b in swept["backbone"].split(",")
            for m in swept["method"].split(",")
        ]
        return cfg, plan_grid(grid, rules, cached_describer(lambda job: compose("config", job), get_class))


RULE_KEYS = ("variants", "dual_backbones", "image_backbones", "transfer_sources", "method_overrides")


def test_the_offline_preset_runs_every_method_at_both_scales():
    cfg, plan = preset_plan("all_methods_x_scales")
    assert cfg.hydra.sweeper._target_ == SWEEPER and cfg.sweep_name == "all_methods_x_scales"
    assert (plan.cells, len(plan.runs), plan.skipped, plan.duplicates) == (280, 280, [], 0)
    by_method = {}
    for job in plan.runs:
        values = dict(o.split("=", 1) for o in job)
        by_method.setdefault(values.get("method.name", values["method"]), set()).add(
            (values["backbone"], values.get("dataset") or values["transfer"])
        )
    assert len(by_method) == 14
    assert by_method["dept_coop"] == {
        (b, d) for b in ("minilm_dual", "mpnet_dual") for d in ("bbc_news", "tweets_airline")
    }
    assert (
        by_method["spot"]
        == by_method["panda"]
        == {(b, p) for b in ("minilm", "mpnet") for p in ("tweets_all_to_bbc_news", "tweets_cars_to_airline")}
    )
    assert (
        by_method["p_tuning_v2"]
        == by_method["prompt_tuning"]
        == {(b, d) for b in ("minilm", "mpnet") for d in ("bbc_news", "tweets_airline")}
    )


def test_the_hub_preset_runs_the_ladders_and_skips_the_coop_family_on_text_sets():
    cfg, plan = preset_plan("all_methods_x_scales_hub", method="prompt_tuning,coop", backbone="bert_base,gpt2_large")
    assert cfg.trainer.accelerator == "gpu" and len(cfg.hydra.sweeper.params.backbone.split(",")) == 10
    assert (plan.cells, len(plan.runs), len(plan.skipped)) == (40, 20, 20)
    assert "  skipped   10 (coop): no dual encoder paired with bert_base for text sets" in plan.summary()
    image = preset_plan(
        "all_methods_x_scales_hub", method="coop", backbone="bert_base,roberta_base", dataset="fashion_mnist"
    )[1]
    assert (len(image.runs), image.duplicates) == (5, 5) and "backbone=clip_vit_b16" in image.runs[
        0
    ]  # one CLIP for both


def test_the_grid_sweeper_is_a_hydra_plugin_and_the_preset_composes_for_slurm():
    assert SWEEPER in Plugins.instance().class_name_to_class  # found by Hydra's scan of hydra_plugins
    overrides = [
        "experiment=all_methods_x_scales",
        "hydra/launcher=slurm_gpu",
        "trainer=gpu",
        "transfer=tweets_all_to_bbc_news",
        "method=spot",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides, return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == SWEEPER and cfg.hydra.sweeper.dry_run is False
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
    assert (cfg.dataset.name, cfg.transfer.source.name, cfg.trainer.accelerator) == ("bbc_news", "tweets_all", "gpu")


def test_the_preset_runs_packed_with_one_console_line_per_run(tmp_path, cache_dir):
    """pack=auto on the grid: the two prompt-tuning seeds share a pack, P-tuning v2 (deep prompts) and the CoOp
    cells run alone; the console stays one line per run after a job run alone (Hydra's run_job resets it)."""
    overrides = [
        "-m",
        "experiment=all_methods_x_scales",
        "method=prompt_tuning,p_tuning_v2,coop",
        "backbone=tiny_bert",
        "dataset=tweets_cars",
        "seed=13,21",
        "trainer=debug",
        "logger=none",
        "dataset.max_test_examples=64",
        "pack=auto",
    ]
    result = run_cli(*overrides, root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    run_lines = [line for line in lines if line.startswith("ok ")]
    assert len(run_lines) == 6 and lines[-1] == "prompt_bench tally: 6 ok, 0 failed, 0 skipped", "\n".join(lines)
    assert len(lines) == 9, "\n".join(lines)  # the grid's two lines, the runs, the tally: no launch or info lines
    records = {
        path.parent.name: json.loads(path.read_text())
        for path in (tmp_path / "outputs" / "sweeps" / "all_methods_x_scales").glob("*/record.json")
    }
    packed = {name for name, record in records.items() if record.get("packed_with")}
    assert packed == {"0_prompt_tuning_tiny_bert_tweets_cars_s13", "3_prompt_tuning_tiny_bert_tweets_cars_s21"}


TINY_PRETRAIN = (  # MetaPT / PPT's meta-training shrunk as in tests/test_metapt.py
    "['method.pretrain.corpus=synthetic','method.pretrain.num_clusters=3','method.pretrain.m=4',"
    "'method.pretrain.tasks_per_step=2','method.pretrain.meta_steps=3','method.pretrain.log_every=0']"
)


@pytest.mark.slow
def test_the_whole_grid_runs_on_tiny_models_and_makes_the_paper_table(tmp_path, cache_dir):
    """One command: 14 methods x {tiny_bert (+ tiny_bert_dual), tiny_gpt2} x airline-to-cars tweets, one seed,
    trainer=debug; the CoOp family has no tiny_gpt2 twin (4 cells skipped). About 2 minutes on 2 shared cores."""
    overrides = [
        "-m",
        "experiment=all_methods_x_scales",
        "backbone=tiny_bert,tiny_gpt2",
        "dataset=tweets_cars",
        "seed=13",
        "trainer=debug",
        "logger=none",
        "dataset.max_test_examples=64",
        *(f"+hydra.sweeper.method_overrides.{method}={TINY_PRETRAIN}" for method in ("metapt", "ppt")),
        "+hydra.sweeper.method_overrides.bayesprompt=['method.svgd.iterations=30']",
    ]
    result = run_cli(*overrides, root=tmp_path, cache=cache_dir, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "28 cells -> 24 runs to launch, 4 skipped (not run, not failed)" in result.stdout
    assert "prompt_bench tally: 24 ok, 0 failed, 0 skipped" in result.stdout
    sweep = tmp_path / "outputs" / "sweeps" / "all_methods_x_scales"
    records = [json.loads(path.read_text()) for path in sweep.glob("*/record.json")]
    runs = {(r["config"]["method"]["name"], r["config"]["backbone"]["name"]) for r in records}
    assert ("coop+dept", "tiny_bert_dual") in runs and ("p_tuning_v2", "tiny_gpt2") in runs
    assert all(r["efficiency"]["peak_rss_scope"] == "run" and r["efficiency"]["peak_rss_mb"] > 0 for r in records)
    spot = next(r for r in records if r["config"]["method"]["name"] == "spot")
    assert spot["config"]["transfer"]["name"] == "tweets_airline_to_cars"
    assert len(json.loads((sweep / "grid.json").read_text())["skipped"]) == 4

    from prompt_bench.report import main as report

    assert report([str(sweep), "--paper", "--out", str(tmp_path / "paper")]) == 0
    paper = (tmp_path / "paper" / "paper.md").read_text()
    for row in ("zero-shot", "linear_probe", "p_tuning_v2", "coop+dept", "panda"):
        assert f"| {row} |" in paper
