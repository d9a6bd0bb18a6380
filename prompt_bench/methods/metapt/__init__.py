"""MetaPT (Huang, Qian, Yu 2022, arXiv 2205.12471) and its PPT baseline: the backbone-free core.

    clustering  corpus -> K clusters: K-means on sentence embeddings, or LDA dominant topics
    tasks       clusters -> auxiliary tasks (corpus labels, or PPT's self-supervised formats);
                disjoint m-support / m-query episodes
    maml        Prompt-MAML (first/second order), Reptile, outer update; PPT multi-task loss

No official MetaPT code exists; the algorithm is RECONSTRUCTED from the paper's abstract and
summaries (shared/METHODS.md §3), and every unknown is a named option with a documented default.
The method class (prepare: cluster, build tasks, meta-learn the prompt init once as an artefact;
then ordinary prompt tuning from it) builds on these.
"""

from prompt_bench.methods.metapt.clustering import (
    CLUSTER_METHODS,
    Clustering,
    ClusteringConfig,
    cluster_corpus,
    kmeans_clusters,
    lda_clusters,
)
from prompt_bench.methods.metapt.maml import (
    PromptMAMLConfig,
    build_outer_optimizer,
    inner_loop,
    meta_step,
    meta_train,
    multitask_loss,
    outer_update,
    task_meta_gradient,
)
from prompt_bench.methods.metapt.tasks import (
    TASK_FORMATS,
    AuxiliaryTask,
    Episode,
    Example,
    TaskConfig,
    build_auxiliary_tasks,
    sample_episode,
    sample_episodes,
    sample_task_batch,
    split_sentences,
    usable_tasks,
)

__all__ = [
    "CLUSTER_METHODS",
    "TASK_FORMATS",
    "AuxiliaryTask",
    "Clustering",
    "ClusteringConfig",
    "Episode",
    "Example",
    "PromptMAMLConfig",
    "TaskConfig",
    "build_auxiliary_tasks",
    "build_outer_optimizer",
    "cluster_corpus",
    "inner_loop",
    "kmeans_clusters",
    "lda_clusters",
    "meta_step",
    "meta_train",
    "multitask_loss",
    "outer_update",
    "sample_episode",
    "sample_episodes",
    "sample_task_batch",
    "split_sentences",
    "task_meta_gradient",
    "usable_tasks",
]
