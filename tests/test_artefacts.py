"""The artefact store: made once under a lock, atomically, keyed by content."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from prompt_bench.artefacts import ArtefactStore, artefact_key


def slow_make(directory: Path) -> None:
    time.sleep(0.5)
    (directory / "made_by").write_text(str(multiprocessing.current_process().pid))
    with open(Path(directory).parent / "make_count", "a") as counter:
        counter.write("x")


def request(root: str) -> str:
    return str(ArtefactStore(root).get_or_make("source_prompt", {"task": "airline", "seed": 13}, slow_make))


def test_key_is_content_addressed():
    assert artefact_key({"a": 1, "b": 2}) == artefact_key({"b": 2, "a": 1})
    assert artefact_key({"a": 1}) != artefact_key({"a": 2})


def test_concurrent_requests_make_it_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        paths = pool.map(request, [str(tmp_path)] * 3)
    assert len(set(paths)) == 1
    assert (tmp_path / "source_prompt" / "make_count").read_text() == "x"
    assert (Path(paths[0]) / "spec.json").exists()


def test_failed_make_leaves_nothing_behind(tmp_path):
    store = ArtefactStore(tmp_path)

    def broken(directory: Path) -> None:
        (directory / "half").write_text("...")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        store.get_or_make("teacher", {"k": 1}, broken)
    assert not store.exists("teacher", {"k": 1})
    assert [p.name for p in (tmp_path / "teacher").iterdir() if not p.name.endswith(".lock")] == []
    made = store.get_or_make("teacher", {"k": 1}, lambda d: (d / "ok").write_text("1"))
    assert (made / "ok").exists()


def test_a_resumable_make_finds_what_its_failed_predecessor_left(tmp_path):
    store = ArtefactStore(tmp_path)
    seen = []

    def broken(directory: Path) -> None:
        (directory / "checkpoint").write_text("step 3")
        raise RuntimeError("killed mid-way")

    def resume(directory: Path) -> None:
        seen.append((directory / "checkpoint").read_text())
        (directory / "checkpoint").unlink()
        (directory / "ok").write_text("1")

    with pytest.raises(RuntimeError):
        store.get_or_make("meta_init", {"k": 1}, broken, resumable=True)
    assert not store.exists("meta_init", {"k": 1})
    partial = tmp_path / "meta_init" / f".{artefact_key({'k': 1})}.partial"
    assert (partial / "checkpoint").read_text() == "step 3"
    made = store.get_or_make("meta_init", {"k": 1}, resume, resumable=True)
    assert seen == ["step 3"] and sorted(p.name for p in made.iterdir()) == ["ok", "spec.json"]
    assert not partial.exists()
