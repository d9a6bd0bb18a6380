"""BayesPrompt's model-free core: features, GMM, SVGD, particle writes, relation data and metric."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prompt_bench.methods.bayesprompt.features import collect_features, sentence_features
from prompt_bench.methods.bayesprompt.mixture import (
    OFFICIAL_REG_COVAR,
    GaussianMixtureDensity,
    fit_mixture,
)
from prompt_bench.methods.bayesprompt.particles import (
    ParticleSampler,
    draw_particle_average,
    write_embedding_rows,
)
from prompt_bench.methods.bayesprompt.relation import (
    OBJECT_END,
    OBJECT_START,
    OBJECT_TYPE,
    SUBJECT_END,
    SUBJECT_START,
    SUBJECT_TYPE,
    RelationExample,
    build_relation_prompt,
    k_shot_split,
    k_shot_splits,
    micro_f1,
    no_relation_id,
    read_relation_file,
    relation_label_words,
    synthetic_relation_examples,
    synthetic_relation_splits,
    write_relation_file,
)
from prompt_bench.methods.bayesprompt.svgd import (
    SVGDConfig,
    median_bandwidth,
    move_particles,
    pairwise_sq_distances,
    svgd_direction,
)


def random_mixture(dim: int = 5, components: int = 3, seed: int = 0) -> GaussianMixtureDensity:
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(components, dim, dim, generator=generator, dtype=torch.float64)
    covariances = factors @ factors.transpose(1, 2) / dim + 0.2 * torch.eye(dim, dtype=torch.float64)
    means = 2.0 * torch.randn(components, dim, generator=generator, dtype=torch.float64)
    weights = torch.softmax(torch.randn(components, generator=generator, dtype=torch.float64), 0)
    return GaussianMixtureDensity.from_covariances(weights, means, covariances)


def two_mode_mixture() -> GaussianMixtureDensity:
    """Modes at (−3, 0) and (3, 0), covariance 0.5·I, equal weights."""
    return GaussianMixtureDensity.from_covariances(
        torch.tensor([0.5, 0.5]),
        torch.tensor([[-3.0, 0.0], [3.0, 0.0]]),
        0.5 * torch.eye(2).repeat(2, 1, 1),
    )


# ------------------------------------------------------------------------------------ mixture


def test_score_equals_autograd_of_log_density():
    mixture = random_mixture()
    points = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    points = (points + mixture.means[0]).requires_grad_(True)
    (autograd_score,) = torch.autograd.grad(mixture.log_density(points).sum(), points)
    torch.testing.assert_close(mixture.score(points.detach()), autograd_score)
    # The official epsilon shrinks the score by the factor p / (p + 1e-10): here p ≈ 1e-5.
    official = mixture.score(points.detach(), epsilon=1e-10)
    torch.testing.assert_close(official, autograd_score, rtol=1e-4, atol=0)


def test_cached_precisions_equal_per_iteration_inverses():
    mixture = random_mixture()
    for k in range(mixture.num_components):
        torch.testing.assert_close(mixture.precisions[k], torch.inverse(mixture.covariances[k]))

    # The official gradient: a loop over components that inverts Σ_k and builds N(μ_k, Σ_k) on
    # every call. The cached, vectorised score must give the same numbers.
    def score_inverting_each_call(points):
        log_joint = torch.stack(
            [
                torch.log(mixture.weights[k])
                + torch.distributions.MultivariateNormal(mixture.means[k], mixture.covariances[k]).log_prob(points)
                for k in range(mixture.num_components)
            ],
            dim=1,
        )
        responsibilities = torch.softmax(log_joint, dim=1)
        score = torch.zeros_like(points)
        for k in range(mixture.num_components):
            pulled = (points - mixture.means[k]) @ torch.inverse(mixture.covariances[k])
            score -= responsibilities[:, k : k + 1] * pulled
        return score, torch.logsumexp(log_joint, dim=1)

    points = mixture.means[1] + torch.randn(9, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    reference_score, reference_log_density = score_inverting_each_call(points)
    torch.testing.assert_close(mixture.score(points), reference_score)
    torch.testing.assert_close(mixture.log_density(points), reference_log_density)
    single = mixture.to(torch.float32)
    assert single.precisions.dtype == torch.float32
    torch.testing.assert_close(single.score(points.float()), reference_score.float(), rtol=1e-4, atol=1e-4)


def test_fit_mixture_matches_sklearn_and_official_defaults():
    generator = np.random.default_rng(0)
    features = np.concatenate([generator.normal(-2, 0.3, (60, 4)), generator.normal(2, 0.3, (60, 4))])
    mixture = fit_mixture(features, num_components=2)
    assert mixture.num_components == 2 and mixture.dim == 4
    assert OFFICIAL_REG_COVAR == 0.1
    # reg_covar is added to every covariance's diagonal: no eigenvalue below it.
    assert float(torch.linalg.eigvalsh(mixture.covariances).min()) >= 0.1 - 1e-9
    assert sorted(np.round(mixture.means[:, 0].numpy()).tolist()) == [-2.0, 2.0]

    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=2, reg_covar=0.1, random_state=0).fit(features)
    torch.testing.assert_close(
        mixture.log_density(torch.from_numpy(features)),
        torch.from_numpy(gmm.score_samples(features)),
    )
    # min(N, number of classes) components, as the official get_gmm.
    assert fit_mixture(features[:3], num_components=19).num_components == 3


# --------------------------------------------------------------------------------------- svgd


def test_svgd_direction_matches_pairwise_definition():
    generator = torch.Generator().manual_seed(3)
    points = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    scores = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    h = 0.7
    expected = torch.zeros_like(points)
    for i in range(6):
        for j in range(6):
            kernel = math.exp(-float(((points[j] - points[i]) ** 2).sum()) / (2 * h**2))
            # ∇_{x_j} k(x_j, x_i) = −(x_j − x_i) k / h²
            expected[i] += kernel * scores[j] - (points[j] - points[i]) * kernel / h**2
    torch.testing.assert_close(svgd_direction(points, scores, bandwidth=h), expected / 6)


def test_median_bandwidth_official_lower_median_and_numpy_average():
    points = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    squared = pairwise_sq_distances(points)
    assert torch.all(squared.diagonal() == 0)
    lower = math.sqrt(0.5 * float(torch.median(squared)) / math.log(7))
    average = math.sqrt(0.5 * float(np.median(squared.numpy())) / math.log(7))
    assert float(median_bandwidth(squared, "lower")) == pytest.approx(lower)
    assert float(median_bandwidth(squared, "average")) == pytest.approx(average)
    assert lower != pytest.approx(average)  # 36 entries: the two middle values differ


@pytest.fixture
def one_thread():
    """2-D SVGD is thousands of tiny products: with OpenMP threads on busy shared cores each one
    can wait a whole scheduler slice for a descheduled thread (measured: 0.7 → 49 ms/iteration)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_svgd_covers_both_modes_and_the_kernel_keeps_particles_apart(one_thread):
    mixture = two_mode_mixture()
    start = 0.3 * torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    moved = move_particles(start, mixture)  # official: 1000 iterations, step 0.01, α 0.9
    left, right = moved[moved[:, 0] < 0], moved[moved[:, 0] >= 0]
    assert len(left) >= 10 and len(right) >= 10
    for cluster, mode in ((left, -3.0), (right, 3.0)):
        torch.testing.assert_close(cluster.mean(0), torch.tensor([mode, 0.0]), atol=0.3, rtol=0)
        # The mixture's per-axis std is sqrt(0.5) ≈ 0.71: the particles spread like it.
        assert torch.all((cluster.std(0) > 0.4) & (cluster.std(0) < 1.0))
    distances = pairwise_sq_distances(moved).sqrt() + 1e3 * torch.eye(40)
    assert float(distances.min()) > 0.01

    # Without repulsion (a tiny bandwidth makes K = I, so ∇k = 0) the same run is plain gradient
    # ascent and every particle collapses onto its mode.
    ascended = move_particles(start, mixture, SVGDConfig(bandwidth=1e-3))
    for cluster in (ascended[ascended[:, 0] < 0], ascended[ascended[:, 0] >= 0]):
        assert float(cluster.std(0).max()) < 0.05
    assert not torch.equal(start, moved)  # not in place either


