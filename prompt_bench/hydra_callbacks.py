"""Checks that run before a sweep is handed to a launcher (wired in by conf/hydra/launcher/slurm_*.yaml).

Hydra only instantiates launchers from the `hydra_plugins` namespace, so the SLURM presets keep
hydra-submitit-launcher's own class and add this Hydra callback instead. Its `on_multirun_start`
runs before the sweeper builds the launcher, so a missing `sbatch`, or a controller that does not
answer, stops the sweep with one sentence before any job is submitted (instead of submitit's traceback).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SlurmUnavailableError(SystemExit):
    """SLURM's client tools are not on PATH, or its controller does not answer.

    A SystemExit (not an Exception) on purpose: Hydra turns an Exception raised by a callback
    into a warning and goes on, which would leave submitit to fail later with a bare
    FileNotFoundError; a SystemExit stops the command with this message and exit status 1.
    """


def slurm_unavailable_message(launcher: str) -> str:
    return (
        f"SLURM is unavailable: `sbatch` is not on PATH, so hydra/launcher={launcher} cannot submit jobs. "
        "Start a local single-node cluster with `sudo bash scripts/slurm_local_cluster.sh start`, "
        "or run the sweep here with hydra/launcher=basic."
    )


CONTROLLER_DOWN = "Unable to contact slurm controller"
PROBE_TIMEOUT_S = 60


def controller_unreachable_message(launcher: str, said: str) -> str:
    return (
        f"The SLURM controller is unreachable (sbatch said: {said}), so hydra/launcher={launcher} cannot submit jobs; "
        "check it with `scontrol ping`, start the local cluster with `sudo bash scripts/slurm_local_cluster.sh start` "
        "(or ask the cluster admins), or run the sweep here with hydra/launcher=basic."
    )


def probe_controller() -> str | None:
    """What sbatch said when a test submission (`sbatch --test-only`: checked, never queued) could not reach
    the controller; None when it could (or failed for another reason, which the real submission will report)."""
    try:
        probe = subprocess.run(
            ["sbatch", "--test-only", "--wrap=true"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {PROBE_TIMEOUT_S} s"
    said = " ".join((probe.stdout + probe.stderr).split())
    if probe.returncode != 0 and CONTROLLER_DOWN.lower() in said.lower():
        return said.removeprefix("sbatch: error: ")
    return None


class RequireSbatch(Callback):
    """Stops a multirun with a sentence when `sbatch` cannot be found or cannot reach the controller."""

    def __init__(self, launcher: str = "slurm") -> None:
        self.launcher = launcher

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if shutil.which("sbatch") is None:
            raise SlurmUnavailableError(slurm_unavailable_message(self.launcher))
        if (said := probe_controller()) is not None:
            raise SlurmUnavailableError(controller_unreachable_message(self.launcher, said))
