"""Content-addressed artefacts that runs share: source prompts, meta-learned inits, teacher logits.

An artefact is requested by a spec (a JSON-able dict naming everything that makes it). Present
-> its directory is returned; absent -> it is made once, under a file lock, into a temporary
directory that is renamed into place, so twenty sweep jobs needing one source prompt train it
once, in whichever job gets there first, on a laptop or on SLURM, and a killed maker never
leaves a half-made artefact behind. A resumable artefact (a long fit) keeps its in-progress
directory when the maker dies, so the next maker continues from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

log = logging.getLogger("prompt_bench")

SPEC_FILE = "spec.json"


def artefact_key(spec: dict[str, Any]) -> str:
    """sha256 (first 16 hex) of the spec as canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ArtefactStore:
    """Artefacts under `<root>/<kind>/<key>/`, each with the spec that made it in spec.json."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def directory(self, kind: str, spec: dict[str, Any]) -> Path:
        return self.root / kind / artefact_key(spec)

    def exists(self, kind: str, spec: dict[str, Any]) -> bool:
        return (self.directory(kind, spec) / SPEC_FILE).exists()

    def get_or_make(
        self, kind: str, spec: dict[str, Any], make: Callable[[Path], None], resumable: bool = False
    ) -> Path:
        """The artefact's directory; `make(tmp_dir)` fills a fresh one when it does not exist yet.

        resumable: the in-progress directory is `.<key>.partial` and is kept when `make` fails or
        the process dies, so the next maker (under the same lock) finds what it left (a checkpoint).
        """
        final = self.directory(kind, spec)
        if (final / SPEC_FILE).exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if (final / SPEC_FILE).exists():  # made by another job while this one waited
                return final
            log.info("making %s artefact %s", kind, final.name)
            if resumable:
                workspace = final.parent / f".{final.name}.partial"
                workspace.mkdir(exist_ok=True)
            else:
                workspace = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
            try:
                make(workspace)
                (workspace / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
                if final.exists():  # a leftover without spec.json: never completed
                    shutil.rmtree(final)
                workspace.rename(final)
            finally:
                if workspace.exists() and not resumable:
                    shutil.rmtree(workspace, ignore_errors=True)
        return final
