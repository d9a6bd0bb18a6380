"""What a run leaves on disk: trimmed checkpoints that resume, the prompt file, wandb offline files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prompt_bench.records import RECORD_NAME, read_record, run_key
from prompt_bench.run import run_experiment
from prompt_bench.wandb_run import code_version, wandb_run_id

TINY = ("backbone=tiny_bert", "dataset=synthetic", "trainer=debug")


def test_checkpoints_hold_trainable_state_only(make_config, tmp_path):
    run_dir = tmp_path / "run"
    record = run_experiment(make_config(*TINY, "logger=none", run_dir=run_dir))
    assert record["status"] == "ok"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert set(last["state_dict"]) == {"method.prompt_embeddings"}  # no frozen backbone weights
    assert last["optimizer_states"], "optimizer state is needed to resume"
    assert last["global_step"] == 3


def test_identical_rerun_is_skipped_and_ok_record_untouched(make_config, tmp_path):
    run_dir = tmp_path / "run"
    first = run_experiment(make_config(*TINY, "logger=none", run_dir=run_dir))
    before = (run_dir / RECORD_NAME).read_bytes()
    again = run_experiment(make_config(*TINY, "logger=none", run_dir=run_dir))
    assert again == first
    assert (run_dir / RECORD_NAME).read_bytes() == before


def test_a_different_run_never_overwrites_an_ok_record(make_config, tmp_path):
    run_dir = tmp_path / "run"
    run_experiment(make_config(*TINY, "logger=none", run_dir=run_dir))
    before = (run_dir / RECORD_NAME).read_bytes()
    other = run_experiment(make_config(*TINY, "logger=none", "seed=21", run_dir=run_dir))
    assert other["status"] == "ok" and other["run_dir"] == f"{run_dir}-{other['run_key']}"
    assert (run_dir / RECORD_NAME).read_bytes() == before


def test_prompt_file_matches_the_tested_prompt(make_config, tmp_path):
    record = run_experiment(make_config(*TINY, "logger=none"))
    run_dir = tmp_path / "run"
    prompt = load_file(str(run_dir / "prompt.safetensors"))["prompt_embeddings"]
    best = torch.load(record["best_checkpoint"], weights_only=False)["state_dict"]["method.prompt_embeddings"]
    assert prompt.dtype == torch.float32 and torch.equal(prompt, best)
    metadata = json.loads((run_dir / "prompt.json").read_text())
    assert metadata["shapes"] == {"prompt_embeddings": [100, 64]}  # the default 100 tokens x hidden 64
    assert metadata["split_hash"] == record["split_hash"]


def test_record_is_written_atomically_and_keyed_without_paths(make_config, tmp_path):
    first = make_config(*TINY, "logger=none", run_dir=tmp_path / "a")
    record = run_experiment(first)
    assert read_record(tmp_path / "a") == json.loads((tmp_path / "a" / RECORD_NAME).read_text())
    assert not list((tmp_path / "a").glob(".record.json.*"))  # no temp files left behind
    # the same experiment elsewhere has the same key; another seed does not
    moved = make_config(*TINY, "logger=none", run_dir=tmp_path / "b")
    from prompt_bench.records import resolved_config

    assert run_key(resolved_config(moved)) == record["run_key"]
    assert run_key(resolved_config(make_config(*TINY, "logger=none", "seed=21"))) != record["run_key"]


def logged_values(wandb_file: bytes, key: str) -> list[float]:
    """Values logged under `key` in an offline .wandb file: each history item is a protobuf with
    the key (field 2) followed by its JSON value (field 16, tag 0x82 0x01, one length byte)."""
    pattern = re.compile(rb"\x12" + bytes([len(key)]) + re.escape(key.encode()) + rb"\x82\x01(.)", re.DOTALL)
    values = []
    for match in pattern.finditer(wandb_file):
        start = match.end()
        values.append(float(wandb_file[start : start + match.group(1)[0]]))
    return values


def test_wandb_offline_run_carries_the_metrics_and_is_finished(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    record = run_experiment(make_config(*TINY, "logger=wandb", "sweep_name=wandb_check"))
    assert record["status"] == "ok"
    import wandb

    assert wandb.run is None  # finished, so the next job of a multirun starts its own run
    (offline_dir,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    # run id = run key + sweep (here, outside a multirun: the run dir) + code version, so a rerun resumes it
    run_id = wandb_run_id(record["run_key"], Path(record["run_dir"]).name, code_version())
    assert offline_dir.name.endswith(run_id)
    (wandb_file,) = offline_dir.glob("*.wandb")
    data = wandb_file.read_bytes()
    for metric in ("test/acc", "test/f1"):  # in the history and the summary
        values = logged_values(data, metric)
        assert values and values == [pytest.approx(record["metrics"][metric])] * len(values)
    assert logged_values(data, "train/loss"), "no training loss logged"
    for text in ("wandb_check", "prompt_tuning", "tiny_bert", "synthetic"):  # group, job type, tags
        assert text.encode() in data
