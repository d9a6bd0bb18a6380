"""One run of `prompt-bench`, timed phase by phase up to its first optimizer step, then stopped.

Run by the startup section in a fresh interpreter (`python -c`, see `startup.CHILD_CODE`):

    python -c "import time; t0 = time.time(); from prompt_bench.bench.startup_child import main; main(t0)" \
        result.json backbone=minilm hydra.run.dir=/tmp/run

It goes through the real console entry point (`prompt_bench.run.main`, Hydra and all) and times the
pieces by wrapping them, without changing what they do:
- `imports`: `import prompt_bench.run` (torch, Lightning, transformers, Hydra, ...);
- `hydra + record`: Hydra's compose and run dir, the run key, the first record write (versions, git);
- `dataset` / `model load`: the task (`load_task`, from the packaged-task cache when warm) / `instantiate(cfg.backbone)`;
- `split`: the few-shot (or base-to-new) split; `build other`: the rest of `build_experiment`
  (head, method preparation, Lightning module, datamodule objects);
- `tokenize`: the datamodule's token ids (the on-disk token cache when warm);
- `zero-shot`: the zero-shot test pass (`module.evaluate(use_prompt=False)`);
- `fit setup`: the Trainer, Lightning's fit setup and the first batch, up to the first `training_step`;
- `first step`: the first training step (forward, backward), up to the end of the first
  `optimizer.step()` (a global optimizer post-hook).
At that hook the child writes its JSON (phase seconds, epoch timestamps, peak RSS, which heavy
modules were imported) and leaves with `os._exit(0)`: nothing after the first step is measured.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

# Imported by a run only when it needs them (the lazy-import contract, tests/test_lazy_imports.py).
WATCHED_MODULES = ("wandb", "torchvision", "datasets", "matplotlib", "peft", "pandas", "PIL", "sklearn", "scipy")
INSTANTIATED_PHASES = {"backbone": "model load", "task": "dataset"}  # config key -> phase


class PhaseClock:
    """Seconds spent in named phases (summed over calls) and epoch timestamps of named events."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.events: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def event(self, name: str) -> None:
        self.events.setdefault(name, time.time())

    def timed(self, phase: str, function: Callable) -> Callable:
        """`function`, adding its duration to `phase` on every call."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - started)

        return wrapper


def wrap_method(owner: type, name: str, phase: str, clock: PhaseClock) -> None:
    setattr(owner, name, clock.timed(phase, getattr(owner, name)))


def install_timers(clock: PhaseClock) -> None:
    """Wrap the builder's instantiate, the split, the token ids, zero-shot and the first step."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from prompt_bench import build, build_sites, run
    from prompt_bench.data.datamodule import SplitDataModule
    from prompt_bench.lit.base import PromptLightningModule

    plain_instantiate = build.instantiate

    def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
        phase = INSTANTIATED_PHASES.get(str(config._key()) if hasattr(config, "_key") else "")
        if phase is None:
            return plain_instantiate(config, *args, **kwargs)
        return clock.timed(phase, plain_instantiate)(config, *args, **kwargs)

    build.instantiate = instantiate
    if hasattr(build, "load_task"):  # the packaged-task cache (older code instantiates the task in build)
        build.load_task = clock.timed("dataset", build.load_task)
    plain_build = run.build_experiment

    def build_experiment(cfg: Any) -> Any:
        clock.event("build_start")
        try:
            return clock.timed("build", plain_build)(cfg)
        finally:
            clock.event("build_end")

    run.build_experiment = build_experiment
    for site in (build_sites.InputSite, build_sites.ClassSite):
        wrap_method(site, "split", "split", clock)
    wrap_method(SplitDataModule, "encoded_parts", "tokenize", clock)
    wrap_method(PromptLightningModule, "evaluate", "zero-shot", clock)
    plain_step = PromptLightningModule.training_step

    def training_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        clock.event("first_step_start")
        return plain_step(self, *args, **kwargs)

    PromptLightningModule.training_step = training_step

    def after_first_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        clock.event("first_step_end")
        finish(clock)

    register_optimizer_step_post_hook(after_first_step)


RESULT_PATH: list[str] = []


def finish(clock: PhaseClock) -> None:
    """Write the result and leave at once (no teardown, no test, no record)."""
    result = {
        "events": clock.events,
        "seconds": clock.seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "modules": sorted(name for name in WATCHED_MODULES if name in sys.modules),
    }
    with open(RESULT_PATH[0], "w") as handle:
        json.dump(result, handle)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(started_at: float) -> None:
    """argv: result path, then the run's overrides. started_at: epoch seconds of the first line run."""
    result_path, *overrides = sys.argv[1:]
    RESULT_PATH.append(result_path)
    clock = PhaseClock()
    clock.events["child_start"] = started_at
    clock.event("imports_start")
    import prompt_bench.run as run

    clock.event("imports_end")
    install_timers(clock)
    sys.argv = ["prompt-bench", *overrides]
    try:
        run.main()
    except SystemExit:
        pass
    clock.event("no_step")  # the run ended without an optimizer step (it failed): say so
    finish(clock)
