"""Checks that run before a sweep is handed to a launcher (wired in by conf/hydra/launcher/slurm_*.yaml).

Hydra only instantiates launchers from the `hydra_plugins` namespace, so the SLURM presets keep
hydra-submitit-launcher's own class and add this Hydra callback instead. Its `on_multirun_start`
runs before the sweeper builds the launcher, so a missing `sbatch` stops the sweep before any
job is submitted.
"""

from __future__ import annotations

import shutil
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SlurmUnavailableError(SystemExit):
    """SLURM's client tools are not on PATH.

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


class RequireSbatch(Callback):
    """Stops a multirun with a sentence when `sbatch` cannot be found."""

    def __init__(self, launcher: str = "slurm") -> None:
        self.launcher = launcher

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if shutil.which("sbatch") is None:
            raise SlurmUnavailableError(slurm_unavailable_message(self.launcher))
