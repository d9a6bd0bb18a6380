"""Runs back in: the Python API (prompt_bench.run / load), prompt-bench-eval, prompt.json, and what the
record and the prompt files carry (split sizes, overrides, git dirty flag, group-readable modes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import prompt_bench
from prompt_bench.errors import ConfigError
from prompt_bench.export.eval_cli import main as eval_main
from prompt_bench.export.peft_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from prompt_bench.records import RECORD_NAME, git_dirty, git_state, write_json_atomic
from tests.helpers.cli import run_cli

TINY = ["backbone=tiny_bert", "dataset=synthetic", "trainer=debug", "logger=none"]
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def api_env(monkeypatch, tmp_path, cache_dir):
    monkeypatch.setenv("PROMPT_BENCH_ROOT", str(tmp_path))
    monkeypatch.setenv("PROMPT_BENCH_CACHE", str(cache_dir))


@pytest.fixture
def umask_027():
    """A stricter umask than the usual 022, so a mode that ignores it shows."""
    previous = os.umask(0o027)
    yield 0o640
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_api_record_holds_sizes_overrides_git_and_files_follow_the_umask(api_env, tmp_path, umask_027):
    overrides = [*TINY, "dataset.k_shot=4"]
    record = prompt_bench.run(overrides, run_dir=tmp_path / "run")
    assert record["status"] == "ok", record.get("error")
    run_dir = Path(record["run_dir"])
    assert run_dir == (tmp_path / "run").resolve()
    assert record["overrides"] == overrides
    assert record["split_sizes"] == {"train": 16, "dev": 16, "test": 128}  # 4 shots x 4 classes; 32 test x 4
    assert isinstance(record["git_dirty"], bool)
    assert record["git_commit"].endswith("-dirty") == record["git_dirty"]
    for name in (RECORD_NAME, "prompt.safetensors", "prompt.json", ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        assert mode(run_dir / name) == umask_027, name  # 0666 less the umask: group-readable, never 0600


def test_atomic_json_follows_the_usual_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(previous)
    assert mode(tmp_path / "x.json") == 0o644


def test_git_dirty_flag_follows_the_work_tree(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("one")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    assert git_dirty(tmp_path) is False and len(git_state(tmp_path)[0]) == 40
    (tmp_path / "f.txt").write_text("two")
    assert git_dirty(tmp_path) is True
    assert git_dirty(tmp_path.parent / "no-repo-here") is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """One finished tiny run (verbalizer head, label-text based) shared by the eval tests."""
    root = tmp_path_factory.mktemp("trained")
    env = {"PROMPT_BENCH_ROOT": str(root), "PROMPT_BENCH_CACHE": str(cache_dir)}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        record = prompt_bench.run(TINY, run_dir=root / "run")
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    assert record["status"] == "ok", record.get("error")
    return Path(record["run_dir"]), record


def test_prompt_json_holds_what_rebuilds_the_classifier(trained):
    run_dir, record = trained
    metadata = json.loads((run_dir / "prompt.json").read_text())
    assert metadata["method"] == "prompt_tuning" and metadata["n_tokens"] == 100 and metadata["depth"] == "input"
    assert metadata["backbone"] == "tiny_bert" and metadata["backbone_source"] == "tiny"
    assert metadata["backbone_id"] == "tiny_bert" and metadata["family"] == "encoder"
    assert metadata["pooling"] == "cls" and metadata["backbone_config"]["lm_head"] is True
    assert "cache_dir" not in metadata["backbone_config"]
    assert metadata["head"] == {"name": "verbalizer"}  # head=auto resolved to the backbone's default
    assert metadata["dataset"] == "synthetic" and metadata["label_names"] == ["red", "green", "blue", "yellow"]
    assert metadata["peft_adapter"] is True and metadata["head_file"] is None
    assert metadata["split_hash"] == record["split_hash"]


def test_load_evaluates_to_the_recorded_test_scores_without_touching_the_record(trained):
    run_dir, record = trained
    before = (run_dir / RECORD_NAME).read_bytes()
    evaluated = prompt_bench.load(run_dir).evaluate()
    for name in ("test/acc", "test/f1"):
        assert evaluated["metrics"][name] == pytest.approx(record["metrics"][name], abs=1e-6), name
    assert evaluated["split_hash"] == record["split_hash"] and evaluated["trained_run_key"] == record["run_key"]
    path = Path(evaluated["path"])
    assert path.parent == run_dir / "evals" and json.loads(path.read_text())["metrics"] == evaluated["metrics"]
    assert (run_dir / RECORD_NAME).read_bytes() == before


def test_predict_agrees_with_evaluate(trained):
    run_dir, _ = trained
    saved = prompt_bench.load(run_dir)
    split = saved.build().split
    predictions = saved.predict(list(split.test.texts))
    assert set(predictions) <= set(split.label_names)
    accuracy = sum(split.label_names[y] == p for y, p in zip(split.test.labels, predictions)) / len(predictions)
    assert accuracy == pytest.approx(saved.evaluate()["metrics"]["test/acc"], abs=1e-6)


def test_eval_cli_scores_another_label_set_with_a_label_text_head(trained, capsys):
    run_dir, _ = trained
    assert eval_main([str(run_dir), "dataset.task.n_classes=3", "dataset.name=synthetic3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("eval synthetic3: acc=") and "(primary acc)" in line
    (path,) = (run_dir / "evals").glob("synthetic3-*.json")
    written = json.loads(path.read_text())
    assert written["split_sizes"]["test"] == 96 and written["overrides"][0] == "dataset.task.n_classes=3"


def test_eval_refuses_a_new_backbone_and_an_unknown_dataset(trained, capsys):
    run_dir, _ = trained
    assert eval_main([str(run_dir), "backbone=tiny_gpt2"]) == 1
    assert "belongs to the backbone it was trained with ('tiny_bert')" in capsys.readouterr().err
    assert eval_main([str(run_dir), "dataset=no_such"]) == 1
    assert "dataset 'no_such' is not in conf/dataset/" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no readable record.json"):
        prompt_bench.load(run_dir / "evals")


def test_a_linear_head_refuses_other_labels_and_loads_its_trained_weights(api_env, tmp_path):
    record = prompt_bench.run([*TINY, "head=linear"], run_dir=tmp_path / "linear")
    run_dir = Path(record["run_dir"])
    assert json.loads((run_dir / "prompt.json").read_text())["head_file"] == "head.safetensors"
    assert set(load_file(str(run_dir / "head.safetensors"))) == {"classifier.weight", "classifier.bias"}
    saved = prompt_bench.load(run_dir)
    assert saved.evaluate()["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    with pytest.raises(ConfigError, match=r"linear head was trained on the labels .*one trained row per class"):
        saved.evaluate(overrides=["dataset.task.n_classes=3"])


def test_import_prompt_bench_stays_light():
    code = "import sys, prompt_bench; assert callable(prompt_bench.load.__call__); print(sorted(m for m in ('torch', 'hydra', 'pytorch_lightning') if m in sys.modules))"
    light = "import sys, prompt_bench; print(sorted(m for m in ('torch', 'hydra', 'pytorch_lightning') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    assert result.stdout.strip() == "[]", result.stderr
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


def test_run_api_refuses_a_sweep():
    with pytest.raises(ConfigError, match="prompt-bench -m"):
        prompt_bench.run(["seed=13,21"])


def test_cli_records_its_overrides_and_eval_cli_runs_as_a_script(tmp_path, cache_dir):
    overrides = ["trainer=debug", "backbone=tiny_bert", "dataset=synthetic", "logger=none", "seed=21"]
    result = run_cli(*overrides, root=tmp_path, cache=cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "outputs").rglob(RECORD_NAME)
    record = json.loads(path.read_text())
    assert record["overrides"] == overrides  # Hydra's task overrides, as typed
    assert record["split_sizes"] == {"train": 64, "dev": 64, "test": 128}  # 16 shots x 4 classes
    env = {**os.environ, "PROMPT_BENCH_CACHE": str(cache_dir), "PYTHONPATH": str(PROJECT_ROOT)}
    evaluated = subprocess.run(
        [sys.executable, "-m", "prompt_bench.export.eval_cli", str(path.parent)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert evaluated.stdout.strip().startswith(f"eval synthetic: acc={record['metrics']['test/acc']:.4f}")
