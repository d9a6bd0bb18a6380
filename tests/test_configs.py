"""The config tree: every experiment preset composes and runs on tiny models, every dataset carries the
few-shot keys, the CoOp family shares one schedule, conf/transfer/ is what its generator writes."""

from __future__ import annotations

import importlib.util

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from prompt_bench.grid import GridRules, cached_describer, plan_cell
from prompt_bench.run import run_experiment
from tests.conftest import CONF_DIR

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
RELATION_FILE = CONF_DIR / "dataset" / "shared" / "relation.yaml"  # the relation datasets' protocol instead
RELATION_DATASETS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml") if "shared/relation@" in p.read_text())
DATASETS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml") if p.stem not in RELATION_DATASETS)
FEW_SHOT_FILE = CONF_DIR / "dataset" / "shared" / "few_shot.yaml"  # included by every dataset
FEW_SHOT_KEYS = {
    "k_shot",
    "split_seed",
    "max_test_examples",
    "max_length",
    "batch_size",
    "eval_batch_size",
    "classes",
    "n_base",
}
# Presets that cannot run here, and why (every other preset must run).
NOT_RUNNABLE_OFFLINE = {"transfer_matrix_hub": "its pairs load GLUE/SuperGLUE from the Hugging Face hub"}


GRID_SWEEPER = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "hydra" / "sweeper" / "grid.yaml"))
GRID_RULES = GridRules.from_config(
    **{
        key: GRID_SWEEPER[key]
        for key in ("variants", "dual_backbones", "image_backbones", "transfer_sources", "method_overrides")
    }
)


