"""MetaPT / PPT step 4: the prompt-init artefact, made once per content key and shared by every run.

    corpus (any conf/dataset/<name>.yaml, train pool only, minus a tweet domain, capped)
      -> sentence embeddings (the frozen backbone, mean of its pooled output, no prompt)
      -> K clusters (K-means or LDA; clustering.py)            -> clusters.json beside the prompt
      -> auxiliary tasks (tasks.py) -> episodes
      -> meta-training of P (maml.py: Prompt-MAML / Reptile), or PPT's plain multi-task training
      -> prompt.safetensors {"prompt_embeddings": (n, d)}      (+ heads.safetensors, history.json)

The artefact lives under `<paths.cache_dir>/artefacts/meta_init/<key>/` (prompt_bench.artefacts:
made under a file lock in a temporary directory renamed into place). Its key hashes everything
that makes it (`init_spec`): mode, corpus (name, its task config, exclusion, cap, max length),
clustering, task formats, meta settings, the backbone config, the head, n_tokens and the initial
prompt's init and seed. The run's own seed is NOT in it: the five seeds of a sweep share one init.

Meta-training is a Lightning fit (fit.py: one training step = one outer step, manual
optimisation, the same steps as the reference loop `maml.meta_train`). It logs every `log_every`
steps, writes last.ckpt every `checkpoint_every` steps into the artefact's in-progress directory
(`.<key>.partial/checkpoints/`, kept when the maker dies, under the artefact lock), and a later
maker of the same key resumes from it on the same episode sequence. history.json records the
per-step query loss and the meta-training seconds over all attempts.

The meta-parameters are the prompt P and the trainable parameters of the heads (one head per
label space of the auxiliary tasks; a linear head has some, label-similarity and verbalizer heads
none). The frozen backbone enters the loss only through `torch.func.functional_call`, which swaps
in the meta-parameters and leaves every backbone weight as it is (they never get a gradient).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from prompt_bench.artefacts import ArtefactStore
from prompt_bench.backbones import BackboneAdapter
from prompt_bench.data import TWEET_DOMAINS, Task
from prompt_bench.errors import ConfigError
from prompt_bench.heads import auto_head_name
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.metapt.clustering import ClusteringConfig, cluster_corpus
from prompt_bench.methods.metapt.fit import EpisodeStream, MetaFit, fit_meta
from prompt_bench.methods.metapt.maml import PromptMAMLConfig
from prompt_bench.methods.metapt.tasks import (
    AuxiliaryTask,
    Example,
    TaskConfig,
    build_auxiliary_tasks,
    usable_tasks,
)
from prompt_bench.methods.prompt_tuning import PromptTuning

log = logging.getLogger("prompt_bench")

INIT_KIND = "meta_init"
PROMPT_FILE = "prompt.safetensors"
HEADS_FILE = "heads.safetensors"
CLUSTERS_FILE = "clusters.json"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"  # last.ckpt of the meta-training fit, inside the in-progress directory
MODES = ("meta", "multitask")
PRETRAIN_INITS = ("random", "vocab")
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
SPEC_VERSION = 2  # bump when the maker changes what it makes for the same settings

HeadBuilder = Callable[..., nn.Module]


@dataclass
class PretrainConfig:
    """`method.pretrain`: how the init prompt is made. Defaults keep MiniLM on CPU within minutes."""

    mode: str = "meta"  # meta (MetaPT: algorithm maml | reptile) | multitask (PPT's baseline)
    corpus: str = "tweets_all"  # a conf/dataset/<name>.yaml (its task's train pool), or a path to one
    # A tweet domain (airline, cars, apple) dropped from a tweets corpus; "target": the run's dataset's
    # own domain when it is a tweet task (nothing for bbc_news or tweets_all); null: keep everything.
    exclude_domain: str | None = "target"
    max_examples: int | None = 2000  # corpus cap (a seeded random subset); None: the whole train pool
    max_length: int = 64  # tokens per auxiliary-task input
    seed: int = 0  # corpus subset, clustering, task draws, episodes, initial prompt
    init: str = "vocab"  # the meta-learned prompt's starting point: vocab | random (PPT: from scratch)
    clustering: str = "kmeans"  # kmeans (sentence embeddings) | lda (word counts)
    num_clusters: int = 8
    cluster_options: dict[str, Any] = field(default_factory=dict)  # more ClusteringConfig fields
    formats: list[str] | None = None  # task formats (tasks.TASK_FORMATS); None: labels if the corpus has them
    task_options: dict[str, Any] = field(default_factory=dict)  # more TaskConfig fields
    algorithm: str = "maml"
    order: str = "first"  # first on CPU by default (second: Hessian-vector products, ~2x time)
    inner_steps: int = 1
    inner_lr: float = 0.1
    outer_lr: float = 0.3
    outer_optimizer: str = "adafactor"
    tasks_per_step: int = 4
    m: int = 8
    meta_steps: int = 100
    log_every: int = 10
    checkpoint_every: int = 1  # last.ckpt every n meta-steps (a few KB: the prompt, heads, optimizer state)
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"method.pretrain.mode '{self.mode}' is not one of {', '.join(MODES)}.")
        if self.init not in PRETRAIN_INITS:
            raise ConfigError(
                f"method.pretrain.init '{self.init}' is not one of {', '.join(PRETRAIN_INITS)} (the meta-learned "
                "prompt starts from the vocabulary or from N(0, 0.02^2); label and text inits need one task's words)."
            )
        domains = [domain for domain in TWEET_DOMAINS if domain != "all"]
        if self.exclude_domain not in (None, "target", *domains):
            raise ConfigError(
                f"method.pretrain.exclude_domain '{self.exclude_domain}' is not a tweet domain "
                f"({', '.join(domains)}), 'target' or null."
            )
        if self.max_examples is not None and self.max_examples < 2:
            raise ConfigError(f"method.pretrain.max_examples must be >= 2 or null, got {self.max_examples}.")
        self.clustering_config(), self.task_config(), self.maml_config()  # their own checks, at config time

    def clustering_config(self) -> ClusteringConfig:
        return _checked(
            ClusteringConfig,
            method=self.clustering,
            num_clusters=self.num_clusters,
            seed=self.seed,
            **self.cluster_options,
        )

    def task_config(self) -> TaskConfig:
        return _checked(TaskConfig, formats=self.formats, seed=self.seed, **self.task_options)

    def maml_config(self) -> PromptMAMLConfig:
        return _checked(
            PromptMAMLConfig,
            algorithm=self.algorithm,
            order=self.order,
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            outer_lr=self.outer_lr,
            outer_optimizer=self.outer_optimizer,
            tasks_per_step=self.tasks_per_step,
            m=self.m,
            meta_steps=self.meta_steps,
        )


def _checked(config_class, **options):
    """A core config, its ValueError turned into a ConfigError naming method.pretrain."""
    try:
        return config_class(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"method.pretrain: {error}.") from error


def pretrain_config(cfg: DictConfig) -> PretrainConfig:
    """cfg.method.pretrain, with exclude_domain resolved: only a tweets corpus loses a domain, and
    "target" becomes the run's dataset's tweet domain (None when the target is no single domain)."""
    node = cfg.method.get("pretrain")
    if node is None:
        raise ConfigError(f"method '{cfg.method.name}' needs a method.pretrain block (see conf/method/metapt.yaml).")
    config = _checked(PretrainConfig, **OmegaConf.to_container(node, resolve=True))
    if not is_tweets(corpus_task_config(config.corpus)):
        config.exclude_domain = None
    elif config.exclude_domain == "target":
        task = OmegaConf.to_container(cfg.dataset.task, resolve=True)
        domain = task.get("domain", "airline") if is_tweets(task) else None  # airline: tweets()'s default
        config.exclude_domain = None if domain == "all" else domain
    return config


def is_tweets(task: dict[str, Any]) -> bool:
    """Whether a dataset's task node loads the tweet corpus (prompt_bench.data...tweets)."""
    return str(task.get("_target_", "")).rsplit(".", 1)[-1] == "tweets"


