"""The few-shot split of a relation task, as the official generate_k_shot.py (BayesPrompt / KnowPrompt).

train: the first k examples of every relation after the split seed's shuffle of the train pool
(seeds 1-5 shuffle one list in turn; see methods/bayesprompt/relation.py `k_shot_split`); k = None
keeps the whole pool. dev: the dataset's own dev set, whole (official); test: the whole test set, or
a stratified subsample of `max_test_examples` (the same for every seed).
"""

from __future__ import annotations

from prompt_bench.data.sources.relations import relation_example
from prompt_bench.data.splits import TEST_SUBSAMPLE_SEED, FewShotSplit, content_hash, stratified_subsample
from prompt_bench.data.tasks import Task
from prompt_bench.errors import ConfigError
from prompt_bench.methods.bayesprompt.relation import OFFICIAL_SPLIT_SEEDS, k_shot_split


def make_relation_split(
    task: Task, k_shot: int | None, split_seed: int, max_test_examples: int | None = None
) -> FewShotSplit:
    """A FewShotSplit of kind "relation" (train k per relation, official dev and test)."""
    if task.dev is None:
        raise ConfigError(f"relation task '{task.name}' has no dev set; its source must give one.")
    if k_shot is None:
        train = task.train
    else:
        if isinstance(k_shot, bool) or not isinstance(k_shot, int) or k_shot < 1:
            raise ConfigError(f"k_shot={k_shot!r} is not a positive integer; set dataset.k_shot to 1, 5 or 16.")
        if split_seed not in OFFICIAL_SPLIT_SEEDS:
            raise ConfigError(
                f"dataset.split_seed={split_seed} is not an official relation split seed {list(OFFICIAL_SPLIT_SEEDS)} "
                "(generate_k_shot.py shuffles one list with seeds 1-5 in turn); set dataset.split_seed to one of them."
            )
        pool = [relation_example(text) for text in task.train.texts]
        position = {id(example): index for index, example in enumerate(pool)}
        chosen = k_shot_split(pool, k_shot, split_seed)
        train = task.train.subset([position[id(example)] for example in chosen])
    test = stratified_subsample(task.test, max_test_examples, TEST_SUBSAMPLE_SEED, f"the test split of '{task.name}'")
    return FewShotSplit(
        task_name=task.name,
        label_names=task.label_names,
        metric=task.metric,
        train=train,
        dev=task.dev,
        test=test,
        content_hash=content_hash(task.label_names, train, task.dev, test),
        kind="relation",
    )
