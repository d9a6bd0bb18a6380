"""MetaPT and PPT in the framework: the init artefact, its key, and prompt tuning from it.

Tiny random models of every text family on the synthetic task, the synthetic train pool as the
pre-training corpus, a few meta-steps: the init is made once and shared, the downstream prompt
starts as exactly the artefact's prompt, the backbone is unchanged by meta-training, and the
downstream run trains only the prompt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file

from prompt_bench.build import build_experiment, build_head
from prompt_bench.data import TWEET_DOMAINS
from prompt_bench.errors import ConfigError
from prompt_bench.methods.metapt import fit as fit_module
from prompt_bench.methods.metapt import pretrain
from prompt_bench.methods.metapt.pretrain import (
    CLUSTERS_FILE,
    HISTORY_FILE,
    init_spec,
    load_corpus,
    pretrain_config,
)
from prompt_bench.run import run_experiment
from tests.helpers.training import fit

ROOT = Path(__file__).resolve().parents[1]
# A few meta-steps on the synthetic pool (256 texts): 3 clusters, 2 tasks a step, 4 + 4 examples each.
TINY_PRETRAIN = [
    "dataset=synthetic",
    "logger=none",
    "trainer=debug",
    "method.module.n_tokens=4",
    "method.pretrain.corpus=synthetic",
    "method.pretrain.num_clusters=3",
    "method.pretrain.m=4",
    "method.pretrain.tasks_per_step=2",
    "method.pretrain.meta_steps=3",
    "method.pretrain.log_every=0",
]
# One family each, and between them every option that changes the maker's path.
FAMILY_CELLS = {
    "tiny_bert": ("metapt", []),
    "tiny_roberta": ("metapt", ["method.pretrain.algorithm=reptile", "method.pretrain.clustering=lda"]),
    "tiny_t5": ("metapt", ["method.pretrain.order=second", "method.pretrain.inner_steps=2"]),
    "tiny_gpt2": ("ppt", ["head=linear"]),
}


def artefact_dirs(cache_dir: Path) -> list[Path]:
    root = cache_dir / "artefacts" / "meta_init"
    return (
        sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
        if root.exists()
        else []
    )


@pytest.mark.parametrize("backbone", sorted(FAMILY_CELLS))
def test_end_to_end_per_family(make_config, tmp_path, backbone):
    method, extra = FAMILY_CELLS[backbone]
    cfg = make_config(
        f"method={method}",
        f"backbone={backbone}",
        *TINY_PRETRAIN,
        *extra,
        "method/optimizer=adamw",
        "method.optimizer.lr=0.05",
    )
    untouched = instantiate(cfg.backbone)  # the same preset and seed: the weights before any meta-training

    experiment = build_experiment(cfg)

    init_dir = Path(experiment.method.init_artefact)
    assert {"prompt.safetensors", "spec.json", CLUSTERS_FILE, HISTORY_FILE} <= {p.name for p in init_dir.iterdir()}
    clusters = json.loads((init_dir / CLUSTERS_FILE).read_text())
    assert sum(clusters["sizes"]) == clusters["num_examples"] == 256 and len(clusters["sizes"]) == 3
    assert clusters["examples"] and "silhouette" in clusters and clusters["tasks"]
    history = json.loads((init_dir / HISTORY_FILE).read_text())
    assert history["mode"] == ("multitask" if method == "ppt" else "meta") and len(history["steps"]) == 3
    assert len({tuple(step["tasks"]) for step in history["steps"]}) > 1  # fresh episodes every step
    # the downstream prompt starts as exactly the artefact's prompt
    init_prompt = load_file(str(init_dir / "prompt.safetensors"))["prompt_embeddings"]
    assert torch.equal(experiment.method.prompt_embeddings.detach().cpu(), init_prompt)
    # meta-training left the backbone as it was, and frozen
    module = experiment.module
    for name, value in untouched.state_dict().items():
        assert torch.equal(value, module.backbone.state_dict()[name]), name
    assert not any(p.requires_grad for p in module.backbone.parameters())
    if backbone == "tiny_gpt2":  # a linear head is meta-learned with the prompt (saved beside it)
        assert (init_dir / pretrain.HEADS_FILE).exists()

    backbone_before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    fit(experiment, steps=3)
    assert not torch.equal(module.method.prompt_embeddings.detach().cpu(), init_prompt), "prompt did not train"
    assert all(torch.equal(v, module.backbone.state_dict()[k]) for k, v in backbone_before.items())


def test_one_artefact_for_two_runs_in_sequence(make_config, tmp_path, cache_dir, monkeypatch):
    made = []
    real_make = pretrain.make_init
    monkeypatch.setattr(pretrain, "make_init", lambda *args: made.append(1) or real_make(*args))
    overrides = ["method=metapt", "backbone=tiny_bert", *TINY_PRETRAIN, "method.pretrain.seed=7"]
    records = [
        run_experiment(make_config(*overrides, f"seed={seed}", run_dir=tmp_path / f"run_{seed}")) for seed in (13, 21)
    ]
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error") for r in records]
    inits = {r["method_info"]["init_artefact"] for r in records}
    assert len(inits) == 1 and len(made) == 1  # the second run (another seed) reused the first's init
    assert records[0]["run_key"] != records[1]["run_key"]


MAKER = """
import logging
import sys
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {tests!r})
from pathlib import Path
from hydra.utils import instantiate
from conftest import compose_config
from prompt_bench.build import build_head
from prompt_bench.methods.metapt.pretrain import meta_init_file
cfg = compose_config({overrides!r}, Path({run_dir!r}), Path({cache!r}))
print(meta_init_file(cfg, instantiate(cfg.backbone), instantiate(cfg.method.module), build_head))
"""


def test_two_processes_make_one_artefact(tmp_path):
    cache = tmp_path / "cache"
    overrides = ["method=metapt", "backbone=tiny_bert", *TINY_PRETRAIN, "method.pretrain.seed=11"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                MAKER.format(
                    tests=str(ROOT / "tests"), overrides=overrides, run_dir=str(tmp_path / f"run{i}"), cache=str(cache)
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outputs]
    paths = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert len(paths) == 1 and len(artefact_dirs(cache)) == 1
    assert sum("making meta_init artefact" in err for _, err in outputs) == 1


def test_key_names_what_makes_the_init_and_not_the_run_seed(make_config):
    def spec(*overrides):
        cfg = make_config("method=metapt", "backbone=tiny_bert", *TINY_PRETRAIN, *overrides)
        return init_spec(cfg, pretrain_config(cfg), "verbalizer")

    base = spec()
    assert spec("seed=21") == base  # the downstream seeds share one init
    assert spec("dataset.split_seed=5") == base
    for change in (
        "method.pretrain.corpus=bbc_news",
        "method.pretrain.num_clusters=4",
        "method.pretrain.order=second",
        "method.pretrain.formats=[next_sentence]",
        "method.pretrain.meta_steps=4",
        "method.pretrain.clustering=lda",
        "backbone=tiny_t5",
        "method.module.n_tokens=5",
        "method.pretrain.mode=multitask",
        "method.pretrain.algorithm=reptile",
    ):
        assert spec(change) != base, change


def test_exclude_domain_target_drops_the_target_tweets(make_config):
    cfg = make_config(
        "method=metapt", "backbone=tiny_bert", "dataset=tweets_airline", "method.pretrain.max_examples=null"
    )
    config = pretrain_config(cfg)
    assert config.corpus == "tweets_all" and config.exclude_domain == "airline"
    texts, _, names = load_corpus(config)
    assert names == ("negative", "neutral", "positive")
    airline = re.compile(TWEET_DOMAINS["airline"], re.IGNORECASE)
    assert texts and not any(airline.search(text) for text in texts)
    assert pretrain_config(make_config("method=metapt", "dataset=bbc_news")).exclude_domain is None
    bbc_corpus = make_config("method=metapt", "dataset=tweets_cars", "method.pretrain.corpus=bbc_news")
    assert pretrain_config(bbc_corpus).exclude_domain is None  # only a tweets corpus loses a domain


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("method.pretrain.mode=maml", "mode"),
        ("method.pretrain.order=third", "order"),
        ("method.pretrain.corpus=nope", "conf/dataset"),
        ("method.pretrain.num_clusters=1", "num_clusters"),
        ("method.pretrain.exclude_domain=boats", "tweet domain"),
    ],
)
def test_bad_pretrain_settings_are_sentences(make_config, override, words):
    with pytest.raises(ConfigError, match=words):
        pretrain_config(make_config("method=metapt", override))


def test_ppt_shares_metapt_settings_but_not_its_artefact(make_config):
    meta, ppt = (make_config(f"method={m}", "backbone=tiny_bert", *TINY_PRETRAIN) for m in ("metapt", "ppt"))
    assert ppt.method.pretrain.mode == "multitask" and meta.method.pretrain.mode == "meta"
    meta_spec, ppt_spec = (init_spec(c, pretrain_config(c), "verbalizer") for c in (meta, ppt))
    assert {k for k in meta_spec if meta_spec[k] != ppt_spec[k]} == {"mode"}


def test_a_killed_maker_resumes_from_its_checkpoint_under_the_lock(make_config, tmp_path, monkeypatch):
    overrides = ["method=metapt", "backbone=tiny_bert", *TINY_PRETRAIN, "method.pretrain.meta_steps=5"]

    def make(cache: Path) -> Path:
        cfg = make_config(*overrides)
        cfg.paths.cache_dir = str(cache)
        return pretrain.meta_init_file(cfg, instantiate(cfg.backbone), instantiate(cfg.method.module), build_head)

    whole = load_file(str(make(tmp_path / "whole")))["prompt_embeddings"]
    original = fit_module.MetaStepLine.on_train_batch_end

    def killer(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 3:
            raise RuntimeError("killed after 3 meta-steps")
        original(self, trainer, module, outputs, batch, batch_idx)

    monkeypatch.setattr(fit_module.MetaStepLine, "on_train_batch_end", killer)
    with pytest.raises(RuntimeError, match="killed"):
        make(tmp_path / "resumed")
    root = tmp_path / "resumed" / "artefacts" / "meta_init"
    assert artefact_dirs(tmp_path / "resumed") == []  # no half-made artefact
    (partial,) = root.glob(".*.partial")
    assert (partial / pretrain.CHECKPOINT_DIR / "last.ckpt").exists()
    monkeypatch.setattr(fit_module.MetaStepLine, "on_train_batch_end", original)

    made = make(tmp_path / "resumed")
    torch.testing.assert_close(load_file(str(made))["prompt_embeddings"], whole, rtol=1e-6, atol=1e-7)
    history = json.loads((made.parent / HISTORY_FILE).read_text())
    assert history["resumed_from_step"] == 2 and [s["step"] for s in history["steps"]] == list(range(5))
    assert not partial.exists() and not (made.parent / pretrain.CHECKPOINT_DIR).exists()
