"""Hydra launchers that pack a sweep: finished runs filtered out, the rest grouped into packs
(prompt_bench/packing/plan.py), each pack trained as one process (here) or one job (submitit: SLURM,
or submitit's local executor).

Hydra instantiates launchers only from the `hydra_plugins` namespace, so the classes it names
(`hydra/launcher=packed`, or `pack=auto`, which swaps the configured launcher for its packed twin,
prompt_bench/packing/auto.py) are thin subclasses in hydra_plugins/prompt_bench_packing; the work is
here. A job the pack loop refuses (`refusals.config_refusal`) runs alone, the ordinary way.
Submitted jobs call plain functions of this package (`jobs.py`), never a pickled launcher.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus, _save_config, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

if TYPE_CHECKING:  # the rest is imported when a sweep launches: Hydra imports this module on every start
    from prompt_bench.packing.plan import Plan, SweepJob

log = logging.getLogger("prompt_bench")


def report(record: dict[str, Any], outcome: str) -> None:
    """One line per run as it ends, and its outcome for the sweep tally (prompt_bench.run.OUTCOMES)."""
    from prompt_bench.console import run_line
    from prompt_bench.run import OUTCOMES

    OUTCOMES.append((outcome, str(record.get("run_dir"))))
    print(run_line(record, outcome), flush=True)


class PackedLauncherBase(Launcher):
    """Composes every job, skips the finished ones, plans packs, and hands them to `execute`."""

    def __init__(self) -> None:
        super().__init__()
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    # ---- composing the jobs -----------------------------------------------------------------------
    @property
    def sweep_dir(self) -> Path:
        return Path(str(self.config.hydra.sweep.dir))

    def sweep_config(self, overrides: list[str], number: int) -> DictConfig:
        """The job's full config (hydra node included), numbered as Hydra's own launchers number it."""
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = number
            sweep_config.hydra.job.num = number
        return sweep_config

    def job_config(self, sweep_config: DictConfig) -> DictConfig:
        """The run's config as `prompt-bench` would see it in this job: its output dir and the sweep's
        name set, an unused transfer pair dropped, Hydra's node removed."""
        from prompt_bench.run import drop_unused_transfer

        output_dir = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir")))
        output_dir = (output_dir / str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))).resolve()
        with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
            sweep_config.hydra.runtime.output_dir = str(output_dir)
        cfg = copy.deepcopy(sweep_config)
        with read_write(cfg), open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.sweep_name = self.sweep_dir.name
            del cfg["hydra"]
        drop_unused_transfer(cfg)
        return cfg

    # ---- the sweep --------------------------------------------------------------------------------
    def sweep_logging(self) -> None:
        """Hydra's launcher logging, then the sweep console: run lines, warnings and errors only. Again after
        each job run alone: Hydra's run_job leaves its own console handler behind, without the filters."""
        from prompt_bench.quiet import console_filter, quiet_known_noise, sweep_console

        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        quiet_known_noise()
        console_filter()
        sweep_console()

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        from prompt_bench.packing.plan import SweepJob, plan_packs
        from prompt_bench.records import find_ok_record, resolved_config, run_key

        setup_globals()
        self.sweep_logging()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        returns: dict[int, JobReturn] = {}
        pending: list[SweepJob] = []
        first_of_key: dict[str, int] = {}
        twins: list[tuple[SweepJob, str]] = []  # a job with the run key of an earlier one (a transfer baseline)
        self.sweep_configs: dict[int, DictConfig] = {}
        for offset, overrides in enumerate(job_overrides):
            number = initial_job_idx + offset
            sweep_config = self.sweep_config(list(overrides), number)
            self.sweep_configs[number] = sweep_config
            job = SweepJob(
                number=number, overrides=list(sweep_config.hydra.overrides.task), cfg=self.job_config(sweep_config)
            )
            key = run_key(resolved_config(job.cfg))
            skip_done = job.cfg.get("skip_done", True)
            done = find_ok_record(self.sweep_dir, key) if skip_done else None
            if done is not None:  # filtered out before anything is launched or submitted
                report(done, "skipped")
                returns[number] = self.job_return(job, done)
            elif skip_done and key in first_of_key:
                twins.append((job, key))
            else:
                first_of_key.setdefault(key, number)
                pending.append(job)
        pack = self.config.get("pack") or {}
        plan = plan_packs(pending, int(pack.get("max_runs", 8)), pack.get("memory_budget_gb"))
        log.info(
            "packed sweep: %d jobs, %d already ok, %d repeats, %d packs (%s runs), %d alone",
            len(job_overrides),
            len(returns),
            len(twins),
            len(plan.packs),
            "+".join(str(len(p)) for p in plan.packs) or "0",
            len(plan.alone),
        )
        for job, reason in plan.alone:
            log.info("job %d runs unpacked: %s", job.number, reason)
        returns.update(self.execute(plan))
        for job, key in twins:  # as unpacked: a repeat finds its twin's ok record and is skipped
            done = find_ok_record(self.sweep_dir, key)
            record = done or {
                "run_key": key,
                "status": "failed",
                "run_dir": str(job.cfg.paths.output_dir),
                "error": f"job {first_of_key[key]} of this sweep has the same run key and did not end ok",
            }
            report(record, "skipped" if done else "failed")
            returns[job.number] = self.job_return(job, record)
        return [returns[number] for number in sorted(returns)]

    def execute(self, plan: Plan) -> dict[int, JobReturn]:
        raise NotImplementedError

    # ---- what each job returns ----------------------------------------------------------------------
    def save_hydra_files(self, job: SweepJob) -> None:
        """.hydra/config.yaml, hydra.yaml and overrides.yaml in the run dir, as Hydra's run_job writes them."""
        sweep_config = self.sweep_configs[job.number]
        if sweep_config.hydra.output_subdir is None:
            return
        target = Path(job.cfg.paths.output_dir) / str(sweep_config.hydra.output_subdir)
        _save_config(job.cfg, "config.yaml", target)
        _save_config(OmegaConf.create({"hydra": sweep_config.hydra}), "hydra.yaml", target)
        _save_config(OmegaConf.create(list(sweep_config.hydra.overrides.task)), "overrides.yaml", target)

    def job_return(self, job: SweepJob, record: dict[str, Any]) -> JobReturn:
        """A completed JobReturn whose value is the run's best dev score (what a sweeper maximizes)."""
        from prompt_bench.scores import dev_score

        sweep_config = self.sweep_configs[job.number]
        result = JobReturn(
            overrides=list(sweep_config.hydra.overrides.task),
            cfg=job.cfg,
            hydra_cfg=OmegaConf.create({"hydra": sweep_config.hydra}),
            working_dir=os.getcwd(),
            task_name=str(sweep_config.hydra.job.name),
            status=JobStatus.COMPLETED,
        )
        result.return_value = dev_score(record.get("metrics") or {})
        return result


