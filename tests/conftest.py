"""Shared fixtures: compose the real config tree into a tmp run dir, shrunk for tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from tests.helpers.records import sweep_root  # noqa: F401 - a fixture shared by the report and sweep tests

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session (tokenised datasets, unzipped MPNet)."""
    return tmp_path_factory.mktemp("cache")


def compose_config(overrides: list[str], run_dir: Path, cache_dir: Path) -> DictConfig:
    """conf/config.yaml with `overrides`, writing to run_dir, without Hydra's runtime."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.cache_dir = str(cache_dir)
    return cfg


@pytest.fixture
def make_config(tmp_path: Path, cache_dir: Path):
    """make_config(*overrides) -> a composed config writing into this test's tmp dir."""

    def _make(*overrides: str, run_dir: Path | None = None) -> DictConfig:
        return compose_config(list(overrides), run_dir or tmp_path / "run", cache_dir)

    return _make
