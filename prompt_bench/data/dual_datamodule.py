"""The class site's datamodule: a dual encoder's inputs, text (token ids, padded, cached on disk as the
input site's) or images (through the CLIP image processor), with one test loader per scored class
set (base, new)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from prompt_bench.base_to_new import BaseToNewSplit
from prompt_bench.data.datamodule import PadCollator, SplitDataModule
from prompt_bench.data.sources.images import as_rgb
from prompt_bench.data.tasks import Examples
from prompt_bench.errors import ConfigError


class InputDataset(Dataset):
    """N (input, label) pairs; an input is a token-id list or an image, read on access."""

    def __init__(self, inputs: Sequence[Any], labels: Sequence[int]) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.inputs[index], self.labels[index]


def stack_features(items: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """B (feature (D,), label) pairs -> {"input_features": (B, D), "labels": (B,)}."""
    return {
        "input_features": torch.stack([feature for feature, _ in items]),
        "labels": torch.tensor([label for _, label in items], dtype=torch.long),
    }


@dataclass(frozen=True)
class ImageCollator:
    """B (image, label) pairs -> {"pixel_values": (B, 3, H, W), "labels": (B,)} via the image processor,
    after `augment` (an RGB PIL image -> a PIL image) when given."""

    processor: Any
    augment: Callable[[Any], Any] | None = None

    def __call__(self, items: list[tuple[Any, int]]) -> dict[str, torch.Tensor]:
        images = [as_rgb(image) for image, _ in items]
        if self.augment is not None:
            images = [self.augment(image) for image in images]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.tensor([label for _, label in items], dtype=torch.long)}


class DualDataModule(SplitDataModule):
    """Train / dev over the training classes; `test_dataloader()` is one loader per class set of
    `split.tests` (a list for base-to-new: [base, new]), in `test_sets` order.

    input_kind "text": texts are tokenised once by `encode` (N texts -> N id lists; cached on disk
    with `cache_key` and `cache_dir`) and padded; "image": images go through `image_processor` batch
    by batch. `augment` (images only) transforms each training image anew every time it is drawn.
    With `featurize` (a batch -> (B, D) input features of the frozen input tower), every split that is
    not augmented is encoded once at setup and its loader yields {"input_features", "labels"}: valid
    because the tower is frozen, and it spares the input tower every epoch.
    """

    def __init__(
        self,
        split: BaseToNewSplit,
        input_kind: str,
        encode: Callable[[Sequence[str]], list[list[int]]] | None = None,
        pad_token_id: int = 0,
        image_processor: Any = None,
        batch_size: int = 4,
        eval_batch_size: int = 64,
        featurize: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
        augment: Callable[[Any], Any] | None = None,
        cache_key: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(split, encode, batch_size, eval_batch_size, cache_key, cache_dir)
        if input_kind == "text" and not hasattr(split.train, "texts"):
            raise ConfigError("a text dual encoder needs a text dataset; pick a CLIP backbone for image datasets.")
        if input_kind == "image" and not hasattr(split.train, "images"):
            raise ConfigError(
                f"backbone is a CLIP image–text model but dataset '{split.task_name}' is text; use a text–text "
                "backbone (minilm_dual, mpnet_dual) or an image dataset (fashion_mnist, synthetic_images)."
            )
        self.input_kind = input_kind
        if augment is not None and input_kind != "image":
            raise ConfigError("dataset.augment applies to images; set it to false for text datasets.")
        self.collate = PadCollator(pad_token_id) if input_kind == "text" else ImageCollator(image_processor)
        self.collates = {"train": ImageCollator(image_processor, augment)} if augment is not None else {}
        self.test_sets = tuple(split.tests)
        self.featurize = featurize
        self._datasets: dict[str, InputDataset] = {}

    def parts(self) -> dict[str, Examples]:
        """train, dev and test_<set> for every scored class set."""
        named = {"train": self.split.train, "dev": self.split.dev}
        named.update({f"test_{name}": examples for name, (_, examples) in self.split.tests.items()})
        return named

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        parts = self.parts()
        token_ids = self.encoded_parts() if self.input_kind == "text" else None
        for name, examples in parts.items():
            inputs = token_ids[name] if token_ids is not None else examples.images
            self._datasets[name] = InputDataset(inputs, examples.labels)
        if self.featurize is not None:
            for name, dataset in self._datasets.items():
                if name not in self.collates:  # augmented splits are encoded batch by batch
                    self._datasets[name] = InputDataset(self._features(dataset), dataset.labels)
                    self.collates[name] = stack_features

    @torch.no_grad()
    def _features(self, dataset: InputDataset) -> torch.Tensor:
        """(N, D) input features of a split, in its order, on the CPU."""
        loader = DataLoader(dataset, batch_size=self.eval_batch_size, collate_fn=self.collate)
        return torch.cat([self.featurize(batch).float().cpu() for batch in loader])

    def _part_loader(self, name: str, batch_size: int, shuffle: bool = False) -> DataLoader:
        self.setup()
        return self._loader(self._datasets[name], batch_size, shuffle, self.collates.get(name, self.collate))

    def train_dataloader(self) -> DataLoader:
        return self._part_loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._part_loader("dev", self.eval_batch_size)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._part_loader(f"test_{name}", self.eval_batch_size) for name in self.test_sets]