# ---- the corpus --------------------------------------------------------------------------------
def corpus_task_config(corpus: str) -> dict[str, Any]:
    """The `task` node of conf/dataset/<corpus>.yaml (or of a YAML file at that path), resolved."""
    path = Path(corpus) if corpus.endswith((".yaml", ".yml")) else CONF_DIR / "dataset" / f"{corpus}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")))
        raise ConfigError(f"method.pretrain.corpus '{corpus}' is not in conf/dataset/ (known: {known}).")
    node = OmegaConf.load(path).get("task")
    if node is None or "_target_" not in node:
        raise ConfigError(f"{path} has no task with a _target_; method.pretrain.corpus needs a dataset config.")
    return OmegaConf.to_container(node, resolve=True)


def load_corpus(config: PretrainConfig) -> tuple[list[str], list[int], tuple[str, ...]]:
    """Texts, labels and label names of the corpus's train pool, minus a tweet domain, capped."""
    task: Task = instantiate(corpus_task_config(config.corpus))
    texts, labels = list(task.train.texts), list(task.train.labels)
    if config.exclude_domain is not None:
        pattern = re.compile(TWEET_DOMAINS[config.exclude_domain], re.IGNORECASE)
        kept = [i for i, text in enumerate(texts) if not pattern.search(text)]
        texts, labels = [texts[i] for i in kept], [labels[i] for i in kept]
    if config.max_examples is not None and len(texts) > config.max_examples:
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(config.seed))
        chosen = sorted(order[: config.max_examples].tolist())
        texts, labels = [texts[i] for i in chosen], [labels[i] for i in chosen]
    if len(texts) < config.num_clusters:
        raise ConfigError(
            f"the corpus '{config.corpus}' keeps {len(texts)} texts, fewer than num_clusters={config.num_clusters}."
        )
    return texts, labels, task.label_names


