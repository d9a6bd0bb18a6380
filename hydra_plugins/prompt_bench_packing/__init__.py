"""prompt_bench's packed launchers where Hydra looks for launchers (it instantiates only classes under
`hydra_plugins`). The work is in prompt_bench/packing/launcher.py; docs/packing.md says how to use them."""

from prompt_bench.packing.launcher import PackedLocal, PackedSubmitit


class PackedLauncher(PackedLocal):
    """`hydra/launcher=packed`: packs train one after the other in this process."""


class PackedSlurmLauncher(PackedSubmitit):
    """A SLURM preset with `pack=auto`: one SLURM job per pack (hydra-submitit-launcher's options)."""

    _EXECUTOR = "slurm"


class PackedSubmititLocalLauncher(PackedSubmitit):
    """submitit's local executor with `pack=auto`: one local subprocess per pack (tests, a workstation)."""

    _EXECUTOR = "local"
