"""MetaPT's backbone-free core: clustering, auxiliary tasks and episodes, Prompt-MAML, PPT loss."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from prompt_bench.methods.metapt import (
    AuxiliaryTask,
    ClusteringConfig,
    Example,
    PromptMAMLConfig,
    TaskConfig,
    build_auxiliary_tasks,
    build_outer_optimizer,
    cluster_corpus,
    inner_loop,
    meta_step,
    meta_train,
    multitask_loss,
    outer_update,
    sample_episode,
    sample_episodes,
    split_sentences,
)
from prompt_bench.methods.metapt.tasks import NEXT_SENTENCE_LABELS

torch.set_num_threads(1)


# ---------------------------------------------------------------- clustering


def blobs(seed: int = 0, per_blob: int = 20, dim: int = 5) -> tuple[torch.Tensor, np.ndarray]:
    """Three well-separated Gaussian blobs: (60, dim) float32 embeddings and their true blob."""
    generator = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.eye(3, dim)
    points = torch.cat([c + 0.3 * torch.randn(per_blob, dim, generator=generator) for c in centres])
    return points, np.repeat(np.arange(3), per_blob)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a and b group the examples identically (cluster ids up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_is_deterministic_recovers_blobs_and_summarises_as_json():
    embeddings, truth = blobs()
    texts = [f"text {i}" for i in range(len(truth))]
    config = ClusteringConfig(method="kmeans", num_clusters=3, seed=7, examples_per_cluster=2)
    first = cluster_corpus(config, texts=texts, embeddings=embeddings)
    again = cluster_corpus(config, texts=texts, embeddings=embeddings.numpy())  # array in, too
    assert first.ids.dtype == np.int64 and first.ids.shape == (60,)
    np.testing.assert_array_equal(first.ids, again.ids)
    assert first.summary == again.summary
    assert same_partition(first.ids, truth)
    summary = json.loads(json.dumps(first.summary))  # JSON-ready: plain Python types only
    assert sorted(summary["sizes"]) == [20, 20, 20] and summary["num_examples"] == 60
    assert summary["silhouette"] > 0.8 and summary["empty_clusters"] == []
    for cluster, examples in summary["examples"].items():
        assert len(examples) == 2
        assert all(first.ids[int(text.split()[1])] == int(cluster) for text in examples)


def topic_corpus() -> tuple[list[str], np.ndarray]:
    sports = "football goal match team player score league coach stadium referee".split()
    cooking = "recipe oven flour sugar butter bake dough pan salt kitchen".split()
    rng = np.random.default_rng(0)
    texts, truth = [], []
    for i in range(30):
        words = sports if i % 2 == 0 else cooking
        texts.append(" ".join(rng.choice(words, size=12)))
        truth.append(i % 2)
    return texts, np.array(truth)


def test_lda_is_deterministic_and_separates_topics():
    texts, truth = topic_corpus()
    config = ClusteringConfig(method="lda", num_clusters=2, seed=3, lda_max_iter=10)
    first = cluster_corpus(config, texts=texts)
    again = cluster_corpus(config, texts=texts)
    np.testing.assert_array_equal(first.ids, again.ids)
    assert first.summary == again.summary
    assert same_partition(first.ids, truth)
    summary = json.loads(json.dumps(first.summary))
    assert summary["silhouette"] is None  # no embeddings given
    assert sum(summary["sizes"]) == 30 and len(summary["top_terms"]["0"]) == 10
    with_embeddings = cluster_corpus(config, texts=texts, embeddings=np.eye(2)[truth] + 0.01)
    assert with_embeddings.summary["silhouette"] == pytest.approx(1.0, abs=0.05)


def test_clustering_rejects_bad_input_with_sentences():
    with pytest.raises(ValueError, match="not one of"):
        ClusteringConfig(method="gmm")
    with pytest.raises(ValueError, match="needs embeddings"):
        cluster_corpus(ClusteringConfig(), texts=["a"])
    with pytest.raises(ValueError, match="lower num_clusters"):
        cluster_corpus(ClusteringConfig(num_clusters=5), embeddings=torch.zeros(3, 2))


# ---------------------------------------------------------------- tasks and episodes


def sentence_corpus(documents: int = 6, sentences: int = 6) -> list[list[str]]:
    """Sentences named by position, so a pair's relation can be read off: 'doc 2 sentence 3.'"""
    return [[f"doc {d} sentence {s}." for s in range(sentences)] for d in range(documents)]


