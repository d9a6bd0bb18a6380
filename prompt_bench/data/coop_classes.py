"""CoOp's class names and label order for hub image sets (KaiyangZhou/CoOp datasets/*.py, split_zhou_*.json).

A hub copy of an image set can name and order its classes differently from CoOp's split files, and the
base-to-new protocol takes the first ceil(C/2) labels as base classes (CoOp oxford_pets.py
`subsample_classes`), so the order decides which classes are base. A class map,
`prompt_bench/data/class_names/<set>.yaml`, holds CoOp's classes in CoOp's label order (`classes`) and
the hub names that are not CoOp names (`hub_names`: hub name -> CoOp name, or null to drop the class,
as CoOp drops Caltech101's background). Names compare by `class_key`: case, "_", "-", "/", spacing
and word order ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from prompt_bench.errors import DataError

CLASS_NAMES_DIR = Path(__file__).parent / "class_names"


def class_key(name: str) -> str:
    """'AnnualCrop', 'annual_crop' and 'Annual crop' give one key; so do 'apartment_building/outdoor'
    and 'outdoor apartment building' (CoOp puts SUN397's indoor/outdoor first)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(name)).lower()
    return " ".join(sorted(re.findall(r"[a-z0-9]+", spaced)))


@dataclass(frozen=True)
class ClassMap:
    """CoOp's classes of one set (label order) and the hub names that differ from them."""

    name: str
    classes: tuple[str, ...]
    hub_names: dict[str, str | None]

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class texts: CoOp's trainers replace "_" by a space (trainers/coop.py:98)."""
        return tuple(name.replace("_", " ") for name in self.classes)

    def relabel(self, hub_names: Sequence[str]) -> list[int]:
        """remap[hub label] = CoOp label, or -1 for a class CoOp drops. Every CoOp class must be found once."""
        coop_index = {class_key(name): index for index, name in enumerate(self.classes)}
        aliases = {class_key(hub): coop for hub, coop in self.hub_names.items()}
        remap, found = [], {}
        for hub_name in hub_names:
            key = class_key(hub_name)
            if key in aliases:
                target = aliases[key]
                coop_label = -1 if target is None else coop_index.get(class_key(target))
            else:
                coop_label = coop_index.get(key)
            if coop_label is None:
                raise DataError(
                    f"hub class '{hub_name}' has no CoOp name in {self.source}; add it under hub_names "
                    f"(hub name: CoOp name, or null to drop it)."
                )
            if coop_label >= 0 and coop_label in found:
                raise DataError(
                    f"hub classes '{found[coop_label]}' and '{hub_name}' both map to CoOp class "
                    f"'{self.classes[coop_label]}' in {self.source}."
                )
            if coop_label >= 0:
                found[coop_label] = hub_name
            remap.append(coop_label)
        missing = [name for index, name in enumerate(self.classes) if index not in found]
        if missing:
            raise DataError(
                f"CoOp classes {missing[:5]}{' ...' if len(missing) > 5 else ''} of {self.source} are not among the "
                f"hub's {len(hub_names)} class names; map the hub's name to them under hub_names."
            )
        return remap

    @property
    def source(self) -> str:
        return f"prompt_bench/data/class_names/{self.name}.yaml"


@cache
def load_class_map(name: str) -> ClassMap:
    """The class map `prompt_bench/data/class_names/<name>.yaml`."""
    path = CLASS_NAMES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CLASS_NAMES_DIR.glob("*.yaml")))
        raise DataError(f"dataset.task.class_map '{name}' is not in {CLASS_NAMES_DIR} (known: {known}).")
    data = yaml.safe_load(path.read_text())
    classes = tuple(str(c) for c in data["classes"])
    keys = [class_key(c) for c in classes]
    if len(set(keys)) != len(keys):
        raise DataError(f"{path} lists two classes with the same name key; names must differ beyond case and '_'.")
    hub_names = {str(k): (None if v is None else str(v)) for k, v in (data.get("hub_names") or {}).items()}
    return ClassMap(name, classes, hub_names)
