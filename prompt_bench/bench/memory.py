"""Peak memory per side, above a baseline taken at the start of each timed block, in MiB.

CUDA: `torch.cuda.max_memory_allocated` after a reset. CPU: the process RSS sampled by a
background thread (torch's CPU allocations are invisible to tracemalloc, and ru_maxrss never
goes down), after giving freed heap pages back to the OS so the baseline is what is in use.
"""

from __future__ import annotations

import ctypes
import gc
import threading

import psutil
import torch


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc), so an RSS delta starts from what is in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """`begin()` before a block, `end(side)` after it; `peak_mib[side]` is the largest block peak."""

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_mib: dict[str, float] = {}
        self._process = psutil.Process()
        self._active = False
        self._baseline = self._block_peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        if device.type == "cpu":
            self._sampler.start()

    @property
    def kind(self) -> str:
        return "peak GPU alloc" if self.device.type == "cuda" else "peak RSS delta"

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._active:
                self._block_peak = max(self._block_peak, self._process.memory_info().rss)

    def begin(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._baseline = torch.cuda.memory_allocated()
            return
        release_freed_memory()
        self._baseline = self._block_peak = self._process.memory_info().rss
        self._active = True

    def end(self, side: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            block_peak = torch.cuda.max_memory_allocated()
        else:
            self._active = False
            block_peak = max(self._block_peak, self._process.memory_info().rss)
        self.peak_mib[side] = max(self.peak_mib.get(side, 0.0), (block_peak - self._baseline) / 2**20)

    def close(self) -> None:
        self._stop.set()
