"""`pack=auto`: a Hydra callback that, when a multirun starts, swaps the configured launcher for its
packed twin (the sweeper builds the launcher from this same config right after).

    basic (the default)           -> hydra_plugins.prompt_bench_packing.PackedLauncher
    submitit SLURM (slurm_cpu/gpu) -> PackedSlurmLauncher, same options: one SLURM job per pack
    submitit local                -> PackedSubmititLocalLauncher: one subprocess per pack

Any other launcher stops the sweep with a sentence before a job runs.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

PLUGIN = "hydra_plugins.prompt_bench_packing"
PACKED_TWINS = {
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher": f"{PLUGIN}.PackedLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher": f"{PLUGIN}.PackedSlurmLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher": f"{PLUGIN}.PackedSubmititLocalLauncher",
}
MODES = ("off", "auto")


class PackUnavailableError(SystemExit):
    """pack=auto with a launcher that has no packed twin, or a bad pack.mode. A SystemExit, not an
    Exception: Hydra turns an Exception raised by a callback into a warning and goes on."""


def pack_mode(config: DictConfig) -> str:
    """pack.mode as a word (YAML reads a bare `off` as false)."""
    mode = (config.get("pack") or {}).get("mode", "off")
    mode = "off" if mode is False or mode is None else str(mode)
    if mode not in MODES:
        raise PackUnavailableError(f"pack.mode={mode} is not one of {', '.join(MODES)} (pack=auto packs a sweep).")
    return mode


class PackAuto(Callback):
    """Swaps hydra.launcher for its packed twin when pack.mode=auto (a multirun only)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if pack_mode(config) != "auto":
            return
        target = str(config.hydra.launcher.get("_target_", ""))
        if target in PACKED_TWINS.values():
            return
        if target not in PACKED_TWINS:
            raise PackUnavailableError(
                f"pack=auto packs sweeps run by Hydra's basic launcher or a submitit preset (slurm_cpu, slurm_gpu); "
                f"hydra/launcher is {target}. Drop pack=auto, or use one of those launchers."
            )
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.launcher._target_ = PACKED_TWINS[target]
