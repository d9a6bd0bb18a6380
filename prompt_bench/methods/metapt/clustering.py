"""MetaPT step 1: cluster a pre-training corpus into K auxiliary tasks.

    kmeans   sentence embeddings (N, d) -> K-means, cluster = nearest centroid       ids (N,)
    lda      texts -> bag of words -> LDA with K topics, cluster = dominant topic     ids (N,)

MetaPT (Huang, Qian, Yu 2022, arXiv 2205.12471) has no public code. What is known [summary]: the
pre-training examples are embedded with Sentence-BERT and grouped by K-means into K clusters, or
grouped by LDA topics with each document assigned its dominant topic; each cluster becomes one
auxiliary task for Prompt-MAML. Everything else here (K, the scikit-learn settings, the summary
contents) is RECONSTRUCTED: a named option of `ClusteringConfig` with a documented default.

The summary is a JSON-ready dict meant to sit next to the meta-learned prompt artefact, so that a
reader can see what the K tasks were: sizes, a few representative texts per cluster (nearest the
centroid for K-means, highest topic weight for LDA), the top terms of each LDA topic, and the
silhouette score of the assignment on the embeddings when embeddings are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

CLUSTER_METHODS = ("kmeans", "lda")


@dataclass
class ClusteringConfig:
    """How the corpus is cut into auxiliary tasks. Every default is reconstructed, not official."""

    method: str = "kmeans"  # "kmeans" (paper's main choice [summary]) or "lda" (its alternative)
    num_clusters: int = 10  # K; not reported [not found]; METHODS.md suggests K in {5, 10, 20}
    seed: int = 0  # random_state of KMeans / LDA and of the silhouette subsample
    kmeans_n_init: int = 10  # K-means restarts (scikit-learn's classic default)
    # L2-normalise embeddings before K-means (cosine geometry). Off: Sentence-BERT models such
    # as all-MiniLM-L6-v2 already end in a Normalize layer, so this only matters for raw encoders.
    normalize: bool = False
    lda_max_features: int | None = 20000  # vocabulary cap of the CountVectorizer
    lda_stop_words: str | None = "english"  # scikit-learn's English stop list; None keeps all
    lda_min_df: int = 1  # drop words in fewer documents than this (1: keep every word)
    lda_max_iter: int = 20  # EM passes of LatentDirichletAllocation
    lda_learning_method: str = "batch"  # "batch" is deterministic given the seed; "online" is faster
    examples_per_cluster: int = 3  # representative texts written into the summary per cluster
    example_chars: int = 200  # each summary text is cut to this many characters
    top_terms: int = 10  # LDA only: top words per topic in the summary
    silhouette_sample_size: int | None = 5000  # subsample for the silhouette score; None: all N

    def __post_init__(self) -> None:
        if self.method not in CLUSTER_METHODS:
            raise ValueError(
                f"clustering method {self.method!r} is not one of {CLUSTER_METHODS}; "
                f"use kmeans (on sentence embeddings) or lda (on the texts)"
            )
        if self.num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2 (one task is not meta-learning), got {self.num_clusters}")
        if self.kmeans_n_init < 1:
            raise ValueError(f"kmeans_n_init must be >= 1, got {self.kmeans_n_init}")
        if self.lda_learning_method not in ("batch", "online"):
            raise ValueError(f"lda_learning_method must be 'batch' or 'online', got {self.lda_learning_method!r}")
        if self.examples_per_cluster < 0 or self.top_terms < 0:
            raise ValueError("examples_per_cluster and top_terms must be >= 0")


class Clustering(NamedTuple):
    """Cluster ids (N,) int64 in [0, K) and a JSON-ready summary dict."""

    ids: np.ndarray
    summary: dict[str, Any]


def as_embedding_array(embeddings: Any) -> np.ndarray:
    """(N, d) float64 numpy array from a tensor or an array-like; rejects other shapes."""
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"embeddings must be (num_examples, dim), got shape {array.shape}; embed each "
            f"example with the sentence encoder first"
        )
    if not np.isfinite(array).all():
        raise ValueError("embeddings contain NaN or inf; check the encoder's output")
    return array


def cluster_corpus(
    config: ClusteringConfig,
    texts: Sequence[str] | None = None,
    embeddings: Any = None,
) -> Clustering:
    """Cluster N corpus examples into `config.num_clusters` groups.

    Args:
        config: the method and its options.
        texts: N texts; required for lda, optional for kmeans (then the summary has examples).
        embeddings: (N, d) tensor or array of sentence embeddings; required for kmeans, optional
            for lda (then the summary has a silhouette score).

    Returns:
        Clustering(ids (N,) int64, summary dict).
    """
    if config.method == "kmeans":
        if embeddings is None:
            raise ValueError("kmeans clustering needs embeddings (N, d); pass embeddings=...")
        return kmeans_clusters(embeddings, config, texts=texts)
    if texts is None:
        raise ValueError("lda clustering needs the texts; pass texts=...")
    return lda_clusters(texts, config, embeddings=embeddings)


def kmeans_clusters(embeddings: Any, config: ClusteringConfig, texts: Sequence[str] | None = None) -> Clustering:
    """K-means on sentence embeddings (N, d); deterministic for `config.seed`."""
    from sklearn.cluster import KMeans

    features = as_embedding_array(embeddings)
    _check_sizes(len(features), config.num_clusters, texts)
    if config.normalize:
        features = features / np.clip(np.linalg.norm(features, axis=1, keepdims=True), 1e-12, None)
    kmeans = KMeans(n_clusters=config.num_clusters, n_init=config.kmeans_n_init, random_state=config.seed)
    ids = kmeans.fit_predict(features).astype(np.int64)
    # Representatives: the examples nearest their own centroid.
    distance = np.linalg.norm(features - kmeans.cluster_centers_[ids], axis=1)
    summary = _summary(config, ids, texts, features, order_key=distance)
    summary["inertia"] = float(kmeans.inertia_)
    return Clustering(ids, summary)


def lda_clusters(texts: Sequence[str], config: ClusteringConfig, embeddings: Any = None) -> Clustering:
    """LDA topics on word counts; each text goes to its dominant topic. Deterministic for a seed."""
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.feature_extraction.text import CountVectorizer

    texts = list(texts)
    _check_sizes(len(texts), config.num_clusters, None)
    vectorizer = CountVectorizer(
        max_features=config.lda_max_features,
        stop_words=config.lda_stop_words,
        min_df=config.lda_min_df,
    )
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError as error:  # empty vocabulary
        raise ValueError(
            f"LDA found no words to count in {len(texts)} texts ({error}); lower lda_min_df or set lda_stop_words=None"
        ) from error
    lda = LatentDirichletAllocation(
        n_components=config.num_clusters,
        max_iter=config.lda_max_iter,
        learning_method=config.lda_learning_method,
        random_state=config.seed,
    )
    topic_weights = lda.fit_transform(counts)  # (N, K), rows sum to 1
    ids = topic_weights.argmax(axis=1).astype(np.int64)
    features = None if embeddings is None else as_embedding_array(embeddings)
    if features is not None and len(features) != len(texts):
        raise ValueError(f"{len(features)} embeddings for {len(texts)} texts; they must match")
    # Representatives: the texts whose dominant topic weighs the most (smallest -weight).
    summary = _summary(config, ids, texts, features, order_key=-topic_weights.max(axis=1))
    vocabulary = vectorizer.get_feature_names_out()
    summary["top_terms"] = {
        str(topic): [str(vocabulary[j]) for j in np.argsort(-row)[: config.top_terms]]
        for topic, row in enumerate(lda.components_)
    }
    summary["vocabulary_size"] = int(len(vocabulary))
    return Clustering(ids, summary)


def _check_sizes(num_examples: int, num_clusters: int, texts: Sequence[str] | None) -> None:
    if num_examples < num_clusters:
        raise ValueError(f"cannot cut {num_examples} examples into {num_clusters} clusters; lower num_clusters")
    if texts is not None and len(texts) != num_examples:
        raise ValueError(f"{len(texts)} texts for {num_examples} embeddings; they must match")


def _summary(
    config: ClusteringConfig,
    ids: np.ndarray,
    texts: Sequence[str] | None,
    features: np.ndarray | None,
    order_key: np.ndarray,
) -> dict[str, Any]:
    """Sizes, representative texts, silhouette: only Python scalars, lists and dicts (JSON)."""
    sizes = np.bincount(ids, minlength=config.num_clusters)
    summary: dict[str, Any] = {
        "method": config.method,
        "num_clusters": config.num_clusters,
        "num_examples": int(len(ids)),
        "sizes": [int(size) for size in sizes],
        "empty_clusters": [int(c) for c in np.flatnonzero(sizes == 0)],
        "silhouette": _silhouette(features, ids, config),
        "config": asdict(config),
    }
    if texts is not None and config.examples_per_cluster:
        examples = {}
        for cluster in range(config.num_clusters):
            members = np.flatnonzero(ids == cluster)
            # stable sort: ties keep corpus order, so the summary is deterministic too
            members = members[np.argsort(order_key[members], kind="stable")]
            examples[str(cluster)] = [
                str(texts[i])[: config.example_chars] for i in members[: config.examples_per_cluster]
            ]
        summary["examples"] = examples
    return summary


def _silhouette(features: np.ndarray | None, ids: np.ndarray, config: ClusteringConfig) -> float | None:
    """Mean silhouette on the embeddings, or None (no embeddings, or fewer than 2 used clusters)."""
    if features is None:
        return None
    used = len(np.unique(ids))
    if not 2 <= used <= len(ids) - 1:
        return None
    from sklearn.metrics import silhouette_score

    sample_size = config.silhouette_sample_size
    if sample_size is not None and sample_size >= len(ids):
        sample_size = None
    return float(silhouette_score(features, ids, sample_size=sample_size, random_state=config.seed))
