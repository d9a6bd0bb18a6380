"""Data layer: tasks from packaged corpora, user files or the hub; few-shot splits; the datamodule base
(token ids cached on disk) and the input site's DataModule (the class site's: data/dual_datamodule.py)."""

from prompt_bench.data.datamodule import SplitDataModule, TextDataModule
from prompt_bench.data.sources import TWEET_DOMAINS, bbc_news, csv_file, hf_dataset, jsonl_file, synthetic, tweets
from prompt_bench.data.splits import FewShotSplit, make_split
from prompt_bench.data.tasks import Examples, Task

__all__ = [
    "TWEET_DOMAINS",
    "Examples",
    "FewShotSplit",
    "SplitDataModule",
    "Task",
    "TextDataModule",
    "bbc_news",
    "csv_file",
    "hf_dataset",
    "jsonl_file",
    "make_split",
    "synthetic",
    "tweets",
]
