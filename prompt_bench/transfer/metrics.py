"""How well a source task's prompt should transfer to a target task, from the trained prompts.

Prompt similarity (SPoT, Vu et al. 2022; METHODS.md §0.2), for prompts P_s (n, w) and P_t (m, w):

    E_avg(s, t) = cos(mean_i P_s[i], mean_j P_t[j])
    C_tok(s, t) = 1/(n·m) Σ_i Σ_j cos(P_s[i], P_t[j])      (every token pair, so C_tok(t, t) < 1)

Model stimulation (PANDA, Zhong et al.; METHODS.md §2.4): the frozen backbone reads the target's
inputs X_t with each task's prompt, and the FFN activations of every layer at the first input token
are averaged over X_t and concatenated into one vector per prompt:

    e(P) = concat_l mean_{x in X_t} a_l(P, x)[first input token]        (N_layers · d_ff)
    MSS(s, t) = cos(e(P_s), e(P_t))
    ON(s, t)  = cos(1[e(P_s) > 0], 1[e(P_t) > 0])    (activated-neuron overlap, Su et al. 2022)

E_avg and C_tok are symmetric; MSS and ON read the target's inputs, so (s, t) and (t, s) differ.
All four equal 1 for a prompt with itself, except C_tok. Deep prompts (P-tuning v2) compare their
prefix tables row by row in place of prompt tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor
from torch.nn import functional as F

from prompt_bench.backbones import BackboneAdapter
from prompt_bench.data import make_split
from prompt_bench.data.datamodule import PadCollator
from prompt_bench.data.inputs import encode_examples, pair_inputs
from prompt_bench.heads import Head
from prompt_bench.methods.base import MethodContext
from prompt_bench.methods.prompt_tuning import PromptTuning
from prompt_bench.transfer.pairs import prompt_tuning_options

METRICS = ("e_avg", "token_avg", "mss", "neuron_overlap")
PROMPT_TUNING_TARGET = "prompt_bench.methods.prompt_tuning.PromptTuning"
HeadBuilder = Callable[..., Head]
"""The builder's head factory, `prompt_bench.build.build_head(head_cfg, adapter, label_names, method,
method_name)`, handed in so this module does not import the builder (which imports it)."""


def load_prompt(module_cfg: dict | DictConfig, prompt_file, adapter: BackboneAdapter) -> PromptTuning:
    """A saved prompt.safetensors as a PromptTuning module on `adapter`, with the prompt settings
    (depth, n_tokens, ...) of the run that saved it (`module_cfg`, its method.module)."""
    if isinstance(module_cfg, DictConfig):  # a node of a larger config: resolve its ${seed}-style links first
        module_cfg = OmegaConf.to_container(module_cfg, resolve=True)
    module = prompt_tuning_options(OmegaConf.create(module_cfg), PROMPT_TUNING_TARGET)
    with open_dict(module):
        module.init, module.init_file = "file", str(prompt_file)
    method = instantiate(module)
    method.prepare(MethodContext(adapter=adapter, label_names=(), cache_dir=""))
    return method


def input_batches(
    cfg: DictConfig, adapter: BackboneAdapter, max_inputs: int, build_head: HeadBuilder, batch_size: int = 32
) -> list[dict]:
    """The first max_inputs training inputs of cfg's dataset, encoded as its runs encode them
    (with a mask token when cfg's head reads one, as text pairs by dataset.pair_encoding), in padded
    batches of batch_size."""
    dataset = cfg.dataset
    split = make_split(instantiate(dataset.task), dataset.k_shot, dataset.split_seed, dataset.get("max_test_examples"))
    head = build_head(cfg.head, adapter, split.label_names, PromptTuning(), "prompt_tuning")
    add_mask = head.needs_mask_token(adapter)
    pairs = pair_inputs(
        adapter,
        dataset.get("pair_encoding", "pair"),
        dataset.max_length,
        add_mask,
        split.train,
        dataset.get("template"),
    )
    encode = partial(adapter.encode_texts, max_length=dataset.max_length, add_mask=add_mask)
    first_inputs = split.train.subset(range(min(max_inputs, len(split.train))))
    items = [(ids, 0) for ids in encode_examples(first_inputs, encode, pairs)]
    collate = PadCollator(adapter.tokenizer.pad_token_id, type_sep_id=pairs.type_sep_id if pairs else None)
    return [collate(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]


def prompt_vectors(method: PromptTuning) -> Tensor:
    """(n, w) fp32: the prompt tokens (depth=input, w = d) or the prefix table rows (depth=deep)."""
    if method.depth == "deep":
        return method.prefix_encoder.table().detach().float()
    return method.prompt_embeddings.detach().float()


def eavg_similarity(source: Tensor, target: Tensor) -> float:
    """SPoT's E_avg: cosine of the mean prompt vectors of (n, w) and (m, w) prompts."""
    return float(F.cosine_similarity(source.mean(0), target.mean(0), dim=0))


def token_average_similarity(source: Tensor, target: Tensor) -> float:
    """SPoT's per-token similarity: the mean cosine over all n·m token pairs."""
    return float((F.normalize(source, dim=-1) @ F.normalize(target, dim=-1).T).mean())


@contextmanager
def recorded_ffn_activations(adapter: BackboneAdapter, position: int) -> Iterator[list[list[Tensor]]]:
    """While active, each forward appends every layer's (B, d_ff) FFN activations at `position`.

    Yields per-layer lists; the hooks read the input of each layer's FFN output projection.
    """
    projections = adapter.ffn_down_projections()
    per_layer: list[list[Tensor]] = [[] for _ in projections]

    def hook_for(layer: int):
        def record(module, args) -> None:
            per_layer[layer].append(args[0][:, position, :].detach().float().cpu())

        return record

    handles = [module.register_forward_pre_hook(hook_for(i)) for i, module in enumerate(projections)]
    try:
        yield per_layer
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def stimulation(adapter: BackboneAdapter, method: PromptTuning, batches: Iterable[dict[str, Tensor]]) -> Tensor:
    """e(P): (N_layers · d_ff) FFN activations at the first input token, averaged over the inputs.

    With an input prompt the first input token sits after the n prompt positions; deep prompts
    add no positions, so it is position 0 (the [CLS] of BERT-style encoders).
    """
    modes = adapter.training, method.training  # given back after, so a run trained next keeps its modes
    adapter.eval()
    method.eval()
    position = 0 if method.depth == "deep" else method.n_tokens
    with recorded_ffn_activations(adapter, position) as per_layer:
        for batch in batches:
            adapter(
                batch["input_ids"],
                batch["attention_mask"],
                prompt=method.prompt(batch),
                layer_prefixes=method.layer_prefixes(batch),
                token_type_ids=batch.get("token_type_ids"),
            )
    adapter.train(modes[0])
    method.train(modes[1])
    return torch.cat([torch.cat(layer).mean(0) for layer in per_layer])


def stimulation_similarity(source: Tensor, target: Tensor) -> float:
    """PANDA's MSS: cosine of two stimulation vectors e(P_s), e(P_t)."""
    return float(F.cosine_similarity(source, target, dim=0))


def neuron_overlap(source: Tensor, target: Tensor) -> float:
    """ON: cosine of the binary activated-neuron masks 1[e > 0] (0 when either has none)."""
    source_active, target_active = (source > 0).float(), (target > 0).float()
    if source_active.sum() == 0 or target_active.sum() == 0:
        return 0.0
    return float(F.cosine_similarity(source_active, target_active, dim=0))


def pair_metrics(
    source_prompt: Tensor, target_prompt: Tensor, source_stimulation: Tensor, target_stimulation: Tensor
) -> dict[str, float]:
    """All four metrics for one (source, target) pair, keyed as in METRICS."""
    return {
        "e_avg": eavg_similarity(source_prompt, target_prompt),
        "token_avg": token_average_similarity(source_prompt, target_prompt),
        "mss": stimulation_similarity(source_stimulation, target_stimulation),
        "neuron_overlap": neuron_overlap(source_stimulation, target_stimulation),
    }
