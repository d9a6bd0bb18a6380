"""The suite's sections: name -> the module that runs it, imported only when the section runs.

A section module has `run(args: argparse.Namespace, console: rich.console.Console) -> dict`: it
measures, prints its tables and returns its numbers (JSON-able) for `--json`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Section:
    name: str
    module: str  # dotted path of the module with `run(args, console)`
    summary: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


SECTIONS: dict[str, Section] = {
    section.name: section
    for section in (
        Section(
            "throughput",
            "prompt_bench.bench.throughput",
            "train-step samples/s vs the floor, a hand-written loop and PEFT; memory; MFU",
        ),
        Section("startup", "prompt_bench.bench.startup", "import -> first optimizer step, split into phases"),
        Section("packed", "prompt_bench.bench.packed", "K packed runs vs K sequential runs (prompt_bench.packing)"),
    )
}


def select(names: str) -> list[Section]:
    """`all` or a comma-separated list of section names, in registry order."""
    if names == "all":
        return list(SECTIONS.values())
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)} (or all).")
    return [section for name, section in SECTIONS.items() if name in chosen]