def uses_grid(experiment: str) -> bool:
    """The preset sweeps with the grid sweeper (prompt_bench/grid.py plans its cells)."""
    return "override /hydra/sweeper: grid" in (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()


def value_overrides(key: str, value: str) -> list[str]:
    """key=value as the sweep gives it; a grid variant name (method=p_tuning_v2) as the overrides it stands for."""
    if key == "method" and value in GRID_RULES.variants:
        return GRID_RULES.variants[value]
    return [f"{key}={value}"]


def swept_values(experiment: str) -> dict[str, list[str]]:
    """conf/experiment/<experiment>.yaml's hydra.sweeper.params, each value list split on commas."""
    preset = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml")
    params = OmegaConf.to_container(preset.hydra.sweeper.params)
    return {key: str(values).split(",") for key, values in params.items()}


def tiny_cell(experiment: str, make_config) -> dict[str, str]:
    """The preset's last sweep cell, shrunk: tiny backbone of the same family, synthetic data unless the cell
    is a transfer pair (then 64 test examples on each side), one short epoch, no logger."""
    cell = {key: values[-1] for key, values in swept_values(experiment).items()}
    if uses_grid(experiment):  # the last cell the grid sweeper launches (a class-site method on its dual twin, ...)
        describe = cached_describer(lambda job: make_config(f"experiment={experiment}", *job), get_class)
        for method in reversed(swept_values(experiment)["method"]):
            planned, reason = plan_cell(
                [f"{k}={v}" for k, v in (cell | {"method": method}).items()], GRID_RULES, describe
            )
            if reason is None:
                break
        cell = dict(override.split("=", 1) for override in planned)
    cfg = make_config(f"experiment={experiment}", *(f"{key}={value}" for key, value in cell.items()))
    shrink = {"trainer": "debug", "trainer.max_epochs": "1", "logger": "none", "sweep_name": experiment}
    if cfg.backbone.family == "dual_encoder":
        shrink |= {"backbone": "tiny_clip", "dataset": "synthetic_images"}
    elif cfg.get("transfer") is not None:
        shrink |= {
            "backbone": "tiny_bert",
            "dataset.max_test_examples": "64",
            "++transfer.source.max_test_examples": "64",
        }
    else:
        shrink |= {"backbone": "tiny_bert", "dataset": "synthetic"}
    return cell | shrink


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_every_swept_value(experiment, make_config):
    path = CONF_DIR / "experiment" / f"{experiment}.yaml"
    assert path.read_text().startswith("# @package _global_\n# ")  # and a line saying what the preset runs
    preset = OmegaConf.load(path)
    cfg = make_config(f"experiment={experiment}")
    assert cfg.sweep_name == experiment == preset.sweep_name  # a fixed name, so a relaunch resumes
    for key, values in swept_values(experiment).items():
        for value in values:
            cfg = make_config(f"experiment={experiment}", *value_overrides(key, value))
            if key in ("dataset", "backbone", "transfer"):
                assert cfg[key].name == value
            elif key != "method":  # method names may differ from their file (dept_coop runs as coop+dept)
                assert str(OmegaConf.select(cfg, key)) == value


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_one_cell_on_tiny_models(experiment, make_config):
    if experiment in NOT_RUNNABLE_OFFLINE:
        pytest.skip(f"experiment={experiment} is composed only: {NOT_RUNNABLE_OFFLINE[experiment]}")
    cell = tiny_cell(experiment, make_config)
    record = run_experiment(make_config(f"experiment={experiment}", *(f"{k}={v}" for k, v in cell.items())))
    assert record["status"] == "ok", record.get("error")
    assert record["config"]["sweep_name"] == experiment


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_composes_with_the_few_shot_keys(dataset, make_config):
    cfg = make_config(f"dataset={dataset}", "seed=21")
    assert cfg.dataset.name == dataset
    assert FEW_SHOT_KEYS <= set(cfg.dataset), FEW_SHOT_KEYS - set(cfg.dataset)
    assert cfg.dataset.split_seed == 21  # the few-shot sample follows the run's seed
    assert cfg.dataset.classes in ("all", "base", "new")
    assert cfg.dataset.k_shot == (8 if dataset == "synthetic_images" else 16)
    path = CONF_DIR / "dataset" / f"{dataset}.yaml"
    assert path.read_text().startswith("# ") and "  - shared/few_shot@_here_" in path.read_text()
    own, shared = (OmegaConf.to_container(OmegaConf.load(file)) for file in (path, FEW_SHOT_FILE))
    repeated = [key for key in FEW_SHOT_KEYS if key in own and own[key] == shared[key]]
    assert not repeated, f"conf/dataset/{dataset}.yaml repeats {repeated} from conf/dataset/shared/few_shot.yaml"


def test_relation_datasets_follow_the_official_relation_protocol(make_config):
    """BayesPrompt / KnowPrompt: K per relation with the official split seeds 1-5 (not the run's seed), length 256."""
    assert RELATION_DATASETS == ["retacred", "semeval", "synthetic_relation", "tacred", "tacrev"]
    for dataset in RELATION_DATASETS:
        cfg = make_config(f"dataset={dataset}", "seed=21")
        assert FEW_SHOT_KEYS <= set(cfg.dataset), FEW_SHOT_KEYS - set(cfg.dataset)
        assert cfg.dataset.split_seed == 1 and cfg.dataset.k_shot == 16 and cfg.dataset.classes == "all"
        assert cfg.dataset.max_length == (64 if dataset == "synthetic_relation" else 256)
        path = CONF_DIR / "dataset" / f"{dataset}.yaml"
        own, shared = (OmegaConf.to_container(OmegaConf.load(file)) for file in (path, RELATION_FILE))
        repeated = [key for key in FEW_SHOT_KEYS if key in own and own[key] == shared[key]]
        assert not repeated, f"conf/dataset/{dataset}.yaml repeats {repeated} from conf/dataset/shared/relation.yaml"


def test_the_coop_family_shares_one_dassl_schedule(make_config):
    schedule = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "method" / "scheduler" / "warmup_cosine.yaml"))
    for method in ("coop", "cocoop", "kgcoop", "dept", "dept_coop", "dept_cocoop", "dept_kgcoop"):
        cfg = make_config(f"method={method}", "backbone=tiny_clip", "dataset=synthetic_images")
        assert OmegaConf.to_container(cfg.method.scheduler) == schedule, method
    method_files = (CONF_DIR / "method").glob("*.yaml")
    inline = [path.name for path in method_files if "prompt_bench.schedules." in path.read_text()]
    assert not inline, f"{inline} copy the schedule; use `- scheduler: warmup_cosine` in the defaults list"


def load_pair_generator():
    path = CONF_DIR.parent / "scripts" / "make_transfer_pairs.py"
    spec = importlib.util.spec_from_file_location("make_transfer_pairs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_transfer_pairs_are_what_the_generator_writes(make_config):
    generator = load_pair_generator()
    assert generator.differences(CONF_DIR / "transfer") == [], "run: python scripts/make_transfer_pairs.py"
    for pair in generator.pairs():  # transfer=<source>_to_<target> sets the source and the target it names
        cfg = make_config(f"transfer={pair['name']}")
        assert (cfg.transfer.name, cfg.transfer.source.name, cfg.dataset.name) == (
            pair["name"],
            pair["source"],
            pair["target"],
        )


def test_pair_generator_check_reports_missing_changed_and_stale_files(tmp_path):
    generator = load_pair_generator()
    for name, text in generator.pair_files().items():
        (tmp_path / name).write_text(text)
    assert generator.differences(tmp_path) == []
    (tmp_path / "mnli_to_cb.yaml").unlink()
    (tmp_path / "sst2_to_wic.yaml").write_text("# hand-edited\n")
    (tmp_path / "sst2_to_sst2.yaml").write_text("# not a pair\n")
    assert generator.differences(tmp_path) == [
        "changed sst2_to_wic.yaml",
        "missing mnli_to_cb.yaml",
        "stale sst2_to_sst2.yaml (not a listed pair)",
    ]