def test_svgd_config_rejects_bad_values():
    with pytest.raises(ValueError, match="median"):
        SVGDConfig(median="mode")
    with pytest.raises(ValueError, match="step_size"):
        SVGDConfig(step_size=0)


# ----------------------------------------------------------------------------------- particles


def test_particle_write_changes_only_the_virtual_rows():
    embedding = nn.Embedding(20, 8)
    before = embedding.weight.detach().clone()
    vector = torch.arange(8, dtype=torch.float32)
    write_embedding_rows(embedding, [17, 18], vector)
    after = embedding.weight.detach()
    assert torch.equal(after[17], vector) and torch.equal(after[18], vector)
    untouched = [row for row in range(20) if row not in (17, 18)]
    assert torch.equal(after[untouched], before[untouched])
    assert embedding.weight.requires_grad and embedding.weight.grad is None

    half = nn.Embedding(5, 8).to(torch.bfloat16)
    write_embedding_rows(half.weight, torch.tensor([4]), vector)
    assert half.weight.dtype == torch.bfloat16 and torch.equal(half.weight[4].float(), vector)
    with pytest.raises(ValueError, match="outside"):
        write_embedding_rows(embedding, [20], vector)


def test_particle_draws_average_distinct_particles_and_eval_modes():
    particles = torch.eye(10)  # an average of C distinct one-hot rows has C entries of 1/C
    generator = torch.Generator().manual_seed(0)
    average = draw_particle_average(particles, num_draw=4, generator=generator)
    assert int((average > 0).sum()) == 4 and torch.allclose(average[average > 0], torch.tensor(0.25))
    torch.testing.assert_close(draw_particle_average(particles, 50), particles.mean(0))

    embedding = nn.Embedding(12, 10)
    sampler = ParticleSampler(particles, num_draw=3, eval_mode="sample", seed=0)
    written = {tuple(sampler.write(embedding, [10, 11], training=False).tolist()) for _ in range(20)}
    assert len(written) > 1  # official: a fresh random average per evaluation batch
    assert torch.equal(embedding.weight[10], embedding.weight[11])

    deterministic = ParticleSampler(particles, num_draw=3, eval_mode="mean")
    assert torch.equal(deterministic.vector(training=False), particles.mean(0))
    assert not torch.equal(deterministic.vector(training=True), particles.mean(0))
    assert "particles" in deterministic.state_dict()
    with pytest.raises(ValueError, match="eval_mode"):
        ParticleSampler(particles, num_draw=3, eval_mode="argmax")