def position(sentence: str) -> tuple[int, int]:
    words = sentence.rstrip(".").split()
    return int(words[1]), int(words[3])


def test_labels_format_keeps_corpus_labels_one_task_per_cluster():
    texts = [f"review {i}" for i in range(10)]
    labels = [i % 5 for i in range(10)]
    ids = [0] * 4 + [1] * 6
    names = ("terrible", "bad", "okay", "good", "great")
    tasks = build_auxiliary_tasks(texts, ids, labels=labels, label_names=names)
    assert [task.name for task in tasks] == ["labels/cluster_0", "labels/cluster_1"]
    assert all(task.label_names == names and task.format == "labels" for task in tasks)
    assert tasks[1].examples == [Example(f"review {i}", i % 5) for i in range(4, 10)]
    with pytest.raises(ValueError, match="outside"):
        build_auxiliary_tasks(texts, ids, labels=[7] * 10, label_names=names)


def test_next_sentence_follows_ppt_yes_maybe_no():
    documents = sentence_corpus()
    tasks = build_auxiliary_tasks(documents, [0, 0, 0, 1, 1, 1], TaskConfig(seed=1))
    assert [task.name for task in tasks] == ["next_sentence/cluster_0", "next_sentence/cluster_1"]
    counts = [0, 0, 0]
    for task in tasks:
        assert task.label_names == NEXT_SENTENCE_LABELS == ("yes", "maybe", "no")
        assert len(task) == 3 * 6  # one pair per sentence
        for (first, second), label in task.examples:
            (doc_a, i), (doc_b, j) = position(first), position(second)
            counts[label] += 1
            if label == 0:
                assert doc_a == doc_b and abs(i - j) == 1
            elif label == 1:
                assert doc_a == doc_b and abs(i - j) > 1
            else:
                assert doc_a != doc_b
    assert min(counts) > 0
    cluster_only = build_auxiliary_tasks(documents, [0, 0, 0, 1, 1, 1], TaskConfig(seed=1, negatives_from="cluster"))
    for task in cluster_only:
        for (first, second), label in task.examples:
            if label == 2:
                assert (position(first)[0] < 3) == (position(second)[0] < 3)


def test_sentence_order_selection_and_ppt_document_filter():
    documents = sentence_corpus() + [["too short."] * 3, "Tiny. Document."]
    config = TaskConfig(formats=("sentence_order", "next_sentence_selection"), seed=2)
    order_task, selection_task = build_auxiliary_tasks(documents, [0] * 8, config)
    assert len(order_task) == 6 * 5  # adjacent pairs of the 6 kept documents; short ones skipped
    for (first, second), label in order_task.examples:
        (_, i), (_, j) = position(first), position(second)
        assert j - i == (1 if label == 0 else -1)
    assert selection_task.label_names == ("A", "B", "C", "D", "E", "F")
    for (sentence, options), label in selection_task.examples:
        rendered = re.findall(r"([A-Z])\. (doc \d+ sentence \d+\.)", options)
        assert [letter for letter, _ in rendered] == list("ABCDEF")
        documents_shown = [position(option)[0] for _, option in rendered]
        doc, i = position(sentence)
        doc_true, j = position(rendered[label][1])
        assert doc == doc_true and abs(i - j) == 1  # the answer is the neighbour
        assert documents_shown.count(doc) == 2  # plus one easy negative; 4 from other documents


