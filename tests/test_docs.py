"""The documentation: every relative link in README.md, docs/ and results/ reaches an existing file (and heading),
and every `prompt-bench` command line in their code blocks composes, as `prompt-bench ... --cfg job` would."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_DIR

ROOT = CONF_DIR.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "results").glob("*.md")])
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code (a link or heading in code is not one)."""
    return re.sub(r"`[^`\n]*`", "code", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_docs_exist_and_the_readme_is_short():
    names = {path.relative_to(ROOT).as_posix() for path in DOCS}
    for name in (
        "docs/configuration.md",
        "docs/methods.md",
        "docs/protocols.md",
        "docs/transfer.md",
        "docs/slurm.md",
        "docs/reports.md",
        "docs/adding.md",
        "results/README.md",
    ):
        assert name in names
    assert len((ROOT / "README.md").read_text().splitlines()) <= 180


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_reaches_a_file_and_heading(doc):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name} (has {sorted(anchors(linked))})")
    assert not broken, f"{doc.name}:\n" + "\n".join(broken)


def is_placeholder(words: list[str]) -> bool:
    """A command shape rather than a command: `method=<m>`, `[key=value ...]`, `prompt-bench ... --cfg job`."""
    return any(re.match(r"^[\w/]+=<", word) or word.startswith("[") or word == "..." for word in words)


def command_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, arguments) for every `prompt-bench ...` line in the file's code blocks (continuations joined)
    and every inline `prompt-bench ...` span."""
    text = path.read_text()
    commands = []
    for block in FENCE.finditer(text):
        first_line = text[: block.start()].count("\n") + 1
        joined, start = "", None
        for number, line in enumerate(block.group(0).splitlines()[1:-1], start=first_line + 1):
            start = start if joined else number
            joined += line.rstrip().rstrip("\\") + " "
            if line.rstrip().endswith("\\"):
                continue
            words = shlex.split(joined, comments=True)
            while words and re.match(r"^[A-Z_]+=", words[0]):  # PROMPT_BENCH_CACHE=/x prompt-bench
                words = words[1:]
            if words and words[0] == "prompt-bench" and not is_placeholder(words):
                commands.append((start, words[1:]))
            joined = ""
    prose_only = FENCE.sub(lambda block: "\n" * block.group(0).count("\n"), text)  # same line numbers
    for span in re.finditer(r"`prompt-bench ([^`]+)`", prose_only):
        words = shlex.split(span.group(1))
        if not is_placeholder(words):
            commands.append((prose_only[: span.start()].count("\n") + 1, words))
    return commands


def as_compose_overrides(arguments: list[str]) -> list[str]:
    """The overrides a command line composes: flags dropped, each swept value list cut to its first value."""
    overrides = []
    for word in arguments:
        if word in ("-m", "--multirun", "--cfg", "job"):
            continue
        word = re.sub(r"<(\w+)>", r"\1", word)  # a placeholder in a value: outputs/runs/<run>/prompt.safetensors
        key, _, value = word.partition("=")
        if "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",")[0]
        overrides.append(f"{key}={value}")
    return overrides


def test_every_documented_prompt_bench_command_composes():
    commands = [(doc, line, command) for doc in DOCS for line, command in command_lines(doc)]
    assert len(commands) > 40  # the README's, docs/ and results/
    failures = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for doc, line, command in commands:
            try:
                compose(config_name="config", overrides=as_compose_overrides(command), return_hydra_config=True)
            except Exception as error:  # noqa: BLE001 - every failure is listed below
                where = f"{doc.relative_to(ROOT)}:{line}: prompt-bench {shlex.join(command)}"
                failures.append(f"{where}\n    {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)


def test_command_parsing_joins_continuations_and_cuts_sweeps(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n```bash\nPROMPT_BENCH_CACHE=/c prompt-bench -m method=a,b \\\n    seed=1,2  # note\n"
        "prompt-bench method=<m>\nprompt-bench-report outputs\n```\nthen `prompt-bench -m\nseed=3,4`.\n"
    )
    assert command_lines(doc) == [(3, ["-m", "method=a,b", "seed=1,2"]), (8, ["-m", "seed=3,4"])]
    arguments = shlex.split("""-m method=a,b head.label_words=[x,y] 'transfer=p,q' 'head.t="a, {b}"' --cfg job""")
    assert as_compose_overrides(arguments) == ["method=a", "head.label_words=[x,y]", "transfer=p", 'head.t="a, {b}"']
