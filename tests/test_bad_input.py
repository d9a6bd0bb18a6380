"""Bad inputs end with a sentence that names the problem, and a `failed` record on disk."""

from __future__ import annotations

import json
import time

import pytest

from prompt_bench.records import RECORD_NAME
from prompt_bench.run import run_experiment
from tests.helpers.cli import run_cli

TINY = ("backbone=tiny_bert", "trainer=debug", "logger=none")


def failed_record(make_config, tmp_path, *overrides: str) -> dict:
    record = run_experiment(make_config(*overrides))
    on_disk = json.loads((tmp_path / "run" / RECORD_NAME).read_text())
    assert on_disk["status"] == record["status"] == "failed"
    assert on_disk["run_key"] == record["run_key"]
    return on_disk


def test_unknown_group_option_lists_options(tmp_path, cache_dir):
    result = run_cli("method=prompt_tunin", root=tmp_path, cache=cache_dir)
    assert result.returncode != 0
    assert "Could not find 'method/prompt_tunin'" in result.stderr
    assert "prompt_tuning" in result.stderr  # Hydra lists the available options


def test_misspelt_key_is_named(tmp_path, cache_dir):
    result = run_cli("method.module.n_tokenz=5", root=tmp_path, cache=cache_dir)
    assert result.returncode != 0
    assert "n_tokenz" in result.stderr and "not in struct" in result.stderr


def test_failed_single_run_exits_nonzero_with_message_not_traceback(tmp_path, cache_dir):
    result = run_cli(*TINY, "dataset=synthetic", "dataset.k_shot=1000", root=tmp_path, cache=cache_dir)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "k_shot=1000" in output
    assert "Traceback" not in output
    (record_path,) = (tmp_path / "outputs").rglob(RECORD_NAME)
    assert json.loads(record_path.read_text())["status"] == "failed"


def test_csv_missing_file(make_config, tmp_path):
    missing = tmp_path / "nope.csv"
    record = failed_record(make_config, tmp_path, *TINY, "dataset=csv", f"dataset.task.path={missing}")
    assert str(missing) in record["error"]


def test_csv_missing_column_lists_columns_found(make_config, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("sentence,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(40)))
    record = failed_record(make_config, tmp_path, *TINY, "dataset=csv", f"dataset.task.path={path}")
    assert "'text'" in record["error"] and "sentence" in record["error"] and str(path) in record["error"]


def test_label_names_mismatch_names_both(make_config, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{['pos', 'neg'][i % 2]}\n" for i in range(40)))
    record = failed_record(
        make_config,
        tmp_path,
        *TINY,
        "dataset=csv",
        f"dataset.task.path={path}",
        "dataset.task.label_names=[positive,negative]",
    )
    assert "pos" in record["error"] and "positive" in record["error"]


def test_hub_backbone_offline_says_so(make_config, tmp_path):
    started = time.perf_counter()
    record = failed_record(
        make_config, tmp_path, "backbone=bert_base", "dataset=synthetic", "trainer=debug", "logger=none"
    )
    assert time.perf_counter() - started < 60
    assert "hub" in record["error"] and "backbone.source=path" in record["error"]


def test_hub_dataset_offline_says_so(make_config, tmp_path):
    record = failed_record(
        make_config, tmp_path, *TINY, "dataset=hf", "dataset.task.path=glue", "dataset.task.name=sst2"
    )
    assert "HubUnavailableError" in record["error"] and "dataset=csv" in record["error"]


def test_k_shot_larger_than_a_class(make_config, tmp_path):
    record = failed_record(make_config, tmp_path, *TINY, "dataset=synthetic", "dataset.k_shot=1000")
    assert "k_shot=1000" in record["error"] and "has only" in record["error"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("backbone=minilm", "head=verbalizer"), "has no MLM head"),
        (("backbone=tiny_bert", "method=linear_probe", "head=verbalizer"), "needs head=linear"),
        (("backbone=tiny_bert", "method.module.init=text"), "init_text"),
        (("backbone=tiny_bert", "method.module.init=nonsense"), "random, vocab, text, labels, file"),
    ],
)
def test_incompatible_combinations_fail_before_training(make_config, tmp_path, overrides, expected):
    record = failed_record(make_config, tmp_path, *overrides, "dataset=synthetic", "trainer=debug", "logger=none")
    assert expected in record["error"]
    assert "metrics" not in record


# Up-front validation (prompt_bench/validate.py): one sentence each, a failed record, nothing trained.


def write_csv(path, rows):
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    return path


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("method.optimizer.lr=-1",), "method.optimizer.lr=-1 is not a positive learning rate"),
        (("seed=abc",), "seed='abc' is not an integer"),
        (("dataset.max_length=600",), "dataset.max_length=600 + 100 prompt tokens = 700 positions"),
        (("dataset.empty_texts=maybe",), "dataset.empty_texts='maybe' is not one of drop, refuse"),
    ],
)
def test_bad_values_fail_up_front_with_a_sentence(make_config, tmp_path, overrides, expected):
    record = failed_record(make_config, tmp_path, *TINY, "dataset=synthetic", *overrides)
    assert expected in record["error"]
    assert "metrics" not in record  # no zero-shot pass, no training


def test_class_only_in_the_test_file_is_named_not_a_k_shot_hint(make_config, tmp_path):
    train = write_csv(tmp_path / "train.csv", [(f"text {i}", "ab"[i % 2]) for i in range(40)])
    test = write_csv(tmp_path / "test.csv", [(f"text {i}", "abc"[i % 3]) for i in range(30)])
    record = failed_record(
        make_config,
        tmp_path,
        *TINY,
        "dataset=csv",
        f"dataset.task.path={train}",
        f"dataset.task.test_path={test}",
        "dataset.task.label_names=[a,b,c]",
        "dataset.k_shot=4",
    )
    assert "['c'] in its test split but not in its train pool" in record["error"]
    assert "k_shot" not in record["error"]


def empty_cells_csv(tmp_path):
    rows = [("" if i % 10 == 0 else f"text {i}", "ab"[i % 2]) for i in range(60)]
    return write_csv(tmp_path / "holes.csv", rows)


def test_empty_texts_refused_by_option(make_config, tmp_path):
    path = empty_cells_csv(tmp_path)
    record = failed_record(
        make_config,
        tmp_path,
        *TINY,
        "dataset=csv",
        f"dataset.task.path={path}",
        "dataset.empty_texts=refuse",
        "dataset.k_shot=4",
    )
    assert "empty text(s)" in record["error"] and "dataset.empty_texts=drop" in record["error"]


def test_empty_texts_dropped_with_a_count_in_the_record(make_config, tmp_path):
    path = empty_cells_csv(tmp_path)
    record = run_experiment(make_config(*TINY, "dataset=csv", f"dataset.task.path={path}", "dataset.k_shot=4"))
    assert record["status"] == "ok", record.get("error")
    assert sum(record["data_notes"].values()) == 6


def test_unwritable_output_dir_is_a_sentence_not_a_traceback(tmp_path, cache_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_cli(*TINY, "dataset=synthetic", f"paths.log_dir={blocker}/outputs", root=tmp_path, cache=cache_dir)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "is not writable" in output and "paths.log_dir" in output
    assert "Traceback" not in output
