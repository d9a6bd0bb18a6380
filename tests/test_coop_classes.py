"""CoOp's class names and order for hub image sets (no hub access: the mapping runs on hub name lists)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompt_bench.data.coop_classes import CLASS_NAMES_DIR, class_key, load_class_map
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


# timm/oxford-iiit-pet README.md (10b6888) `class_label: names`, labels 0-36.
PETS_HUB = (
    "abyssinian american_bulldog american_pit_bull_terrier basset_hound beagle bengal birman bombay boxer "
    "british_shorthair chihuahua egyptian_mau english_cocker_spaniel english_setter german_shorthaired great_pyrenees "
    "havanese japanese_chin keeshond leonberger maine_coon miniature_pinscher newfoundland persian pomeranian pug "
    "ragdoll russian_blue saint_bernard samoyed scottish_terrier shiba_inu siamese sphynx staffordshire_bull_terrier "
    "wheaten_terrier yorkshire_terrier"
).split()

# ethz/food101's ClassLabel names in label order (huggingface/datasets datasets/food101/food101.py `_NAMES`).
FOOD_HUB = (
    "apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets bibimbap bread_pudding "
    "breakfast_burrito bruschetta caesar_salad cannoli caprese_salad carrot_cake ceviche cheesecake cheese_plate "
    "chicken_curry chicken_quesadilla chicken_wings chocolate_cake chocolate_mousse churros clam_chowder club_sandwich "
    "crab_cakes creme_brulee croque_madame cup_cakes deviled_eggs donuts dumplings edamame eggs_benedict escargots "
    "falafel filet_mignon fish_and_chips foie_gras french_fries french_onion_soup french_toast fried_calamari "
    "fried_rice frozen_yogurt garlic_bread gnocchi greek_salad grilled_cheese_sandwich grilled_salmon guacamole gyoza "
    "hamburger hot_and_sour_soup hot_dog huevos_rancheros hummus ice_cream lasagna lobster_bisque "
    "lobster_roll_sandwich macaroni_and_cheese macarons miso_soup mussels nachos omelette onion_rings oysters pad_thai "
    "paella pancakes panna_cotta peking_duck pho pizza pork_chop poutine prime_rib pulled_pork_sandwich ramen ravioli "
    "red_velvet_cake risotto samosa sashimi scallops seaweed_salad shrimp_and_grits spaghetti_bolognese "
    "spaghetti_carbonara spring_rolls steak strawberry_shortcake sushi tacos takoyaki tiramisu tuna_tartare waffles"
).split()


def test_oxford_pets_hub_names_are_coops_in_coops_order(tmp_path):
    class_map = load_class_map("oxford_pets")
    assert len(PETS_HUB) == len(class_map.classes) == 37
    assert class_map.relabel(PETS_HUB) == list(range(37))
    assert class_map.label_names[1] == "american bulldog"
    assert compose_config(["dataset=oxford_pets"], tmp_path, tmp_path).dataset.task.class_map == "oxford_pets"


def test_food101_coop_order_is_the_sorted_folders_not_the_hub_order():
    class_map = load_class_map("food101")
    assert len(FOOD_HUB) == len(set(FOOD_HUB)) == len(class_map.classes) == 101
    assert class_map.classes == tuple(sorted(FOOD_HUB))  # CoOp dtd.py:62-64 sorts the folders
    remap = class_map.relabel(FOOD_HUB)
    assert sorted(remap) == list(range(101))
    assert remap[16:18] == [17, 16]  # hub: cheesecake, cheese_plate; Python's sort puts "cheese_plate" first
    assert [label for index, label in enumerate(remap) if label != index] == [17, 16]


def test_flowers102_hub_ids_map_to_coop_names_at_id_minus_one():
    class_map = load_class_map("flowers102")
    hub = sorted(str(i) for i in range(1, 103))  # nelorth/oxford-flowers: ids as names, sorted as strings
    assert hub[:5] == ["1", "10", "100", "101", "102"]  # README.md (a37b189) labels 0-4
    remap = class_map.relabel(hub)
    assert remap == [int(name) - 1 for name in hub]
    assert class_map.classes[0] == "pink primrose" and class_map.classes[101] == "blackberry lily"
    assert class_map.classes[11] == "colt's foot"  # cat_to_name.json id 12


def test_stanford_cars_meta_names_match_coops_year_first_names():
    class_map = load_class_map("stanford_cars")
    assert len(class_map.classes) == 196 and class_map.classes[0] == "2000 AM General Hummer SUV"
    # the hub's names are the devkit's meta names, the year last (CoOp stanford_cars.py:68-71 moves it first)
    hub = [" ".join([*name.split(" ")[1:], name.split(" ")[0]]) for name in class_map.classes]
    assert hub[0] == "AM General Hummer SUV 2000"
    assert class_map.relabel(hub) == list(range(196))
    # a name whose words are not all there does not match by accident
    with pytest.raises(DataError, match="has no CoOp name"):
        class_map.relabel([*hub[:-1], "smart fortwo 2012"])


def test_sun397_spaced_hub_names_match_coops_indoor_first_names():
    class_map = load_class_map("sun397")
    assert len(class_map.classes) == 397 and class_map.classes[8] == "outdoor apartment_building"
    # tanganke/sun397 README.md (4382ca2): the ClassName.txt path with spaces, sorted as text ("jail cell" < "jail indoor")
    hub = sorted(" ".join(reversed(name.split(" "))).replace("_", " ") for name in class_map.classes)
    assert hub[8] == "apartment building outdoor"
    remap = class_map.relabel(hub)
    assert sorted(remap) == list(range(397))
    assert [hub[i] for i, label in enumerate(remap) if label != i] == ["jail cell", "jail indoor"]


def test_ucf101_folder_names_match_coops_split_names_in_classind_order():
    class_map = load_class_map("ucf101")
    assert len(class_map.classes) == 101 and class_map.classes[0] == "Apply_Eye_Makeup"
    # flwrlabs/ucf101: the folder names sorted case-sensitively (README labels 33-35: Haircut, HammerThrow, Hammering)
    hub = sorted(name.replace("_", "") for name in class_map.classes)
    assert hub[33:36] == ["Haircut", "HammerThrow", "Hammering"] and hub[100] == "YoYo"
    remap = class_map.relabel(hub)
    assert sorted(remap) == list(range(101)) and remap[33:36] == [33, 35, 34]
    assert class_map.relabel([*hub[:36], "HandStandPushups", *hub[37:]]) == remap  # the video files' spelling


@pytest.mark.parametrize("path", sorted(CLASS_NAMES_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_class_map_is_consistent(path):
    class_map = load_class_map(path.stem)  # raises on two classes with one name key
    keys = [class_key(name) for name in class_map.classes]
    assert len(set(keys)) == len(keys) > 0
    targets = {class_key(target) for target in class_map.hub_names.values() if target is not None}
    assert targets <= set(keys), f"{path.name}: hub_names targets that are not CoOp classes: {targets - set(keys)}"
    # every CoOp name reaches itself
    assert class_map.relabel(list(class_map.classes)) == list(range(len(class_map.classes)))