class PackedLocal(PackedLauncherBase):
    """Packs train here, one after the other; a refused job runs as Hydra's basic launcher runs it."""

    def execute(self, plan: Plan) -> dict[int, JobReturn]:
        from prompt_bench.packing.pack_run import PackJob, run_pack

        returns: dict[int, JobReturn] = {}
        for pack in plan.packs:
            for job in pack:
                self.save_hydra_files(job)
            records = run_pack([PackJob(job.cfg, job.overrides, self.sweep_dir) for job in pack], on_record=report)
            for job, record in zip(pack, records):
                returns[job.number] = self.job_return(job, record)
        for job, _ in plan.alone:
            sweep_config = self.sweep_configs[job.number]
            log.info("\t#%d : %s", job.number, " ".join(filter_overrides(sweep_config.hydra.overrides.task)))
            returns[job.number] = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=sweep_config,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            self.sweep_logging()
        return returns


class PackedSubmitit(PackedLauncherBase):
    """One submitit job per pack (and one per refused job), with hydra-submitit-launcher's options
    (partition, timeout_min, gpus_per_node, array_parallelism, setup...). Like that launcher, it
    blocks until every job ends; each pack job resumes its runs from their checkpoints when
    submitit requeues it (max_num_timeout)."""

    _EXECUTOR = "abstract"

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = {
            name: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            for name, value in params.items()
        }

    def executor(self) -> Any:
        """A submitit executor with the launcher's options, named as hydra-submitit-launcher names them."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        params = {name: value for name, value in self.params.items() if name != "_target_"}
        folder = params.pop("submitit_folder")
        init = {}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=folder, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{name if name in shared else f"{self._EXECUTOR}_{name}": value for name, value in params.items()}
        )
        return executor

    def execute(self, plan: Plan) -> dict[int, JobReturn]:
        from prompt_bench.packing.jobs import SweepJobsFunction, unfinished_record

        units = [(pack, True) for pack in plan.packs] + [([job], False) for job, _ in plan.alone]
        if not units:
            return {}
        for pack, _ in units:
            for job in pack:
                self.save_hydra_files(job)
        payloads = [[(job.cfg, job.overrides, str(self.sweep_dir)) for job in pack] for pack, _ in units]
        submitted = self.executor().map_array(SweepJobsFunction(), payloads, [packed for _, packed in units])
        log.info("submitted %d jobs (%d packs)", len(submitted), len(plan.packs))
        returns: dict[int, JobReturn] = {}
        for (pack, _), job_handle in zip(units, submitted):
            try:
                records = job_handle.results()[0]
            except Exception as error:  # noqa: BLE001 - the job died (killed, out of memory): say so per run
                records = [unfinished_record(job.cfg, error) for job in pack]
            for job, record in zip(pack, records):
                status = record.get("status")
                report(record, status if status in ("ok", "skipped") else "failed")
                returns[job.number] = self.job_return(job, record)
        return returns
