"""Image tasks for dual encoders: Fashion-MNIST (Debian's IDX files), synthetic images, hub image sets.

An `ImageExamples` is the image counterpart of `Examples`: N images (any indexable sequence of
arrays or PIL images, read lazily) with N labels and N content keys; the keys stand in for texts
in the split hash, so `make_split` and the base-to-new protocol work on images unchanged.
"""

from __future__ import annotations

import gzip
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prompt_bench.data.coop_classes import load_class_map
from prompt_bench.data.tasks import Task
from prompt_bench.errors import DataError

if TYPE_CHECKING:  # PIL (and the hub reader, with pandas) are imported by the image paths that use them
    from PIL import Image

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# Fashion-MNIST's ten labels (0-9), as CLIP reads them best: "T-shirt/top" -> "t-shirt".
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FASHION_MNIST_SETUP = (
    "Fashion-MNIST is read from Debian's dataset-fashion-mnist package ({root} is missing); install it with "
    "`sudo apt-get install dataset-fashion-mnist` (or `bash scripts/setup.sh`), or set dataset.task.root to a "
    "directory holding the four *-idx*-ubyte.gz files."
)
# Colours of the synthetic image task, one per class (names are one WordPiece token each).
SYNTHETIC_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 220, 40),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "brown": (130, 80, 30),
    "orange": (250, 150, 20),
}


@dataclass(frozen=True)
class ImageExamples:
    """N images (H×W or H×W×3 uint8 arrays, or PIL images), N labels, N content keys."""

    images: Any
    labels: tuple[int, ...]
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        labels = tuple(int(label) for label in self.labels)
        if not len(self.images) == len(labels) == len(self.keys):
            raise DataError(
                f"ImageExamples got {len(self.images)} images, {len(labels)} labels and {len(self.keys)} keys."
            )
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def texts(self) -> tuple[str, ...]:
        """The content keys (what the split hash is computed over)."""
        return self.keys

    def subset(self, indices: Sequence[int]) -> ImageExamples:
        indices = list(indices)
        return ImageExamples(
            images=LazySubset(self.images, indices),
            labels=tuple(self.labels[i] for i in indices),
            keys=tuple(self.keys[i] for i in indices),
        )


class LazySubset:
    """`source[indices[i]]` on demand, so a few-shot subset of a large set reads only its images."""

    def __init__(self, source: Any, indices: list[int]) -> None:
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        return self.source[self.indices[position]]