def test_pseudo_label_uses_cluster_ids_as_labels():
    texts = [f"text {i}" for i in range(12)]
    ids = [i % 4 for i in range(12)]
    (task,) = build_auxiliary_tasks(texts, ids, TaskConfig(formats=("pseudo_label",)))
    assert task.label_names == ("cluster 0", "cluster 1", "cluster 2", "cluster 3")
    assert all(label == int(text.split()[1]) % 4 for text, label in task.examples)
    config = TaskConfig(formats=("pseudo_label",), pseudo_label_ways=2, pseudo_label_tasks=3)
    tasks = build_auxiliary_tasks(texts, ids, config, cluster_names=["w", "x", "y", "z"])
    assert len(tasks) == 3
    for task in tasks:
        assert len(task.clusters) == 2 and len(task) == 6
        for text, label in task.examples:
            assert ids[int(text.split()[1])] == task.clusters[label]
            assert task.label_names[label] == "wxyz"[task.clusters[label]]


def test_episodes_are_disjoint_and_deterministic():
    task = AuxiliaryTask("t", [Example(f"x{i}", i % 3) for i in range(40)], ("a", "b", "c"), "labels")
    for seed in range(5):
        episode = sample_episode(task, 8, seed)
        assert len(episode.support) == len(episode.query) == 8
        assert not {e.text for e in episode.support} & {e.text for e in episode.query}
        assert sample_episode(task, 8, torch.Generator().manual_seed(seed)) == episode
    assert sample_episode(task, 8, 0) != sample_episode(task, 8, 1)
    assert sample_episode(task, 20, 0).query  # exactly 2m examples is enough
    with pytest.raises(ValueError, match="2m"):
        sample_episode(task, 21, 0)
    tasks = [AuxiliaryTask(f"t{k}", task.examples, task.label_names, "labels") for k in range(5)]
    episodes = sample_episodes(tasks, 3, 4, 11)
    assert len({e.task.name for e in episodes}) == 3
    assert [e.task.name for e in sample_episodes(tasks, 3, 4, 11)] == [e.task.name for e in episodes]
    with pytest.raises(ValueError, match="tasks_per_step"):
        sample_episodes(tasks, 6, 4, 11)
    assert split_sentences("One. Two!  Three? four") == ["One.", "Two!", "Three?", "four"]


# ---------------------------------------------------------------- Prompt-MAML