# ---- the key -------------------------------------------------------------------------------------
def init_spec(cfg: DictConfig, config: PretrainConfig, head_name: str) -> dict[str, Any]:
    """Everything that makes the init artefact (its content key hashes this)."""
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("cache_dir", None)
    module = cfg.method.module
    head = OmegaConf.to_container(cfg.head, resolve=True)
    head["name"] = head_name
    return {
        "version": SPEC_VERSION,
        "mode": config.mode,
        "corpus": {
            "name": config.corpus,
            "task": corpus_task_config(config.corpus),
            "exclude_domain": config.exclude_domain,
            "max_examples": config.max_examples,
            "max_length": config.max_length,
        },
        "clustering": asdict(config.clustering_config()),
        "tasks": asdict(config.task_config()),
        "meta": asdict(config.maml_config()),
        "backbone": backbone,
        "head": head,
        "n_tokens": int(module.n_tokens),
        "prompt_init": {
            "init": config.init,
            "seed": config.seed,
            "vocab_top_k": int(module.get("vocab_top_k", 5000)),
            "vocab_skip_special": bool(module.get("vocab_skip_special", True)),
            "random_init": str(module.get("random_init", "uniform")),
            "init_range": float(module.get("init_range", 0.5)),
            "init_std": float(module.get("init_std", 0.02)),
        },
    }


def meta_init_file(cfg: DictConfig, adapter: BackboneAdapter, method: nn.Module, build_head: HeadBuilder) -> Path:
    """The init prompt.safetensors for this run's settings, made first if no run has made it yet."""
    config = pretrain_config(cfg)
    head_name = cfg.head.name
    if head_name == "auto":
        head_name = auto_head_name(method.required_head, method.preferred_head, adapter.family, adapter.default_head)
    spec = init_spec(cfg, config, head_name)
    store = ArtefactStore(Path(cfg.paths.cache_dir) / "artefacts")

    def make(workspace: Path) -> None:
        make_init(cfg, config, adapter, method, build_head, workspace)

    return store.get_or_make(INIT_KIND, spec, make, resumable=True) / PROMPT_FILE


