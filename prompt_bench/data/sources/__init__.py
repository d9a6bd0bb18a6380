"""Data sources: one function per source, each returning a `Task` (Hydra calls them via `_target_`).

packaged.py: corpora inside installed packages (BBC News, tweets); files.py: CSV and JSONL files;
hub.py: Hugging Face hub datasets; synthetic_text.py: the keyword task for tiny models; images.py: image
tasks for dual encoders (Fashion-MNIST, synthetic images, hub image sets).
"""

from prompt_bench.data.sources.files import csv_file, jsonl_file
from prompt_bench.data.sources.hub import hf_dataset
from prompt_bench.data.sources.packaged import TWEET_DOMAINS, bbc_news, tweets
from prompt_bench.data.sources.synthetic_text import synthetic

__all__ = ["TWEET_DOMAINS", "bbc_news", "csv_file", "hf_dataset", "jsonl_file", "synthetic", "tweets"]
