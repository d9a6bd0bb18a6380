"""Packed runs (prompt_bench/packing): equal to the unpacked runs, per-run optimizers and clipping,
failures that stay with their run, the plan, resume after SIGKILL, and pack=auto in a real sweep."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file

from prompt_bench.packing.auto import PackAuto, PackUnavailableError
from prompt_bench.packing.forward import packed_outputs
from prompt_bench.packing.pack_run import PackJob, run_pack
from prompt_bench.packing.plan import SweepJob, backbone_bytes, plan_packs, run_memory_bytes
from prompt_bench.records import resolved_config, run_key
from tests.conftest import CONF_DIR, compose_config
from tests.helpers.cli import run_cli

TINY = ("backbone=tiny_bert", "dataset=synthetic", "logger=none")
# Adafactor at lr 0.3 (the default) on a random 2-layer model amplifies float reassociation noise ~3x
# per step (a 4e-7 loss difference at step 1 is 0.1 by step 24, which flips dev predictions); at
# lr 0.03 the trajectories stay within 1e-5, so the comparison tests packing, not chaos.
STABLE = ("method.optimizer.lr=0.03",)
RUNS = (  # different seeds, different n_tokens, one with half the training examples, one clipped
    ("seed=13", "method.module.n_tokens=5"),
    ("seed=21", "method.module.n_tokens=10", "trainer.gradient_clip_val=0.05"),
    ("seed=42", "method.module.n_tokens=20", "dataset.k_shot=8"),
)


def pack(make_config, root: Path, *runs: tuple[str, ...]) -> list[dict]:
    jobs = [PackJob(make_config(*run, run_dir=root / f"run{index}"), [], root) for index, run in enumerate(runs)]
    return run_pack(jobs)


def prompt_of(record: dict) -> torch.Tensor:
    return load_file(str(Path(record["run_dir"]) / "prompt.safetensors"))["prompt_embeddings"]


def float_metrics(record: dict) -> dict[str, float]:
    return {name: value for name, value in record["metrics"].items() if isinstance(value, float)}


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_gpt2", "tiny_t5"])
def test_the_packed_pass_gives_each_run_its_own_hidden_states(make_config, backbone):
    """Runs with different prompt lengths (none, 3, 7), batch sizes and input lengths, one with token types
    (text pairs, BERT only): each slice of the stacked pass equals the run's own forward."""
    adapter = instantiate(make_config(f"backbone={backbone}").backbone).eval()
    generator = torch.Generator().manual_seed(0)

    def run(rows: int, length: int, n_prompt: int, typed: bool = False):
        ids = torch.randint(1000, 2000, (rows, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, length - 2 :] = 0  # one right-padded row of its own
        batch = {"input_ids": ids, "attention_mask": mask}
        if typed:
            batch["token_type_ids"] = (torch.arange(length) >= length // 2).long().expand(rows, -1) * mask
        prompt = torch.randn(rows, n_prompt, adapter.hidden_size, generator=generator) if n_prompt else None
        method = SimpleNamespace(prompt=lambda batch, embeds: prompt, layer_prefixes=lambda batch: None)
        return SimpleNamespace(method=method), batch, prompt

    runs = [run(2, 5, 0), run(3, 9, 3, typed=backbone == "tiny_bert"), run(1, 4, 7)]
    with torch.no_grad():
        outputs = packed_outputs(adapter, [module for module, _, _ in runs], [batch for _, batch, _ in runs])
        for (_, batch, prompt), packed in zip(runs, outputs):
            alone = adapter(
                batch["input_ids"], batch["attention_mask"], prompt=prompt, token_type_ids=batch.get("token_type_ids")
            )
            assert packed.n_prompt == alone.n_prompt and torch.equal(packed.attention_mask, alone.attention_mask)
            kept = alone.attention_mask.bool()
            assert torch.allclose(packed.hidden[kept], alone.hidden[kept], atol=1e-5)


def test_packed_runs_equal_the_unpacked_runs(make_config, tmp_path):
    from prompt_bench.run import run_experiment

    runs = [(*TINY, *STABLE, "trainer.max_epochs=2", *run) for run in RUNS]
    unpacked = [run_experiment(make_config(*run, run_dir=tmp_path / f"alone{i}")) for i, run in enumerate(runs)]
    packed = pack(make_config, tmp_path / "pack", *runs)
    assert [r["status"] for r in packed] == ["ok"] * 3, [r.get("error") for r in packed]
    for alone, together in zip(unpacked, packed):
        assert alone["run_key"] == together["run_key"]
        assert float_metrics(together).keys() == float_metrics(alone).keys()
        for name, value in float_metrics(alone).items():
            assert together["metrics"][name] == pytest.approx(value, abs=1e-4), name
        assert torch.allclose(prompt_of(together), prompt_of(alone), atol=1e-4)
        assert together["split_hash"] == alone["split_hash"]
        assert sorted(together["packed_with"]) == sorted(r["run_key"] for r in packed if r is not together)
    assert [r["split_sizes"]["train"] for r in packed] == [64, 64, 32]  # the short run had 4 steps an epoch, not 8
    assert len({tuple(prompt_of(r).shape) for r in packed}) == 3


def test_different_methods_and_heads_share_a_pack(make_config, tmp_path):
    """VIP (an input-dependent prompt with a commitment loss), linear probing (no prompt, a trained head)
    and prompt tuning with the label-similarity head, in one pack: each as it is alone."""
    from prompt_bench.run import run_experiment

    # VIP with its official sampled eval (sample_at_eval=true): each run draws from its own random stream, so its
    # packed dev/test samples are the ones it draws alone, whether or not its zero-shot score was already stored.
    runs = [  # one pass has one backbone mode: all with the backbone's dropout off (linear probing's default)
        (*TINY, *STABLE, "trainer.max_epochs=1", "++method.backbone_dropout=false", *run)
        for run in (
            ("method=vip",),
            ("method=linear_probe",),
            ("head=label_similarity", "seed=21"),
        )
    ]
    unpacked = [run_experiment(make_config(*run, run_dir=tmp_path / f"alone{i}")) for i, run in enumerate(runs)]
    packed = pack(make_config, tmp_path / "pack", *runs)
    for alone, together in zip(unpacked, packed):
        assert together["status"] == "ok", together.get("error")
        for name, value in float_metrics(alone).items():
            assert together["metrics"][name] == pytest.approx(value, abs=1e-4), (
                name,
                alone["config"]["method"]["name"],
                float_metrics(alone),
                float_metrics(together),
            )


def test_max_steps_stops_each_run_where_lightning_does_and_run_packed_takes_configs(make_config, tmp_path):
    """trainer.max_steps with max_epochs=-1 (the benchmark's runs): 5 steps stop mid-epoch (no dev pass, the last
    state tested), 12 steps cross one epoch end (8 steps) and test its checkpoint. `prompt_bench.packing.run_packed`
    is what the benchmark's packed section calls."""
    from prompt_bench.packing import run_packed
    from prompt_bench.run import run_experiment

    runs = [(*TINY, *STABLE, "trainer.max_epochs=-1", f"trainer.max_steps={steps}") for steps in (5, 12)]
    unpacked = [run_experiment(make_config(*run, run_dir=tmp_path / "alone" / f"r{i}")) for i, run in enumerate(runs)]
    packed = run_packed([make_config(*run, run_dir=tmp_path / "packed" / f"r{i}") for i, run in enumerate(runs)])
    for alone, together in zip(unpacked, packed):
        assert together["status"] == "ok", together.get("error")
        assert float_metrics(together).keys() == float_metrics(alone).keys()
        for name, value in float_metrics(alone).items():
            assert together["metrics"][name] == pytest.approx(value, abs=1e-4), name
    assert "val/acc_best" not in packed[0]["metrics"] and "val/acc_best" in packed[1]["metrics"]


def test_each_run_keeps_its_own_optimizer_and_clipping(make_config, tmp_path):
    clipped = (*TINY, "trainer.max_epochs=1", "method/optimizer=adamw", "method.optimizer.lr=0.5")
    clipped = (*clipped, "trainer.gradient_clip_val=0.001")
    free = (*TINY, "trainer.max_epochs=1", "seed=21", "method.module.n_tokens=7")
    together = pack(make_config, tmp_path / "both", clipped, free)
    clipped_alone = pack(make_config, tmp_path / "a", clipped)[0]
    free_alone = pack(make_config, tmp_path / "b", free)[0]
    assert torch.allclose(prompt_of(together[0]), prompt_of(clipped_alone), atol=1e-6)  # not clipped jointly
    assert torch.allclose(prompt_of(together[1]), prompt_of(free_alone), atol=1e-6)
    assert together[0]["config"]["method"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    unclipped = pack(make_config, tmp_path / "c", clipped[:-1])[0]  # the clip did act
    assert not torch.allclose(prompt_of(unclipped), prompt_of(clipped_alone), atol=1e-3)


def test_a_run_that_diverges_or_fails_to_build_is_recorded_failed_and_the_others_go_on(make_config, tmp_path):
    good = (*TINY, "trainer.max_epochs=2")
    diverging = (*good, "seed=21", "method/optimizer=adamw", "method.optimizer.lr=inf")
    broken = (*good, "seed=42", "dataset.k_shot=1000")
    records = pack(make_config, tmp_path / "pack", good, diverging, broken)
    assert [r["status"] for r in records] == ["ok", "failed", "failed"]
    assert "TrainingDivergedError: the training loss became nan" in records[1]["error"]
    assert "k_shot=1000" in records[2]["error"]
    alone = pack(make_config, tmp_path / "alone", good)[0]
    assert records[0]["metrics"] == pytest.approx(alone["metrics"], abs=1e-6)
    for record in records:
        on_disk = json.loads((Path(record["run_dir"]) / "record.json").read_text())
        assert on_disk["status"] == record["status"] and on_disk["attempts"][-1]["end"]


def compose_job(number: int, *overrides: str) -> SweepJob:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return SweepJob(number=number, overrides=list(overrides), cfg=cfg)


def test_plan_groups_by_backbone_cuts_by_count_and_memory_and_leaves_refused_jobs_alone():
    bert = [compose_job(i, "backbone=tiny_bert", "dataset=synthetic", f"seed={i}") for i in range(5)]
    gpt2 = [compose_job(5 + i, "backbone=tiny_gpt2", "dataset=synthetic", f"seed={i}") for i in range(2)]
    deep = compose_job(7, "backbone=tiny_bert", "dataset=synthetic", "method.module.depth=deep")
    coop = compose_job(8, "backbone=tiny_clip", "method=coop", "dataset=synthetic_images")
    tuning = compose_job(9, "backbone=tiny_bert", "dataset=synthetic", "method=fine_tuning")
    probe = compose_job(10, "backbone=tiny_bert", "dataset=synthetic", "method=linear_probe")  # backbone dropout off
    jobs = [bert[0], gpt2[0], deep, *bert[1:3], coop, gpt2[1], *bert[3:], tuning, probe]
    plan = plan_packs(jobs, max_runs=2, memory_budget_gb=None)
    assert [[job.number for job in pack] for pack in plan.packs] == [[0, 1], [2, 3], [4], [5, 6], [10]]
    assert [job.number for job, _ in plan.alone] == [7, 8, 9]
    reasons = [reason for _, reason in plan.alone]
    assert "depth=deep" in reasons[0] and "prompt_site=class" in reasons[1] and "trains the backbone" in reasons[2]

    # Korthikanti et al. 2022: s*b*h*(34 + 5*a*s/h) bytes per layer at 16 bits; tiny_bert: h=64, a=4, 2 layers,
    # s = 100 prompt (the default) + 32 tokens, b = 8, fp32 (x2): 2 * 2 * 132*8*64*(34 + 5*4*132/64) = 20_342_784 bytes.
    assert run_memory_bytes(bert[0].cfg, (2, 64, 4)) == pytest.approx(20_342_784)
    budget_gb = (backbone_bytes(bert[0].cfg) + 3.5 * 20_342_784) / 1024**3
    plan = plan_packs(bert, max_runs=8, memory_budget_gb=budget_gb)
    assert [len(pack) for pack in plan.packs] == [3, 2]


def test_pack_auto_composes_swaps_the_launcher_and_leaves_the_run_key_alone(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        plain = compose(config_name="config", overrides=list(TINY), return_hydra_config=True)
        auto = compose(config_name="config", overrides=[*TINY, "pack=auto"], return_hydra_config=True)
        slurm = compose(
            config_name="config", overrides=[*TINY, "pack=auto", "hydra/launcher=slurm_gpu"], return_hydra_config=True
        )
        packed = compose(config_name="config", overrides=["hydra/launcher=packed"], return_hydra_config=True)
    assert (plain.pack.mode, auto.pack.mode, auto.pack.max_runs, auto.pack.memory_budget_gb) == ("off", "auto", 8, None)
    keys = [
        run_key(resolved_config(compose_config([*TINY, *extra], tmp_path, tmp_path))) for extra in ([], ["pack=auto"])
    ]
    assert keys[0] == keys[1]  # packing changes how a run trains, not what it is

    PackAuto().on_multirun_start(plain)
    assert plain.hydra.launcher._target_.endswith("BasicLauncher")  # pack=off leaves it
    PackAuto().on_multirun_start(auto)
    assert auto.hydra.launcher._target_ == "hydra_plugins.prompt_bench_packing.PackedLauncher"
    PackAuto().on_multirun_start(slurm)
    assert slurm.hydra.launcher._target_ == "hydra_plugins.prompt_bench_packing.PackedSlurmLauncher"
    assert (slurm.hydra.launcher.partition, slurm.hydra.launcher.gpus_per_node) == ("gpu", 1)  # options kept
    assert packed.hydra.launcher._target_ == "hydra_plugins.prompt_bench_packing.PackedLauncher"
    auto.hydra.launcher._target_ = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    with pytest.raises(PackUnavailableError, match="basic launcher or a submitit preset"):
        PackAuto().on_multirun_start(auto)


def record_hash(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "record.json").read_bytes()).hexdigest()


def test_a_killed_pack_resumes_each_run_from_its_own_checkpoint(make_config, tmp_path):
    """SIGKILL a pack (a spawned child) mid-training: the run that had finished is skipped, the other goes on."""
    sweep_dir = tmp_path / "sweep"
    short_dir, long_dir = sweep_dir / "0_short", sweep_dir / "1_long"
    base = (*TINY, "dataset.k_shot=4")  # 16 examples / batch 8 = 2 steps an epoch
    jobs = [
        PackJob(make_config(*base, "trainer.max_epochs=2", run_dir=short_dir), ["short"], sweep_dir),
        PackJob(make_config(*base, "trainer.max_epochs=60", run_dir=long_dir), ["long"], sweep_dir),
    ]
    # spawn, not fork: a child forked from a process whose OpenMP pool has run (the tests before this one, with
    # more than one thread) can hang in its first parallel region, and then never reaches epoch 5.
    for job in jobs:  # the spawned child has no Hydra resolvers (${now:...}): it gets the values
        OmegaConf.resolve(job.cfg)
    child = multiprocessing.get_context("spawn").Process(target=run_pack, args=(jobs,))
    child.start()
    last = long_dir / "checkpoints" / "packed_last.ckpt"
    deadline = time.time() + 240  # the spawned child imports torch and Lightning first
    while time.time() < deadline and child.is_alive():
        if last.exists() and torch.load(last, weights_only=False)["epoch"] >= 5:
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    short = json.loads((short_dir / "record.json").read_text())
    killed = json.loads((long_dir / "record.json").read_text())
    assert short["status"] == "ok" and killed["status"] == "running", killed.get("error")
    assert killed["packed_with"] == [short["run_key"]]
    short_before = record_hash(short_dir)

    again = run_pack(jobs)
    assert [record["status"] for record in again] == ["ok", "ok"]
    assert record_hash(short_dir) == short_before  # skipped, untouched
    resumed = again[1]
    assert resumed["resumed_from_step"] >= 5 * 2
    killed_attempt, last_attempt = resumed["attempts"]
    assert killed_attempt["end"] is None and last_attempt["resumed_from_step"] == resumed["resumed_from_step"]
    assert torch.load(last, weights_only=False)["global_step"] == 60 * 2
    assert resumed["efficiency"]["train_seconds"] > resumed["efficiency"]["train_seconds_before_resume"] > 0


def test_pack_auto_sweep_packs_what_it_can_and_runs_the_rest_alone(tmp_path, cache_dir):
    result = run_cli(
        "-m",
        *TINY,
        "trainer=debug",
        "method=prompt_tuning,fine_tuning",  # fine-tuning trains the backbone: it cannot share one
        "seed=13,21",
        "progress=lines,bar",  # how a run is shown is not in its key: 4 jobs repeat a run key, and are skipped
        "pack=auto",
        "sweep_name=auto",
        root=tmp_path,
        cache=cache_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prompt_bench tally: 4 ok, 0 failed, 4 skipped" in result.stdout, result.stdout[-2000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "auto"
    records = {path.parent.name: json.loads(path.read_text()) for path in sweep_dir.glob("*/record.json")}
    assert len(records) == 4
    tuned = [records["0_prompt_tuning_tiny_bert_synthetic_s13"], records["2_prompt_tuning_tiny_bert_synthetic_s21"]]
    assert [record["packed_with"] for record in tuned] == [[tuned[1]["run_key"]], [tuned[0]["run_key"]]]
    assert "packed_with" not in records["4_fine_tuning_tiny_bert_synthetic_s13"]
    assert all((sweep_dir / name / ".hydra" / "overrides.yaml").exists() for name in records)


@pytest.mark.slow  # two Python processes that import torch: ~15 s of CPU
def test_pack_auto_with_a_submitit_executor_runs_one_job_per_pack(tmp_path, cache_dir):
    overrides = ("-m", *TINY, "trainer=debug", "seed=13,21", "pack=auto", "hydra/launcher=submitit_local")
    result = run_cli(*overrides, "sweep_name=local", root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "local"
    assert len([folder for folder in (sweep_dir / ".submitit").iterdir() if folder.name.isdigit()]) == 1
    records = [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/record.json"))]
    assert [record["status"] for record in records] == ["ok", "ok"]
    assert records[0]["attempts"][0]["pid"] == records[1]["attempts"][0]["pid"] != os.getpid()


def test_the_packing_benchmark_runs_both_sides_on_tiny_models(tmp_path, capsys):
    script = CONF_DIR.parent / "scripts" / "bench_packing.py"
    spec = importlib.util.spec_from_file_location("bench_packing", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ratios = bench.main(["--backbone", "tiny_bert", "--dataset", "synthetic", "--max-epochs", "1", "--seeds", "13,21"])
    assert ratios["throughput_ratio"] > 0 and ratios["wall_speedup"] > 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.startswith(("sequential ", "packed "))]
    sequential, packed = (row for row in rows if len(row) == 5)
    assert sequential[2] == packed[2] == "128" and sequential[4] == packed[4]  # same samples, same mean test score
