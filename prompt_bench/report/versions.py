"""Which sweeps mixed package versions: results of runs on different torch/transformers are not
comparable (a release can change kernels, defaults or, as transformers 5.24 did, the cache API)."""

from __future__ import annotations

import pandas as pd

COMPARED_PACKAGES = ("torch", "transformers")


def version_mixes(frame: pd.DataFrame) -> list[str]:
    """One sentence per (sweep dir, package) whose runs used more than one version of the package.

    frame: load_records' rows (`sweep_dir`, `versions.<package>`). Records without a version are
    left out of the count.
    """
    sentences = []
    for package in COMPARED_PACKAGES:
        column = f"versions.{package}"
        if column not in frame:
            continue
        for sweep_dir, versions in frame.groupby("sweep_dir")[column]:
            counts = versions.dropna().value_counts().sort_index()
            if len(counts) > 1:
                seen = ", ".join(f"{version} ({count} runs)" for version, count in counts.items())
                sentences.append(
                    f"{sweep_dir}: runs used different {package} versions, {seen}; their results are not "
                    f"comparable, so rerun the odd ones out on one version (see README, Tested versions)."
                )
    return sentences
