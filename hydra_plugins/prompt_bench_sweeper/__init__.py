"""prompt_bench's grid sweeper (`hydra/sweeper=grid`): Hydra's basic sweep, each cell planned by
`prompt_bench.grid` (a method moved to the backbone its family allows, a transfer method given its
default pair, incompatible cells skipped with a printed count) before the launcher gets the runs.

It lives here because Hydra instantiates sweepers only from the `hydra_plugins` namespace. Hydra
imports this module at every start while scanning for plugins, so it stays light (no torch).
"""

from __future__ import annotations

from hydra_plugins.prompt_bench_sweeper.grid_sweeper import GridSweeper

__all__ = ["GridSweeper"]
