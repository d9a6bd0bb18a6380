"""Every `prompt-bench` command of the README, as a shell would split it, through the real console entry point
in its `--cfg job` form (print the composed config, run nothing).

In-process (prompt_bench.run.main with sys.argv set) rather than one subprocess per command: the same argparse and
Hydra override parsing as the console script, without paying torch's import ten times. A multirun command's form
is its first cell (`-m` dropped, each swept list cut to its first value): Hydra refuses `-m` with `--cfg`.
"""

from __future__ import annotations

import sys

import pytest
import yaml

from prompt_bench.run import main
from tests.test_docs import ROOT, as_compose_overrides, command_lines

README_COMMANDS = command_lines(ROOT / "README.md")


def test_the_readme_has_its_commands():
    assert len(README_COMMANDS) >= 9
    assert any("-m" in words for _, words in README_COMMANDS)


@pytest.mark.parametrize(("line", "words"), README_COMMANDS, ids=[f"README.md:{line}" for line, _ in README_COMMANDS])
def test_readme_command_prints_its_config(line, words, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PROMPT_BENCH_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["prompt-bench", *as_compose_overrides(words), "--cfg", "job"])
    try:
        main()
    except SystemExit as stop:  # Hydra exits 1 with its error on stderr
        pytest.fail(f"README.md:{line}: prompt-bench {' '.join(words)} exited {stop.code}:\n{capsys.readouterr().err}")
    config = yaml.safe_load(capsys.readouterr().out)
    for word in as_compose_overrides(words):
        key, _, value = word.partition("=")
        if "." in key and not key.startswith(("hydra.", "+", "~")):  # a dotted override lands in the printed config
            node = config
            for part in key.split("."):
                node = node[part]
            assert str(node) == value.strip("'\""), f"README.md:{line}: {key}"
    assert not list(tmp_path.rglob("record.json"))  # nothing ran
