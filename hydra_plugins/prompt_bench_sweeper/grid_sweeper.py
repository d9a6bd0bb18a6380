"""GridSweeper: BasicSweeper whose cartesian product goes through prompt_bench.grid.plan_grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from hydra.utils import get_class

from prompt_bench.grid import GridRules, Plan, cached_describer, plan_grid, split_override


class GridSweeper(BasicSweeper):
    """`hydra.sweeper.params` swept as by Hydra's basic sweeper, then planned (prompt_bench/grid.py).

    dry_run: print the plan, write grid.json and compose every run, launch nothing. The other keys
    are GridRules' (conf/hydra/sweeper/grid.yaml).
    """

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        dry_run: bool = False,
        variants: Any = None,
        dual_backbones: Any = None,
        image_backbones: Any = None,
        transfer_sources: Any = None,
        method_overrides: Any = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dry_run = bool(dry_run)
        self.rules = GridRules.from_config(
            variants=variants,
            dual_backbones=dual_backbones,
            image_backbones=image_backbones,
            transfer_sources=transfer_sources,
            method_overrides=method_overrides,
        )
        self.plan: Plan | None = None
        self.composed: set[tuple[str, ...]] = set()  # jobs (seed aside) composed so far

    def compose(self, job: list[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        self.composed.add(seedless(job))
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(job))

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        """The basic sweep's jobs, planned; batches of max_batch_size as the basic sweeper makes them."""
        assert self.config is not None
        jobs = BasicSweeper.split_arguments(overrides, None)[0]
        self.plan = plan_grid(jobs, self.rules, cached_describer(self.compose, get_class))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        path = self.plan.write(sweep_dir)
        print(f"{self.plan.summary(sweep_dir.name)}\n  plan: {path}", flush=True)
        if self.dry_run:  # every run composed (as the launch would), nothing launched
            self.validate_batch_is_legal(self.plan.runs)
            return []
        return list(BasicSweeper.split_overrides_to_chunks(self.plan.runs, max_batch_size))

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose each job that planning did not compose already, once per seed-less override set."""
        assert self.hydra_context is not None and self.config is not None
        for job in batch:
            if seedless(job) not in self.composed:
                self.compose(list(job))


def seedless(job: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(override for override in job if split_override(override)[0] != "seed"))
