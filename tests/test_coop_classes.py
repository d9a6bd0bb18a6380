"""CoOp's class names and order for hub image sets (no hub access: the mapping runs on hub name lists)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompt_bench.data.coop_classes import class_key, load_class_map
from prompt_bench.data.sources.images import ImageExamples, relabelled
from prompt_bench.errors import DataError
from tests.conftest import compose_config

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# The 101 categories plus background as Caltech101's folders name them, sorted case-insensitively (the order of
# several hub copies); CoOp sorts them case-sensitively, so Faces, Leopards, Motorbikes come first.
CALTECH_FOLDERS = sorted(
    ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "airplanes"]
    + [
        name
        for name in load_class_map("caltech101").classes
        if name not in ("face", "leopard", "motorbike", "airplane")
    ],
    key=str.lower,
)


def test_caltech101_has_coops_100_classes_in_coops_order():
    classes = load_class_map("caltech101").classes
    assert len(classes) == 100 and len(CALTECH_FOLDERS) == 102
    assert classes[:5] == (
        "face",
        "leopard",
        "motorbike",
        "accordion",
        "airplane",
    )  # split_zhou_Caltech101.json labels 0-4
    assert classes[-1] == "yin_yang" and "background" not in " ".join(classes)


def test_caltech101_hub_names_map_to_coop_labels_and_background_is_dropped():
    class_map = load_class_map("caltech101")
    remap = class_map.relabel(CALTECH_FOLDERS)
    by_name = dict(zip(CALTECH_FOLDERS, remap))
    assert by_name["BACKGROUND_Google"] == -1 and by_name["Faces_easy"] == -1
    assert (by_name["Faces"], by_name["Leopards"], by_name["Motorbikes"], by_name["accordion"]) == (0, 1, 2, 3)
    assert by_name["airplanes"] == 4 and by_name["yin_yang"] == 99
    assert sorted(label for label in remap if label >= 0) == list(range(100))
    # lowercase hub names (another common copy) reach the same labels
    assert class_map.relabel([name.lower() for name in CALTECH_FOLDERS]) == remap
    assert class_map.label_names[18] == "car side"  # CoOp's trainers put spaces for "_" (coop.py:98)


def test_relabelled_drops_background_images_and_renumbers():
    remap = load_class_map("caltech101").relabel(CALTECH_FOLDERS)
    background, faces, yin_yang = (CALTECH_FOLDERS.index(n) for n in ("BACKGROUND_Google", "Faces", "yin_yang"))
    examples = ImageExamples(
        images=list(range(4)), labels=(faces, background, yin_yang, faces), keys=("a", "b", "c", "d")
    )
    kept = relabelled(examples, remap)
    assert kept.labels == (0, 99, 0) and kept.keys == ("a", "c", "d") and list(kept.images) == [0, 2, 3]


def test_an_unknown_hub_name_says_where_to_map_it():
    names = [n for n in CALTECH_FOLDERS if n != "airplanes"] + ["side of a plane"]
    with pytest.raises(DataError, match="hub class 'side of a plane' has no CoOp name in .*caltech101.yaml"):
        load_class_map("caltech101").relabel(names)


def test_eurosat_folder_names_map_to_coops_renamed_classes():
    folders = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop"]
    folders += ["Residential", "River", "SeaLake"]
    class_map = load_class_map("eurosat")
    assert class_map.relabel(folders) == list(range(10))
    assert class_map.relabel(["annual crop land", *folders[1:]]) == list(range(10))
    assert class_map.label_names[0] == "Annual Crop Land" and class_map.label_names[-1] == "Sea or Lake"


def test_dtd_order_and_kgcoop_template(tmp_path):
    classes = load_class_map("dtd").classes
    assert len(classes) == 47 and classes == tuple(sorted(classes)) and "polka-dotted" in classes
    assert load_class_map("dtd").relabel([c.replace("-", "_") for c in reversed(classes)]) == list(range(46, -1, -1))
    conf = compose_config(["dataset=dtd"], tmp_path, tmp_path).dataset
    assert conf.class_template == "a photo of a {}, a type of texture."  # KgCoOp kgcoop.py CUSTOM_TEMPLATES
    assert conf.task.class_map == "dtd"


def test_class_key_ignores_case_separators_and_word_order():
    assert class_key("AnnualCrop") == class_key("annual_crop") == class_key("Annual crop")
    assert class_key("apartment_building/outdoor") == class_key("outdoor apartment building")
    assert class_key("Apply_Eye_Makeup") == class_key("ApplyEyeMakeup")
    assert class_key("face") != class_key("Faces")


def test_every_class_map_named_by_a_dataset_conf_exists():
    for path in sorted((CONF_DIR / "dataset").glob("*.yaml")):
        for line in path.read_text().splitlines():
            if line.strip().startswith("class_map:"):
                name = line.split(":", 1)[1].split("#")[0].strip()
                assert load_class_map(name).classes, path.name
