"""Write conf/transfer/<source>_to_<target>.yaml for every transfer pair (the folder is generated: edit PAIRS here).

A pair file composes the source task from conf/dataset/ into `transfer.source` and makes the target the run's
`dataset`, so `prompt-bench transfer=tweets_airline_to_cars` works as any config-group option does.

    python scripts/make_transfer_pairs.py            # write the files, remove pair files no longer listed
    python scripts/make_transfer_pairs.py --check    # exit 1 if conf/transfer/ differs from what this writes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TRANSFER_DIR = Path(__file__).resolve().parents[1] / "conf" / "transfer"
TWEET_DOMAINS = ("airline", "cars", "apple")  # sources; targets add `all`
HUB_SOURCES = ("mnli", "qnli", "sst2")  # PANDA's setup (GLUE/SuperGLUE from the Hugging Face hub)
HUB_TARGETS = ("cb", "cola", "copa", "mrpc", "rte", "wic", "wsc")

TEMPLATE = """\
# @package _global_
# {summary}
# Written by scripts/make_transfer_pairs.py: change the pair list there and rerun it.
defaults:
  - /dataset@transfer.source: {source}
  - override /dataset: {target}

transfer:
  name: {name}
"""


def pairs() -> list[dict[str, str]]:
    """Every pair: its name (the file stem), source and target dataset, and a one-line summary."""
    listed = []
    for source in TWEET_DOMAINS:
        for target in (*TWEET_DOMAINS, "all"):
            if target != source:
                listed.append(
                    {
                        "name": f"tweets_{source}_to_{target}",
                        "source": f"tweets_{source}",
                        "target": f"tweets_{target}",
                        "summary": f"Tweets ({source}) -> tweets ({target}), same 3 sentiment labels: "
                        "the source prompt is trained once, then transferred.",
                    }
                )
    for domain in ("airline", "apple", "cars"):
        listed.append(
            {
                "name": f"bbc_news_to_tweets_{domain}",
                "source": "bbc_news",
                "target": f"tweets_{domain}",
                "summary": f"BBC News topics -> tweets ({domain}): different label spaces, "
                "so the prompt transfers and the head does not.",
            }
        )
    listed.append(
        {
            "name": "tweets_all_to_bbc_news",
            "source": "tweets_all",
            "target": "bbc_news",
            "summary": "Tweets (all domains) -> BBC News topics: the headline sweep's default source for BBC News "
            "(prompt transfers, head does not).",
        }
    )
    for source in HUB_SOURCES:
        for target in HUB_TARGETS:
            listed.append(
                {
                    "name": f"{source}_to_{target}",
                    "source": source,
                    "target": target,
                    "summary": f"Hub pair as in PANDA's setup: {source.upper()} -> {target.upper()} "
                    "(needs the Hugging Face hub once).",
                }
            )
    return listed


def pair_files() -> dict[str, str]:
    """File name -> text, for every pair."""
    return {f"{pair['name']}.yaml": TEMPLATE.format(**pair) for pair in pairs()}


def differences(directory: Path = TRANSFER_DIR) -> list[str]:
    """What in `directory` is not what pair_files() writes: missing, changed or stale files."""
    wanted = pair_files()
    present = {path.name: path.read_text() for path in directory.glob("*.yaml")}
    return sorted(
        [f"missing {name}" for name in wanted.keys() - present.keys()]
        + [f"stale {name} (not a listed pair)" for name in present.keys() - wanted.keys()]
        + [f"changed {name}" for name in wanted.keys() & present.keys() if wanted[name] != present[name]]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when conf/transfer/ is out of date")
    args = parser.parse_args(argv)
    found = differences()
    if args.check:
        print("\n".join(found) if found else f"conf/transfer/ is up to date ({len(pair_files())} pairs)")
        return 1 if found else 0
    for path in TRANSFER_DIR.glob("*.yaml"):
        if path.name not in pair_files():
            path.unlink()
    for name, text in pair_files().items():
        (TRANSFER_DIR / name).write_text(text)
    print(f"wrote {len(pair_files())} pairs to {TRANSFER_DIR}" + (f" ({len(found)} changes)" if found else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
