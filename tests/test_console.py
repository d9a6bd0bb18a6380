"""The console: known noise filtered (and nothing else), progress with an ETA, one line per sweep run."""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

import pytest
from pytorch_lightning.utilities.warnings import PossibleUserWarning

from prompt_bench import quiet
from prompt_bench.callbacks import clock, eta_seconds, progress_mode
from prompt_bench.console import run_line
from prompt_bench.errors import ConfigError
from prompt_bench.quiet import LOG_NOISE, quiet_known_noise
from tests.helpers.cli import run_cli

# What each run printed before the filters (issue 15): none of it may come back.
NOISE = (
    "litlogger",
    "LeafSpec",
    "GPU available",
    "TPU available",
    "The `srun` command is available",
    "Restoring states",
    "Loaded model weights",
    "Seed set to",
    "`Trainer.fit` stopped",
    "requires torchvision",
    "module(s) in eval mode",
)
EPOCH_LINE = re.compile(r"epoch (\d+)/2  step (\d+)/(\d+)  train/loss [\d.]+ .*elapsed \d+:\d\d  ETA \d+:\d\d$")


def with_fake_srun(tmp_path: Path) -> dict[str, str]:
    """PATH with an `srun` on it, so Lightning's srun hint would fire if it were not filtered."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_piped_run_prints_no_noise_and_one_epoch_line_with_an_eta_per_epoch(tmp_path, cache_dir):
    # CLIP (torchvision fallback, eval-mode modules) + every Lightning message of a run
    overrides = ("trainer=debug", "trainer.max_epochs=2", "backbone=tiny_clip", "method=coop", "logger=none")
    result = run_cli(
        *overrides, "dataset=synthetic_images", root=tmp_path, cache=cache_dir, env=with_fake_srun(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert [noise for noise in NOISE if noise in output] == [], output
    epochs = [EPOCH_LINE.search(line) for line in output.splitlines() if EPOCH_LINE.search(line)]
    assert [(m.group(1), m.group(2), m.group(3)) for m in epochs] == [("1", "3", "6"), ("2", "6", "6")], output
    assert epochs[-1].group(0).endswith("ETA 0:00")
    assert "\x1b[" not in result.stdout  # no bar, no colours when piped
    assert "prompt_bench run" in result.stdout and "prompt_bench tally: 1 ok" in result.stdout


def test_a_two_run_sweep_prints_one_line_per_run_and_the_tally(tmp_path, cache_dir):
    overrides = ("-m", "trainer=debug", "backbone=tiny_bert", "dataset=synthetic", "logger=none", "seed=13,21")
    result = run_cli(*overrides, "sweep_name=two", root=tmp_path, cache=cache_dir, env=with_fake_srun(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 4, "\n".join(lines)  # Hydra's "Launching 2 jobs locally", 2 runs, the tally
    assert lines[0].endswith("[HYDRA] Launching 2 jobs locally")
    for line, seed in zip(lines[1:3], (13, 21)):
        assert re.match(
            rf"ok +[0-9a-f]{{16}}  test acc \d+\.\d  dev \d+\.\d +\d+ s  \d_prompt_tuning_tiny_bert_synthetic_s{seed}$",
            line,
        ), line
    assert lines[3] == "prompt_bench tally: 2 ok, 0 failed, 0 skipped"
    run_log = next((tmp_path / "outputs" / "sweeps" / "two").glob("0_*/run.log")).read_text()
    assert "epoch 1/1  step 3/3" in run_log  # the epoch lines leave the console, not the log


@pytest.mark.parametrize(
    ("logger_name", "message"),
    [
        ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging and experiment tracking, try"),
        ("pytorch_lightning.utilities.rank_zero", "GPU available: False, used: False"),
        ("pytorch_lightning.utilities.rank_zero", "TPU available: False, using: 0 TPU cores"),
        ("pytorch_lightning.utilities.rank_zero", "Restoring states from the checkpoint path at /x/best.ckpt"),
        ("pytorch_lightning.utilities.rank_zero", "`Trainer.fit` stopped: `max_steps=30` reached."),
        ("lightning_fabric.utilities.seed", "Seed set to 13"),
        ("transformers.utils.import_utils", "`CLIPImageProcessor` requires torchvision (not installed); falling back"),
    ],
)
def test_each_known_log_message_is_dropped_and_its_neighbours_kept(logger_name, message, caplog):
    quiet_known_noise()
    logger = logging.getLogger(logger_name)
    with caplog.at_level(logging.INFO, logger=logger_name):
        logger.info(message)
        logger.info("GPU available but not used.")  # a real hint stays
        logger.warning("something else")
    assert [record.getMessage() for record in caplog.records] == ["GPU available but not used.", "something else"]
    assert logger_name in LOG_NOISE


def test_only_the_known_warnings_are_dropped():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        for message, category in (
            ("The `srun` command is available on your system but is not used. HINT: ...", PossibleUserWarning),
            ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning),
            ("Found 66 module(s) in eval mode at the start of training. This may ...", PossibleUserWarning),
            ("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no ...", UserWarning),
            ("Checkpoint directory /o/sweeps/s/0_run/checkpoints exists and is not empty.", UserWarning),
            ("The `srun` command is available on your system but is not used.", UserWarning),  # other category
            ("Found 3 NaN losses", PossibleUserWarning),
        ):
            warnings.warn(message, category, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "The `srun` command is available on your system but is not used.",
        "Found 3 NaN losses",
    ]


def test_a_sweep_console_shows_no_weight_loading_bar(monkeypatch, capsys):
    from transformers.utils import logging as transformers_logging

    monkeypatch.setattr(quiet, "console_filter", lambda min_level=0: None)  # leave pytest's handlers alone
    transformers_logging.enable_progress_bar()
    try:
        quiet.sweep_console()
        for _ in transformers_logging.tqdm(range(3), desc="Loading weights"):
            pass
    finally:
        transformers_logging.enable_progress_bar()
    assert "Loading weights" not in capsys.readouterr().err


def test_eta_and_progress_mode():
    assert eta_seconds(elapsed=10.0, steps_done=5, steps_left=15) == 30.0
    assert eta_seconds(elapsed=10.0, steps_done=0, steps_left=15) is None
    assert eta_seconds(elapsed=10.0, steps_done=5, steps_left=float("inf")) is None
    assert (clock(42), clock(725), clock(3723)) == ("0:42", "12:05", "1:02:03")
    assert [progress_mode("auto", True), progress_mode("auto", False), progress_mode("lines", True)] == [
        "bar",
        "lines",
        "lines",
    ]
    with pytest.raises(ConfigError, match="progress='fancy' is not one of auto, bar, lines"):
        progress_mode("fancy", True)


def test_run_line_for_ok_failed_and_skipped():
    record = {
        "run_key": "8213d3c6b575c56c",
        "status": "ok",
        "run_dir": "/o/sweeps/s/0_prompt_tuning_tiny_bert_synthetic_s13",
        "started_at": "2026-12-01T09:00:00+0000",
        "finished_at": "2026-12-01T09:01:05+0000",
        "metrics": {"primary_metric": "f1", "test/primary": 0.5, "val/f1_best": 0.625},
    }
    assert run_line(record) == (
        "ok       8213d3c6b575c56c  test f1 50.0  dev 62.5          65 s  0_prompt_tuning_tiny_bert_synthetic_s13"
    )
    assert run_line(record, "skipped").startswith("skipped  8213d3c6b575c56c  already ok  test f1 50.0")
    assert run_line(record, "skipped").split()[-2] == "-"
    resumed = {**record, "resumed_from_step": 170}
    assert run_line(resumed).endswith("0_prompt_tuning_tiny_bert_synthetic_s13  (resumed from step 170)")
    assert "resumed" not in run_line(resumed, "skipped")
    failed = {**record, "status": "failed", "metrics": {}, "error": "ValueError: k_shot=1000 is too many\nmore"}
    assert run_line(failed).startswith("failed   8213d3c6b575c56c  ValueError: k_shot=1000 is too many")
