"""Fault injection: a 10-run sweep SIGKILLed at seeded random points, relaunched until done.

Every run ends ok, no ok record is ever rewritten, and each run's metrics history is complete
(every epoch's validation row survives the kills and resumes).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

SEEDS = ",".join(str(seed) for seed in range(1, 11))
EPOCHS = 3
OVERRIDES = [
    "-m",
    "logger=csv",
    "+logger.csv.flush_logs_every_n_steps=1",
    "backbone=tiny_bert",
    "dataset=synthetic",
    "trainer=debug",
    f"trainer.max_epochs={EPOCHS}",
    "zero_shot=false",
    "save_prompt=false",
    f"seed={SEEDS}",
    "sweep_name=faults",
]


def ok_records(sweep_dir: Path) -> dict[Path, str]:
    found = {}
    for path in sweep_dir.glob("*/record.json"):
        try:
            if json.loads(path.read_text()).get("status") == "ok":
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except (OSError, json.JSONDecodeError):
            continue
    return found


def test_sweep_survives_three_sigkills(tmp_path, cache_dir):
    env = {
        **os.environ,
        "PROMPT_BENCH_ROOT": str(tmp_path),
        "PROMPT_BENCH_CACHE": str(cache_dir),
        "WANDB_MODE": "offline",
    }
    sweep_dir = tmp_path / "outputs" / "sweeps" / "faults"
    command = [sys.executable, "-m", "prompt_bench.run", *OVERRIDES]
    rng = random.Random(1234)
    seen_ok: dict[Path, str] = {}
    started = time.perf_counter()
    for _ in range(3):
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(4.0, 12.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        for path, digest in ok_records(sweep_dir).items():
            assert seen_ok.setdefault(path, digest) == digest, f"{path} was rewritten after it was ok"
    for _ in range(3):  # relaunch until done
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode == 0:
            break
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    elapsed = time.perf_counter() - started

    finished = ok_records(sweep_dir)
    assert len(finished) == 10
    for path, digest in seen_ok.items():
        assert finished[path] == digest, f"{path} was rewritten after it was ok"
    for path in finished:
        record = json.loads(path.read_text())
        with (path.parent / "csv" / "metrics.csv").open() as handle:
            epochs = {int(float(row["epoch"])) for row in csv.DictReader(handle) if row.get("val/acc")}
        assert epochs == set(range(EPOCHS)), (path, epochs, record["attempts"])
        assert record["efficiency"]["train_seconds"] > 0
    print(f"fault injection: 3 kills, 10 runs ok in {elapsed:.0f}s")
