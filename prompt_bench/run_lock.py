"""One owner per run dir: a file lock held while a run trains, with who holds it beside it.

Two launchers of the same sweep (two shells, a relaunch while the first still runs, two SLURM
arrays) would otherwise train the same run in the same dir at once: both write the csv log and
the record, and one resumes from the other's live last.ckpt. The owner claims `run.lock` (an OS
lock through `filelock`, released by the kernel when the owner dies) and writes `owner.json`
(host, pid, SLURM job id, since). A second launcher finds the lock taken and skips the run; an
owner.json naming a dead pid on this host is stale and is taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger("prompt_bench")
LOCK_NAME = "run.lock"
OWNER_NAME = "owner.json"


def this_owner() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_owner(run_dir: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads((Path(run_dir) / OWNER_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


def owner_text(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "an unknown owner"
    job = f", SLURM job {owner['slurm_job_id']}" if owner.get("slurm_job_id") else ""
    return f"pid {owner.get('pid')} on {owner.get('host')}{job} since {owner.get('since')}"


def is_stale(owner: dict[str, Any] | None) -> bool:
    """owner.json names a process on this host that no longer runs."""
    return bool(owner) and owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", -1)))


class RunLock:
    """`with RunLock(run_dir) as held:`; held is False when another live process owns the run."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.lock = FileLock(str(self.run_dir / LOCK_NAME), timeout=0)
        self.held = False
        self.holder: dict[str, Any] | None = None

    def acquire(self) -> bool:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout:
            self.holder = read_owner(self.run_dir)
            if not is_stale(self.holder):
                return False
            # The kernel frees an OS lock with its process, so this is a lock without OS locking
            # (some network file systems): the named owner is dead here, take the run over.
            log.warning("taking over %s from %s, which no longer runs", self.run_dir, owner_text(self.holder))
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)
            try:
                self.lock.acquire()
            except Timeout:
                return False
        previous = read_owner(self.run_dir)
        if previous and previous.get("pid") != os.getpid() and is_stale(previous):
            log.info("taking over %s from %s, which no longer runs", self.run_dir, owner_text(previous))
        (self.run_dir / OWNER_NAME).write_text(json.dumps(this_owner(), indent=2))
        self.held = True
        return True

    def release(self) -> None:
        if self.held:
            (self.run_dir / OWNER_NAME).unlink(missing_ok=True)
            self.lock.release()
            self.held = False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