# ---- making it -----------------------------------------------------------------------------------
class PromptedHeads(nn.Module):
    """The frozen backbone, a prompt P (n, d) and one head per label space.

    forward(batch) -> the scalar loss of head batch["space"] on backbone([P; E(x)]): the cross-entropy
    over its logits, or its own (head=generate: token cross-entropy on the label text + EOS).
    Called through `functional_call` with {"prompt": P', "heads.<space>.<name>": ...} swapped in.
    """

    def __init__(self, adapter: BackboneAdapter, heads: dict[str, nn.Module], prompt: Tensor) -> None:
        super().__init__()
        self.adapter = adapter
        self.heads = nn.ModuleDict(heads)
        self.prompt = nn.Parameter(prompt)

    def forward(self, batch: dict[str, Any]) -> Tensor:
        input_ids = batch["input_ids"]
        prompt = self.prompt.unsqueeze(0).expand(input_ids.shape[0], -1, -1)
        output = self.adapter(input_ids, batch["attention_mask"], prompt=prompt)
        # the head's own loss where it has one (head=generate: the token loss on label text + EOS)
        logits, head_loss = self.heads[batch["space"]].training_scores(output, batch, self.adapter)
        return F.cross_entropy(logits.float(), batch["labels"]) if head_loss is None else head_loss

    def meta_parameters(self) -> dict[str, nn.Parameter]:
        """The prompt and the heads' trainable parameters (never a backbone weight)."""
        return {name: p for name, p in self.named_parameters() if not name.startswith("adapter.") and p.requires_grad}


def render(text: str | tuple[str, str], separator: str) -> str:
    """A pair (text_a, text_b) as one string "text_a <sep> text_b"; a single text as it is."""
    return text if isinstance(text, str) else f"{text[0]} {separator} {text[1]}"


