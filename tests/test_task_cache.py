"""Packaged tasks are read once and cached as JSON (prompt_bench/data/task_cache.py): the cached task is
the one the source makes; other sources are not cached."""

from __future__ import annotations

from hydra.utils import instantiate

from prompt_bench.artefacts import ArtefactStore
from prompt_bench.data import task_cache
from prompt_bench.data.task_cache import load_task


def test_bbc_news_is_read_once_and_comes_back_equal(make_config, tmp_path, monkeypatch):
    cfg = make_config("dataset=bbc_news")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    made = []
    plain = task_cache.instantiate
    monkeypatch.setattr(task_cache, "instantiate", lambda node: made.append(node) or plain(node))
    first = load_task(cfg)
    second = load_task(cfg)
    assert len(made) == 1  # the second read is the cache's
    assert first == second == instantiate(cfg.dataset.task)
    assert len(first.test) == 445 and first.label_names == ("business", "entertainment", "politics", "sports", "tech")
    cfg.dataset.task.holdout_seed = 1  # another holdout: another entry
    assert load_task(cfg).test != first.test and len(made) == 2


def test_synthetic_tasks_are_not_cached(make_config, tmp_path):
    cfg = make_config("dataset=synthetic")
    cfg.paths.cache_dir = str(tmp_path / "cache")
    assert load_task(cfg) == instantiate(cfg.dataset.task)
    assert not (ArtefactStore(tmp_path / "cache" / "artefacts").root / task_cache.KIND).exists()