# ------------------------------------------------------------------------------------ features


def test_features_with_and_without_padding_mask():
    table = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])  # row 0: <pad>
    input_ids = torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()

    official = sentence_features(input_ids, table)  # every position, padding included
    torch.testing.assert_close(official, torch.tensor([[19 / 4, 19 / 4], [29 / 4, 29 / 4]]))
    clean = sentence_features(input_ids, nn.Embedding.from_pretrained(table), attention_mask, True)
    torch.testing.assert_close(clean, torch.tensor([[0.5, 0.5], [2.0, 2.0]]))

    padded = torch.cat([input_ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(
        sentence_features(input_ids, table, pad_to=8, pad_token_id=0),
        sentence_features(padded, table),
    )
    stacked = collect_features([(input_ids, attention_mask)] * 2, table, mask_padding=True)
    assert stacked.shape == (4, 2)
    with pytest.raises(ValueError, match="attention_mask"):
        sentence_features(input_ids, table, mask_padding=True)


# ------------------------------------------------------------------------------------ relation


def between(pieces, start_marker, end_marker):
    assert pieces.count(start_marker) == 1 and pieces.count(end_marker) == 1
    return list(pieces[pieces.index(start_marker) + 1 : pieces.index(end_marker)])


def test_template_puts_markers_around_the_entities():
    example = RelationExample(["he", "poured", "the", "water", "from", "the", "oven", "."], (3, 4), (6, 7), "x")
    prompt = build_relation_prompt(example)
    assert list(prompt.prompt) == [
        SUBJECT_TYPE,
        "water",
        SUBJECT_TYPE,
        "<mask>",
        OBJECT_TYPE,
        "oven",
        OBJECT_TYPE,
        ".",
    ]
    assert list(prompt.sentence) == [
        "he",
        "poured",
        "the",
        SUBJECT_START,
        "water",
        SUBJECT_END,
        "from",
        "the",
        OBJECT_START,
        "oven",
        OBJECT_END,
        ".",
    ]

    cases = {
        "object at the very end": (["Ada", "met", "Alan", "Turing"], (0, 1), (2, 4)),
        "object starts where the subject ends": (
            ["Acme", "Corp", "Lisbon", "office"],
            (0, 2),
            (2, 3),
        ),
        "object before subject": (["in", "Osaka", ",", "Chen", "Wei", "works"], (3, 5), (1, 2)),
        "object inside subject": (["the", "Bank", "of", "Lisbon", "said"], (1, 4), (3, 4)),
    }
    for name, (tokens, head, tail) in cases.items():
        example = RelationExample(tokens, head, tail, "x")
        for tokenize in (None, lambda word: [word[:2], word[2:]] if len(word) > 2 else [word]):
            pieces = build_relation_prompt(example, tokenize=tokenize).sentence
            split = tokenize or (lambda word: [word])
            expect_head = [p for w in example.head_words for p in split(w)]
            expect_tail = [p for w in example.tail_words for p in split(w)]
            inner_head = [p for p in between(pieces, SUBJECT_START, SUBJECT_END) if p not in (OBJECT_START, OBJECT_END)]
            assert inner_head == expect_head, name
            assert between(pieces, OBJECT_START, OBJECT_END) == expect_tail, name


def test_template_truncation_keeps_markers_around_the_entities():
    words = [f"w{i}" for i in range(300)]
    words[100:102] = ["Ada", "Lovelace"]
    words[150] = "London"
    example = RelationExample(words, (100, 102), (150, 151), "per:city_of_residence")

    for max_length, expect in (
        (256, {"right": True, "left": False, "middle": False}),
        (100, {"right": True, "left": True, "middle": False}),
        (40, {"right": True, "left": True, "middle": True}),
    ):
        prompt = build_relation_prompt(example, max_length=max_length)
        assert len(prompt.prompt) + len(prompt.sentence) + 4 <= max_length
        assert len(prompt.prompt) + len(prompt.sentence) + 4 == max_length  # fills the budget
        assert between(prompt.sentence, SUBJECT_START, SUBJECT_END) == ["Ada", "Lovelace"]
        assert between(prompt.sentence, OBJECT_START, OBJECT_END) == ["London"]
        assert (prompt.dropped_right > 0, prompt.dropped_left > 0, prompt.dropped_middle > 0) == (
            expect["right"],
            expect["left"],
            expect["middle"],
        )
        assert prompt.dropped == 300 + 4 - len(prompt.sentence)  # 300 words + 4 markers
    # Right first: at 256 the words before the subject all survive.
    assert build_relation_prompt(example, max_length=256).sentence[:3] == ("w0", "w1", "w2")
    # 20 = 9 prompt pieces + 4 specials + the 7 pieces of the two marked entities, gap emptied.
    tightest = build_relation_prompt(example, max_length=20)
    assert list(tightest.sentence) == [
        SUBJECT_START,
        "Ada",
        "Lovelace",
        SUBJECT_END,
        OBJECT_START,
        "London",
        OBJECT_END,
    ]
    with pytest.raises(ValueError, match="max_length"):
        build_relation_prompt(example, max_length=19)


def test_micro_f1_excludes_no_relation_and_equals_a_hand_count():
    labels = [0, 1, 1, 2, 2, 3, 0, 0]
    predictions = [0, 1, 2, 2, 0, 3, 1, 2]
    # non-NA guesses: positions 1,2,3,5,6,7 → 6; non-NA gold: 1,2,3,4,5 → 5; right: 1,3,5 → 3
    result = micro_f1(predictions, labels, no_relation=0)
    assert result["precision"] == pytest.approx(3 / 6)
    assert result["recall"] == pytest.approx(3 / 5)
    assert result["f1"] == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    # Same count with the NA class at another id (TACRED's no_relation need not be 0), and logits.
    relabel = {0: 2, 1: 0, 2: 1, 3: 3}
    logits = np.eye(4)[[relabel[p] for p in predictions]]
    assert micro_f1(logits, [relabel[y] for y in labels], no_relation=2) == result
    assert micro_f1([0, 0], [1, 2], no_relation=0)["f1"] == 0.0
    assert no_relation_id({"Component-Whole(e2,e1)": 1, "Other": 0}) == 0
    assert no_relation_id({"a": 0, "b": 1}, fallback=None) is None


def test_k_shot_is_deterministic_per_seed_with_exactly_k_per_relation():
    examples = synthetic_relation_examples(num_per_relation=20, seed=0)
    relations = sorted({e.relation for e in examples})
    for k in (1, 5, 16):
        splits = k_shot_splits(examples, k)
        assert list(splits) == [1, 2, 3, 4, 5]
        for seed, split in splits.items():
            assert sorted(e.relation for e in split) == sorted(relations * k)
            assert split == k_shot_splits(examples, k)[seed] == k_shot_split(examples, k, seed)
        assert splits[1] != splits[2]
    # Official: one list shuffled by seeds 1, 2, ... in turn; the clean variant shuffles afresh.
    carried, fresh = k_shot_splits(examples, 5), k_shot_splits(examples, 5, carry_shuffle=False)
    assert carried[1] == fresh[1] and carried[2] != fresh[2]
    assert k_shot_split(examples, 5, 2, carry_shuffle=False) == fresh[2]
    few = [e for e in examples if e.relation != "no_relation"] + [e for e in examples if e.relation == "no_relation"][
        :3
    ]
    assert sum(e.relation == "no_relation" for e in k_shot_split(few, 5, 1)) == 3
    with pytest.raises(ValueError, match="seed 13"):
        k_shot_split(examples, 5, 13)


OFFICIAL_SEMEVAL = os.environ.get("BAYESPROMPT_SEMEVAL_DIR")


@pytest.mark.skipif(
    not OFFICIAL_SEMEVAL,
    reason="set BAYESPROMPT_SEMEVAL_DIR to the official "
    "repo's dataset/semeval to compare with its shipped k-shot splits",
)
def test_k_shot_reproduces_the_official_semeval_splits():
    root = Path(OFFICIAL_SEMEVAL)
    train = read_relation_file(root / "train.txt")
    for folder in sorted((root / "k-shot").iterdir()):
        k, seed = (int(part) for part in folder.name.split("-"))
        assert k_shot_split(train, k, seed) == read_relation_file(folder / "train.txt"), folder


def test_synthetic_task_is_deterministic_and_round_trips(tmp_path):
    first, again = synthetic_relation_splits(seed=3), synthetic_relation_splits(seed=3)
    assert first == again and first.train != synthetic_relation_splits(seed=4).train
    assert first.rel2id["no_relation"] == 0 and len(first.train) == 32 * len(first.rel2id)
    for example in first.train:
        assert example.head_words and example.tail_words
        if example.relation == "per:city_of_birth":
            assert " ".join(example.tail_words) in {
                "Lisbon",
                "Nairobi",
                "Osaka",
                "Quito",
                "Tallinn",
                "Porto Alegre",
                "San Jose",
                "Cape Town",
            }
    write_relation_file(first.test, tmp_path / "test.txt")
    assert read_relation_file(tmp_path / "test.txt") == first.test
    tacred = {
        "token": ["a", "b", "c"],
        "subj_start": 0,
        "subj_end": 0,
        "obj_start": 1,
        "obj_end": 2,
        "relation": "x",
    }
    assert RelationExample.from_record(tacred).tail == (1, 3)
    assert relation_label_words("org:founded_by") == "organization founded by"
    assert relation_label_words("per:title") == "person title"