@dataclass
class RandomResizedCropFlip:
    """Training-time augmentation of the CoOp family (Dassl's random_resized_crop + random_flip):
    a crop of scale (0.08, 1) of the area and aspect ratio (3/4, 4/3), resized to size × size, then a
    horizontal flip with probability ½. Seeded, so a rerun sees the same crops."""

    size: int
    seed: int = 0
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, image: Image.Image) -> Image.Image:
        from PIL import Image

        width, height = image.size
        box = (0, 0, width, height)
        for _ in range(10):  # as torchvision: try a few random boxes, else keep the whole image
            area = width * height * self.rng.uniform(*self.scale)
            aspect = math.exp(self.rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            crop_width, crop_height = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                left = int(self.rng.integers(0, width - crop_width + 1))
                top = int(self.rng.integers(0, height - crop_height + 1))
                box = (left, top, left + crop_width, top + crop_height)
                break
        image = image.crop(box).resize((self.size, self.size), Image.BICUBIC)
        return image.transpose(Image.FLIP_LEFT_RIGHT) if self.rng.random() < 0.5 else image


def as_rgb(image: Any) -> Image.Image:
    """A uint8 array (H, W) or (H, W, 3), or any PIL image -> an RGB PIL image."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return image.convert("RGB")


# ---------------------------------------------------------------- Fashion-MNIST


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) -> its uint8 array, e.g. (N, 28, 28) images or (N,) labels."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        _, dtype_code, n_dims = struct.unpack(">HBB", handle.read(4))
        if dtype_code != 0x08:
            raise DataError(f"{path} is not an unsigned-byte IDX file (type code {dtype_code:#x}).")
        shape = struct.unpack(f">{n_dims}I", handle.read(4 * n_dims))
        return np.frombuffer(handle.read(), dtype=np.uint8).reshape(shape)


def fashion_mnist(root: str = FASHION_MNIST_DIR) -> Task:
    """Fashion-MNIST: 60,000 train and 10,000 test 28×28 greyscale images in 10 clothing classes."""
    root_dir = Path(root)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _first_existing(root_dir, f"{prefix}-images-idx3-ubyte")
        labels_path = _first_existing(root_dir, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(images_path), read_idx(labels_path)
        keys = tuple(f"fashion_mnist:{split}:{i}" for i in range(len(labels)))
        splits[split] = ImageExamples(images=images, labels=tuple(labels.tolist()), keys=keys)
    return Task("fashion_mnist", FASHION_MNIST_CLASSES, splits["train"], splits["test"], metric="acc")


def fashion_mnist_available(root: str = FASHION_MNIST_DIR) -> bool:
    return all(
        (Path(root) / f"{name}.gz").is_file() or (Path(root) / name).is_file()
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )


def _first_existing(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(FASHION_MNIST_SETUP.format(root=root / f"{name}.gz"))


# ---------------------------------------------------------------- synthetic


def synthetic_images(
    n_classes: int = 6, n_per_class: int = 40, n_test_per_class: int = 16, size: int = 32, seed: int = 0
) -> Task:
    """Colour-coded images for tiny-model tests: class c is a noisy square of colour c on grey."""
    if not 2 <= n_classes <= len(SYNTHETIC_COLOURS):
        raise DataError(f"synthetic_images needs 2 to {len(SYNTHETIC_COLOURS)} classes, got {n_classes}.")
    names = tuple(SYNTHETIC_COLOURS)[:n_classes]
    rng = np.random.default_rng(seed)

    def draw(count: int, split: str) -> ImageExamples:
        images, labels = [], []
        for label, name in enumerate(names):
            for _ in range(count):
                image = np.full((size, size, 3), 128, dtype=np.int16) + rng.integers(-20, 21, (size, size, 3))
                top, left = rng.integers(0, size // 2, 2)
                image[top : top + size // 2, left : left + size // 2] = SYNTHETIC_COLOURS[name]
                images.append(np.clip(image, 0, 255).astype(np.uint8))
                labels.append(label)
        keys = tuple(f"synthetic_images:{seed}:{split}:{i}" for i in range(len(labels)))
        return ImageExamples(images=np.stack(images), labels=tuple(labels), keys=keys)

    return Task("synthetic_images", names, draw(n_per_class, "train"), draw(n_test_per_class, "test"), metric="acc")


# ---------------------------------------------------------------- hub image sets


def hub_images(
    path: str,
    name: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    image_column: str = "image",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    task_name: str | None = None,
    class_map: str | None = None,
) -> Task:
    """An image classification set from the Hugging Face hub (or its cache); images decode lazily.

    Class names come from `label_names`, else the label column's ClassLabel names ("_" -> " ").
    `class_map` (a file stem under prompt_bench/data/class_names/) puts the classes in CoOp's names and
    label order and drops the classes CoOp leaves out (`prompt_bench.data.coop_classes`).
    """
    from prompt_bench.data.sources.hub import load_hub_dataset  # one offline check for every hub source

    dataset = load_hub_dataset(path, name)
    for split in (train_split, test_split):
        if split not in dataset:
            raise DataError(
                f"hub dataset '{path}' has no split '{split}' (splits: {list(dataset)}); set dataset.task.{'train' if split == train_split else 'test'}_split."
            )
    feature = dataset[train_split].features.get(label_column)
    hub_names = label_names if label_names is not None else getattr(feature, "names", None)
    if hub_names is None:
        raise DataError(f"hub dataset '{path}' has no class names on '{label_column}'; set dataset.task.label_names.")
    remap = None
    if class_map is not None:
        coop = load_class_map(class_map)
        remap, label_names = coop.relabel(hub_names), coop.label_names
    elif label_names is None:
        label_names = [str(n).replace("_", " ") for n in hub_names]

    def examples(split: str) -> ImageExamples:
        data = dataset[split]
        labels = tuple(data[label_column])
        keys = tuple(f"{path}:{split}:{i}" for i in range(len(labels)))
        images = ImageExamples(images=_Column(data, image_column), labels=labels, keys=keys)
        return images if remap is None else relabelled(images, remap)

    return Task(task_name or path.rsplit("/", 1)[-1], tuple(label_names), examples(train_split), examples(test_split))


def relabelled(examples: ImageExamples, remap: Sequence[int]) -> ImageExamples:
    """The examples whose class is kept (remap[label] >= 0), labelled remap[label]; images stay lazy."""
    kept = [i for i, label in enumerate(examples.labels) if remap[label] >= 0]
    subset = examples.subset(kept)
    return ImageExamples(images=subset.images, labels=tuple(remap[label] for label in subset.labels), keys=subset.keys)


class _Column:
    """One image column of a hub dataset, decoded per item."""

    def __init__(self, data: Any, column: str) -> None:
        self.data, self.column = data, column

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        return self.data[int(index)][self.column]
