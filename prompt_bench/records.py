"""The run record: one JSON file per run, the source of truth for every report.

A record holds the run key (hash of the resolved config without paths, loggers and Hydra's own
settings, which do not change results), the resolved config, the split hash, metrics,
efficiency, versions, git commit and status (`ok`, or `failed` with the error text).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

RECORD_NAME = "record.json"
# Config keys that say where things go or how they are shown, not what is computed.
VOLATILE_KEYS = ("paths", "logger", "hydra", "sweep_name", "skip_done", "progress", "pack")
VOLATILE_NESTED = (("backbone", "cache_dir"),)
VERSIONED_PACKAGES = (
    "prompt_bench",
    "torch",
    "pytorch-lightning",
    "transformers",
    "hydra-core",
    "torchmetrics",
    "datasets",
)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data with every interpolation resolved (Hydra's own node left out)."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    container.pop("hydra", None)
    return container


def run_key(config: dict[str, Any]) -> str:
    """sha256 (first 16 hex) of the result-relevant part of a resolved config."""
    relevant = {key: value for key, value in config.items() if key not in VOLATILE_KEYS}
    for parent, child in VOLATILE_NESTED:
        if isinstance(relevant.get(parent), dict):
            relevant[parent] = {k: v for k, v in relevant[parent].items() if k != child}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shared_file_mode() -> int:
    """The mode `open()` gives a new file: 0666 less the process umask (0644 under the usual 022).
    mkstemp makes 0600 files, which colleagues on a shared filesystem could not read."""
    umask = os.umask(0o022)  # the only portable way to read the umask is to set it, then put it back
    os.umask(umask)
    return 0o666 & ~umask


def share_file(path: Path) -> None:
    """Give a file written by a library (safetensors writes 0600) the mode `open()` would: group-readable."""
    os.chmod(path, shared_file_mode())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of one (mode as `open()`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, shared_file_mode())
        with os.fdopen(handle, "w") as tmp:
            json.dump(data, tmp, indent=2, sort_keys=False, default=str)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


CORRUPT_SUFFIX = ".corrupt-"


def move_aside(path: Path) -> Path:
    """Rename an unreadable file to `<name>.corrupt-<UTC time>` next to it; returns the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    while target.exists():
        target = target.with_name(target.name + "_")
    os.replace(path, target)
    return target


def record_is_corrupt(run_dir: Path) -> bool:
    """A record.json is there but cannot be read as a JSON object."""
    path = Path(run_dir) / RECORD_NAME
    if not path.exists():
        return False
    try:
        return not isinstance(json.loads(path.read_text()), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True
    except FileNotFoundError:
        return False


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record in run_dir, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((Path(run_dir) / RECORD_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(directory: Path) -> str | None:
    """HEAD of the repository holding `directory` (+ '-dirty' with uncommitted changes), or None."""
    state = git_state(directory)
    if state is None:
        return None
    commit, dirty = state
    return commit + ("-dirty" if dirty else "")


def git_dirty(directory: Path) -> bool | None:
    """Whether tracked files of the repository holding `directory` have uncommitted changes (None: no repository)."""
    state = git_state(directory)
    return None if state is None else state[1]


def git_state(directory: Path) -> tuple[str, bool] | None:
    """(HEAD commit, whether tracked files have uncommitted changes) of the repository holding
    `directory`, or None outside a repository (or without git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit, bool(dirty)


def find_ok_record(sweep_dir: Path, key: str) -> dict[str, Any] | None:
    """An `ok` record with run key `key` in sweep_dir or one level below it, else None."""
    sweep_dir = Path(sweep_dir)
    for path in [sweep_dir / RECORD_NAME, *sorted(sweep_dir.glob(f"*/{RECORD_NAME}"))]:
        record = read_record(path.parent)
        if record and record.get("run_key") == key and record.get("status") == "ok":
            return record
    return None


def claim_run_dir(run_dir: Path, key: str) -> Path:
    """The directory a run with `key` writes to: run_dir, unless run_dir already holds another
    run's record (a reordered sweep); then the sibling `<run_dir>-<key>`, so no record is ever
    overwritten by a different run and no checkpoint is resumed by a different config."""
    record = read_record(run_dir)
    if record is None or record.get("run_key") == key:
        return run_dir
    return run_dir.with_name(f"{run_dir.name}-{key}")


def split_sizes(split: Any) -> dict[str, int]:
    """Examples per split: train, dev and test (a base-to-new split: test_<set> per class set)."""
    sizes = {"train": len(split.train), "dev": len(split.dev)}
    if hasattr(split, "tests"):
        sizes.update({f"test_{name}": len(examples) for name, (_, examples) in split.tests.items()})
    else:
        sizes["test"] = len(split.test)
    return sizes