def embed_corpus(adapter: BackboneAdapter, texts: Sequence[str], max_length: int, batch_size: int) -> Tensor:
    """(N, d) pooled outputs of the frozen backbone without a prompt (the sentence encoder for K-means)."""
    device = adapter.input_embeddings.weight.device
    pad_id = adapter.tokenizer.pad_token_id
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            input_ids, mask = pad(adapter.encode_texts(list(texts[start : start + batch_size]), max_length), pad_id)
            output = adapter(input_ids.to(device), mask.to(device))
            rows.append(adapter.pool(output).float().cpu())
    return torch.cat(rows)


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad B token-id lists -> input_ids (B, L) and attention_mask (B, L)."""
    length = max(len(row) for row in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, row in enumerate(sequences):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids, mask


def make_init(
    cfg: DictConfig,
    config: PretrainConfig,
    adapter: BackboneAdapter,
    method: nn.Module,
    build_head: HeadBuilder,
    workspace: Path,
) -> None:
    """Fill `workspace` with prompt.safetensors, clusters.json, history.json (and heads.safetensors)."""
    started = time.perf_counter()
    was_training = adapter.training
    grad_flags = {name: p.requires_grad for name, p in adapter.named_parameters()}
    adapter.requires_grad_(False)  # frozen for the whole of meta-training, whatever the run does later
    adapter.eval()  # no dropout: the inner and outer losses see the same function
    device = (
        torch.device("cuda")
        if torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
        else torch.device("cpu")
    )
    home = adapter.input_embeddings.weight.device
    adapter.to(device)
    try:
        texts, labels, label_names = load_corpus(config)
        clustering_config = config.clustering_config()
        embeddings = embed_corpus(adapter, texts, config.max_length, config.embed_batch_size)
        clustering = cluster_corpus(clustering_config, texts=texts, embeddings=embeddings)
        tasks = build_auxiliary_tasks(
            texts, clustering.ids, config.task_config(), labels=labels, label_names=label_names
        )
        maml = config.maml_config()
        kept = usable_tasks(tasks, maml.m)
        if len(kept) < maml.tasks_per_step:
            raise ConfigError(
                f"only {len(kept)} of {len(tasks)} auxiliary tasks have 2m = {2 * maml.m} examples, fewer than "
                f"tasks_per_step={maml.tasks_per_step}; lower method.pretrain.m or tasks_per_step, or raise "
                "num_clusters or max_examples."
            )
        spaces = {names: f"s{i}" for i, names in enumerate(dict.fromkeys(task.label_names for task in kept))}
        torch.manual_seed(config.seed)  # a linear head's initial weights
        heads = {
            space: build_head(cfg.head, adapter, names, method, cfg.method.name) for names, space in spaces.items()
        }
        model = PromptedHeads(adapter, heads, initial_prompt(adapter, method, config)).to(device)
        params = model.meta_parameters()
        add_mask = next(iter(heads.values())).needs_mask_token(adapter)
        separator = adapter.tokenizer.sep_token or "|"

        def collate(examples: Sequence[Example], task: AuxiliaryTask) -> dict[str, Any]:
            ids = adapter.encode_texts(
                [render(e.text, separator) for e in examples], config.max_length, add_mask=add_mask
            )
            input_ids, mask = pad(ids, adapter.tokenizer.pad_token_id)
            return {
                "input_ids": input_ids.to(device),
                "attention_mask": mask.to(device),
                "labels": torch.tensor([e.label for e in examples], device=device),
                "space": spaces[task.label_names],
            }

        def loss_fn(values: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
            return functional_call(model, dict(values), (batch,))

        # one generator for the whole run, drawn from step 0 (a resumed fit redraws the steps it skips)
        stream = EpisodeStream(kept, maml, collate, seed=config.seed)
        fit = MetaFit(model, adapter, loss_fn, maml, stream, baseline=config.mode == "multitask")
        with attention_for(maml):
            history = fit_meta(
                fit,
                workspace / CHECKPOINT_DIR,
                label=config.mode,
                log_every=config.log_every,
                checkpoint_every=config.checkpoint_every,
                accelerator="gpu" if device.type == "cuda" else "cpu",
            )
        meta_seconds = fit.seconds
        shutil.rmtree(workspace / CHECKPOINT_DIR, ignore_errors=True)  # the artefact is the prompt, not the fit
        save_file({"prompt_embeddings": model.prompt.detach().float().cpu().contiguous()}, str(workspace / PROMPT_FILE))
        head_tensors = {n: p.detach().float().cpu().contiguous() for n, p in params.items() if n != "prompt"}
        if head_tensors:
            save_file(head_tensors, str(workspace / HEADS_FILE))
        summary = {
            **clustering.summary,
            "corpus": config.corpus,
            "exclude_domain": config.exclude_domain,
            "tasks": [
                {
                    "name": t.name,
                    "format": t.format,
                    "size": len(t),
                    "label_names": list(t.label_names),
                    "used": t in kept,
                }
                for t in tasks
            ],
        }
        (workspace / CLUSTERS_FILE).write_text(json.dumps(summary, indent=2, default=str))
        (workspace / HISTORY_FILE).write_text(
            json.dumps(
                {
                    "mode": config.mode,
                    "meta_steps": maml.meta_steps,
                    "meta_train_seconds": meta_seconds,  # every attempt's, when resumed
                    "resumed_from_step": fit.resumed_from,
                    "total_seconds": time.perf_counter() - started,
                    "device": str(device),
                    "steps": history,
                },
                indent=1,
                default=str,
            )
        )
        log.info(
            "%s init made in %.1fs (meta-training %.1fs)", config.mode, time.perf_counter() - started, meta_seconds
        )
    finally:
        adapter.to(home)
        adapter.train(was_training)
        for name, p in adapter.named_parameters():
            p.requires_grad_(grad_flags[name])


def attention_for(maml: PromptMAMLConfig) -> contextlib.AbstractContextManager:
    """Second-order MAML differentiates the attention backward again: only SDPA's math kernel has a
    double backward (the fused CPU/GPU kernels raise), so it is forced there; first order keeps the fast ones."""
    if maml.algorithm == "maml" and maml.order == "second" and maml.meta_steps:
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def initial_prompt(adapter: BackboneAdapter, method: nn.Module, config: PretrainConfig) -> Tensor:
    """The prompt meta-training starts from: PromptTuning's vocab or random init at the pretrain seed."""
    starter = PromptTuning(
        n_tokens=method.n_tokens,
        init=config.init,
        seed=config.seed,
        vocab_top_k=method.vocab_top_k,
        vocab_skip_special=method.vocab_skip_special,
        random_init=method.random_init,
        init_range=method.init_range,
        init_std=method.init_std,
    )
    starter.prepare(MethodContext(adapter=adapter, label_names=(), cache_dir=""))
    return starter.prompt_embeddings.detach().float().clone()
