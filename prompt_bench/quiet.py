"""Targeted filters for known console noise: each drops one exact message, says where it comes from and why.

Nothing is silenced wholesale: other warnings and log lines of Lightning, transformers and wandb still show.
`quiet_known_noise()` is idempotent; `sweep_console()` makes a multirun job's console print only warnings and
errors (its info lines, such as the epoch lines, still go to the job's run.log).
"""

from __future__ import annotations

import logging
import re
import warnings

from pytorch_lightning.utilities.warnings import PossibleUserWarning

# logger name -> message patterns (re.match, so anchored at the start) dropped from it.
LOG_NOISE: dict[str, tuple[str, ...]] = {
    "pytorch_lightning.utilities.rank_zero": (
        r"💡 Tip: For seamless cloud logging",  # logger_connector.py: an advertisement for litlogger
        r"GPU available: ",  # setup.py: the device summary; the record names the trainer config
        r"TPU available: ",
        r"Restoring states from the checkpoint path at ",  # testing the best checkpoint (record: best_checkpoint)
        r"Loaded model weights from the checkpoint at ",
        r"`Trainer\.fit` stopped: `max_(epochs|steps)=",  # the normal end of training
    ),
    "lightning_fabric.utilities.seed": (r"Seed set to ",),  # the seed is in the summary and the record
    # CLIP's image processor without torchvision falls back to the PIL one, which the image sets use anyway
    "transformers.utils.import_utils": (r"`\w+ImageProcessor` requires torchvision \(not installed\); falling back",),
}
# (message pattern, category) of warnings.warn calls dropped.
WARNING_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    # lightning_fabric/plugins/environments/slurm.py: a hint for running Lightning under srun by hand;
    # prompt_bench sends SLURM jobs through submitit, which uses srun itself.
    (r"The `srun` command is available on your system but is not used", PossibleUserWarning),
    # pytorch_lightning/utilities/_pytree.py builds torch's deprecated LeafSpec (torch 2.13); nothing to do here.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # fit_loop.py: the frozen backbone is in eval mode on purpose (no dropout in a frozen model).
    (r"Found \d+ module\(s\) in eval mode at the start of training", PossibleUserWarning),
    # callbacks/model_checkpoint.py: MetaPT's and PPT's meta fit (manual optimization) checkpoints the state after
    # each step on purpose: the checkpoint's global_step counts that step, so a resume goes on with the next one.
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps", UserWarning),
    # callbacks/model_checkpoint.py: a run dir only ever holds its own run (records.py), so a non-empty checkpoints/
    # means a killed run is resuming; the run line and the record's resumed_from_step say so.
    (r"Checkpoint directory .* exists and is not empty\.", UserWarning),
)


class DropMessages(logging.Filter):
    """Drops records whose message matches one of `patterns` (re.match on the formatted message)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) for pattern in self.patterns)


class ConsoleFilter(logging.Filter):
    """On a console handler: drops records below WARNING, and any record logged with extra={"console": False}."""

    def __init__(self, min_level: int = logging.NOTSET) -> None:
        super().__init__()
        self.min_level = min_level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.min_level and getattr(record, "console", True)


def quiet_known_noise() -> None:
    """Install the filters above (once per process)."""
    for name, patterns in LOG_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DropMessages) for existing in logger.filters):
            logger.addFilter(DropMessages(patterns))
    for message, category in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)


def console_handlers() -> list[logging.Handler]:
    """The handlers that write to a terminal or a pipe (not to a file) on the root and Lightning's loggers."""
    handlers = []
    for name in ("", "pytorch_lightning", "lightning_fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handlers.append(handler)
    return handlers


def console_filter(min_level: int = logging.NOTSET) -> None:
    """Console handlers skip records marked console=False and, with min_level, those below it."""
    for handler in console_handlers():
        for existing in [f for f in handler.filters if isinstance(f, ConsoleFilter)]:
            handler.removeFilter(existing)
        handler.addFilter(ConsoleFilter(min_level))


def sweep_console() -> None:
    """A multirun job's console shows warnings and errors only; its info lines still go to run.log.

    transformers' "Loading weights" progress bar is turned off too: a sweep reloads the backbone once per run, and
    its bar would sit between the sweep's one-line-per-run outcomes.
    """
    from transformers.utils import logging as transformers_logging

    console_filter(logging.WARNING)
    transformers_logging.disable_progress_bar()


class DropLaunchLines(logging.Filter):
    """Hydra's launchers log one `\\t#<n> : <overrides>` line per job; the sweep prints its own line per run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not re.match(r"\s*#\d+ : ", record.getMessage())


LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
)


def quiet_launcher() -> None:
    for name in LAUNCHER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, DropLaunchLines) for existing in logger.filters):
            logger.addFilter(DropLaunchLines())