class TinyPromptModel:
    """A frozen 2-layer 'backbone' over [prompt; inputs]; meta-params prompt (2, 4), head (3, 4)."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 4)).to(dtype)
        # requires_grad stays True on purpose: the meta-learner must leave it alone anyway
        self.frozen = dict(self.backbone.named_parameters())

    def loss(self, params, batch) -> torch.Tensor:
        inputs, labels = batch  # (B, L, 4), (B,)
        prompt = params["prompt"].expand(inputs.shape[0], -1, -1)
        hidden = functional_call(self.backbone, self.frozen, (torch.cat([prompt, inputs], 1),))
        return F.cross_entropy(hidden.mean(1) @ params["head"].T, labels)


def tiny_params(dtype=torch.float64, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "prompt": torch.randn(2, 4, generator=generator, dtype=dtype),
        "head": torch.randn(3, 4, generator=generator, dtype=dtype),
    }


def tiny_batches(tasks: int, dtype=torch.float64, seed: int = 2):
    generator = torch.Generator().manual_seed(seed)

    def batch():
        return torch.randn(5, 3, 4, generator=generator, dtype=dtype), torch.randint(0, 3, (5,), generator=generator)

    return [(batch(), batch()) for _ in range(tasks)]


@pytest.mark.parametrize(
    "config",
    [
        PromptMAMLConfig(order="second", inner_steps=2),
        PromptMAMLConfig(order="first", inner_steps=2),
        PromptMAMLConfig(algorithm="reptile", inner_steps=2, reptile_query=True),
    ],
    ids=["second", "first", "reptile"],
)
def test_meta_learning_never_touches_the_frozen_backbone(config):
    model = TinyPromptModel(torch.float32)
    before = {name: value.clone() for name, value in model.backbone.state_dict().items()}
    params = {name: nn.Parameter(value) for name, value in tiny_params(torch.float32).items()}
    start = {name: value.detach().clone() for name, value in params.items()}
    grads = meta_step(params, tiny_batches(2, torch.float32), model.loss, config)
    assert all(value.grad is None for value in params.values())  # meta_step only reads params
    optimizer = build_outer_optimizer(params.values(), PromptMAMLConfig())  # Adafactor
    outer_update(params, grads, optimizer=optimizer)
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(value.grad is None for value in model.backbone.parameters())
    assert all(not torch.equal(params[name], start[name]) for name in params)  # but P moved


def meta_objective(params, task_batches, loss_fn, inner_lr, inner_steps):
    """mean_i L_query(P_i') with P_i' from plain SGD steps: the function MAML differentiates."""
    total = 0.0
    for support, query in task_batches:
        adapted = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        for _ in range(inner_steps):
            grads = torch.autograd.grad(loss_fn(adapted, support), list(adapted.values()))
            adapted = {
                k: (v - inner_lr * g).detach().requires_grad_(True)
                for (k, v), g in zip(adapted.items(), grads, strict=True)
            }
        total += float(loss_fn(adapted, query))
    return total / len(task_batches)


def test_second_order_meta_gradient_equals_finite_differences():
    model, params, batches = TinyPromptModel(), tiny_params(), tiny_batches(2)
    config = PromptMAMLConfig(order="second", inner_steps=2, inner_lr=0.5)
    grads = meta_step(params, batches, model.loss, config)
    epsilon = 1e-6
    for name, value in params.items():
        numeric = torch.zeros_like(value)
        for index in np.ndindex(*value.shape):
            shifted = []
            for sign in (1.0, -1.0):
                moved = {k: v.clone() for k, v in params.items()}
                moved[name][index] += sign * epsilon
                shifted.append(meta_objective(moved, batches, model.loss, 0.5, 2))
            numeric[index] = (shifted[0] - shifted[1]) / (2 * epsilon)
        torch.testing.assert_close(grads[name], numeric, rtol=1e-6, atol=1e-8)
    first = meta_step(params, batches, model.loss, PromptMAMLConfig(order="first", inner_steps=2, inner_lr=0.5))
    assert not torch.allclose(first["prompt"], grads["prompt"], atol=1e-6)  # the terms matter


def least_squares(params, batch):
    """L(P) = ||X P - Y||^2 / (2n): gradient X^T (X P - Y) / n, Hessian X^T X / n (by hand)."""
    inputs, targets = batch
    return ((inputs @ params["prompt"] - targets) ** 2).sum() / (2 * len(inputs))


def hand_gradient(prompt, batch):
    inputs, targets = batch
    return inputs.T @ (inputs @ prompt - targets) / len(inputs)


def regression_tasks(tasks: int = 3, seed: int = 4):
    generator = torch.Generator().manual_seed(seed)

    def batch():
        inputs = torch.randn(6, 3, generator=generator, dtype=torch.float64)
        return inputs, torch.randn(6, 2, generator=generator, dtype=torch.float64)

    return [(batch(), batch()) for _ in range(tasks)]


def test_first_and_second_order_equal_hand_formulas():
    prompt = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    tasks, alpha = regression_tasks(), 0.3
    first = meta_step(
        {"prompt": prompt},
        tasks,
        least_squares,
        PromptMAMLConfig(order="first", inner_lr=alpha, task_reduction="sum"),
    )
    second = meta_step(
        {"prompt": prompt},
        tasks,
        least_squares,
        PromptMAMLConfig(order="second", inner_lr=alpha, task_reduction="sum"),
    )
    hand_first, hand_second = torch.zeros_like(prompt), torch.zeros_like(prompt)
    for support, query in tasks:
        adapted = prompt - alpha * hand_gradient(prompt, support)  # one inner SGD step
        query_gradient = hand_gradient(adapted, query)  # FOMAML: ∇L_q at the adapted prompt
        hand_first += query_gradient
        hessian = support[0].T @ support[0] / len(support[0])
        hand_second += (torch.eye(3, dtype=torch.float64) - alpha * hessian) @ query_gradient
    torch.testing.assert_close(first["prompt"], hand_first, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(second["prompt"], hand_second, rtol=1e-12, atol=1e-12)
    mean = meta_step({"prompt": prompt}, tasks, least_squares, PromptMAMLConfig(order="first", inner_lr=alpha))
    torch.testing.assert_close(mean["prompt"], hand_first / 3, rtol=1e-12, atol=1e-12)


def test_reptile_update_equals_hand_formula():
    prompt = torch.randn(3, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    tasks, alpha, beta, steps = regression_tasks(2), 0.2, 0.5, 3
    for use_query in (False, True):
        config = PromptMAMLConfig(algorithm="reptile", inner_lr=alpha, inner_steps=steps, reptile_query=use_query)
        params = {"prompt": prompt.clone()}
        outer_update(params, meta_step(params, tasks, least_squares, config), outer_lr=beta)
        adapted_mean = torch.zeros_like(prompt)
        for support, query in tasks:
            adapted = prompt.clone()
            for batch in [support, query] if use_query else [support]:
                for _ in range(steps):
                    adapted = adapted - alpha * hand_gradient(adapted, batch)
            adapted_mean += adapted / len(tasks)
        # Reptile: P <- P + beta * mean_i (P_i' - P)
        torch.testing.assert_close(params["prompt"], prompt + beta * (adapted_mean - prompt), rtol=1e-12, atol=1e-12)


def test_inner_loop_and_outer_update_by_hand():
    prompt = torch.randn(3, 2, dtype=torch.float64)
    ((support, _),) = regression_tasks(1)
    adapted = inner_loop({"prompt": prompt}, [support], least_squares, 2, 0.1, False)
    expected = prompt - 0.1 * hand_gradient(prompt, support)
    expected = expected - 0.1 * hand_gradient(expected, support)
    torch.testing.assert_close(adapted["prompt"], expected, rtol=1e-12, atol=1e-12)
    params, grads = {"prompt": prompt.clone()}, {"prompt": torch.ones(3, 2, dtype=torch.float64)}
    outer_update(params, grads, outer_lr=0.25)
    torch.testing.assert_close(params["prompt"], prompt - 0.25)
    with pytest.raises(ValueError, match="exactly one"):
        outer_update(params, grads)


def test_ppt_multitask_loss_is_the_mean_of_task_losses():
    model, params = TinyPromptModel(), tiny_params()
    batches = [support for support, _ in tiny_batches(3)]
    per_task = torch.stack([model.loss(params, batch) for batch in batches])
    torch.testing.assert_close(multitask_loss(params, batches, model.loss), per_task.mean())
    torch.testing.assert_close(multitask_loss(params, batches, model.loss, "sum"), per_task.sum())


def test_meta_train_and_ppt_baseline_lower_the_query_loss():
    # Tasks: 2-class linear problems sharing one direction; the examples' texts index features.
    generator = torch.Generator().manual_seed(8)
    features = torch.randn(400, 4, generator=generator, dtype=torch.float64)
    tasks = []
    for k in range(4):
        rows = range(100 * k, 100 * (k + 1))
        direction = torch.tensor([1.0, 0.5 * k - 0.75, 0.0, 0.0], dtype=torch.float64)
        tasks.append(
            AuxiliaryTask(
                f"t{k}",
                [Example(str(i), int(features[i] @ direction > 0)) for i in rows],
                ("no", "yes"),
                "labels",
            )
        )

    def collate(examples, task):
        return features[[int(e.text) for e in examples]], torch.tensor([e.label for e in examples])

    def loss_fn(params, batch):
        inputs, labels = batch
        return F.cross_entropy((inputs + params["prompt"]) @ params["head"].T, labels)

    with pytest.raises(ValueError, match="usable_tasks"):
        meta_train({}, tasks, loss_fn, collate, PromptMAMLConfig(m=51, meta_steps=1))
    for baseline in (False, True):
        params = {
            "prompt": torch.zeros(4, dtype=torch.float64),
            "head": torch.zeros(2, 4, dtype=torch.float64),
        }
        config = PromptMAMLConfig(order="first", m=8, tasks_per_step=2, meta_steps=40, inner_lr=0.5, outer_lr=0.5)
        history = meta_train(params, tasks, loss_fn, collate, config, generator=0, baseline=baseline)
        key = "loss" if baseline else "query_loss"
        early = np.mean([h[key] for h in history[:5]])
        late = np.mean([h[key] for h in history[-5:]])
        assert late < early - 0.1, (baseline, early, late)
