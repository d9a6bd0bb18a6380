"""A run's own peak resident memory (efficiency.peak_rss_mb, peak_rss_scope: run): the process's high-water mark
is reset at the run's start, so a later run of a local sweep does not inherit an earlier run's peak."""

from __future__ import annotations

import sys

import pytest

from prompt_bench.callbacks import peak_rss_mb, reset_run_peak_rss, run_peak_rss_mb


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_the_run_window_forgets_an_earlier_peak_that_the_process_peak_keeps():
    assert reset_run_peak_rss()
    ballast = bytearray(300 * 2**20)  # 300 MiB touched (zero-filled)
    high = run_peak_rss_mb()
    del ballast
    assert reset_run_peak_rss()
    after = run_peak_rss_mb()
    assert high > 300 and high - after > 250  # the window restarted below the earlier peak
    assert peak_rss_mb() < high  # and so did ru_maxrss: the record's process-wide fallback
