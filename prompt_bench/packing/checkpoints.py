"""A packed run's checkpoints: trainable state only, written atomically into its own checkpoints/ dir.

- `best.ckpt`: {"state_dict", "epoch", "global_step", "packed": True}, the trainable tensors (prompt,
  method and head parameters and buffers; never the shared backbone) of the best dev epoch.
- `packed_last.ckpt`: everything a killed run needs to go on from its last finished epoch: the
  trainable state, optimizer and scheduler state, the split's shuffle generator, the epoch and step
  counters, the best dev score so far and the best-dev maxima, the seconds and samples trained.

The unpacked (Lightning) path resumes from `last.ckpt`, whose format differs; the names differ so
neither path ever reads the other's file (a run switched between them starts again).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prompt_bench.records import move_aside, share_file

log = logging.getLogger("prompt_bench")
BEST_NAME = "best.ckpt"
LAST_NAME = "packed_last.ckpt"


def trainable_state(module: nn.Module) -> dict[str, Tensor]:
    """The module's state without the frozen backbone (`backbone.*`), copied to the CPU."""
    return {
        name: value.detach().to("cpu", copy=True)
        for name, value in module.state_dict().items()
        if not name.startswith("backbone.")
    }


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file beside `path`, then rename: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp_name)
        os.replace(tmp_name, path)
        share_file(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_last(path: Path) -> dict[str, Any] | None:
    """The saved training state, or None when there is none; an unreadable file is moved aside."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "global_step" not in state:
            raise ValueError("not a packed training state")
        return state
    except Exception as error:  # noqa: BLE001 - torn or foreign: either way unusable
        aside = move_aside(path)
        log.warning("checkpoint %s is unreadable (%s); moved aside to %s, training from scratch", path, error, aside)
        return None
