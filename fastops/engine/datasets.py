"""Datasets and loaders by the command line's names: ``synthetic``, ``coco:PATH``, ``voc:PATH``
(layouts in ``DATA_HELP``), the training sampler (shuffled, class-balanced or repeat-factor; sharded
across processes) and the evaluation shards."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .. import data
from .errors import EngineError

__all__ = [
    "AUGMENTATIONS",
    "DATA_HELP",
    "SAMPLERS",
    "AugmentedDataset",
    "DataSpec",
    "batches",
    "eval_loader",
    "load_datasets",
    "load_sampler_state",
    "make_sampler",
    "parse_data",
    "sampler_state",
]

SAMPLERS = ("none", "class_balanced", "repeat_factor")
AUGMENTATIONS = ("flip", "scale", "erasing", "copy_paste")

DATA_HELP = """\
datasets (--data):
  synthetic     shapes on textured backgrounds, generated on the fly (no files): boxes, instance
                masks, semantic maps and multi-label tags; --num-images, --image-size, --num-classes,
                --imbalance shape it; validation images come from another seed
  coco:PATH     a COCO-format dataset: PATH/annotations/instances_<split>.json and the images in
                PATH/<split>/ (COCO 2017's layout; splits --train-split train2017, --val-split val2017)
  voc:PATH      Pascal VOC: PATH is the year folder (VOCdevkit/VOC2012): Annotations/*.xml,
                JPEGImages/, ImageSets/Main/<split>.txt, SegmentationClass/*.png when present
                (splits --train-split train, --val-split val)
"""


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data``: kind ("synthetic", "coco" or "voc") and path (None for synthetic)."""

    kind: str
    path: str | None = None


def parse_data(text: str) -> DataSpec:
    """``synthetic``, ``coco:PATH`` or ``voc:PATH``; EngineError for anything else or a missing path."""
    kind, _, path = text.partition(":")
    if kind == "synthetic" and not path:
        return DataSpec("synthetic")
    if kind in ("coco", "voc"):
        if not path:
            raise EngineError(f"--data {text}: give the dataset's folder, e.g. {kind}:/data/{kind}")
        if not os.path.isdir(path):
            raise EngineError(f"--data {text}: no such folder {path!r}")
        return DataSpec(kind, path)
    raise EngineError(f"unknown dataset {text!r}; use synthetic, coco:PATH or voc:PATH")


def _coco(path: str, split: str) -> Dataset:
    ann = os.path.join(path, "annotations", f"instances_{split}.json")
    images = os.path.join(path, split)
    for p in (ann, images):
        if not os.path.exists(p):
            layout = "PATH/annotations/instances_<split>.json and PATH/<split>/"
            raise EngineError(f"coco:{path}: missing {p} (layout: {layout})")
    return data.CocoDetection(images, ann)


def _voc(path: str, split: str) -> Dataset:
    listing = os.path.join(path, "ImageSets", "Main", f"{split}.txt")
    if not os.path.exists(listing):
        raise EngineError(f"voc:{path}: missing {listing} (PATH is the year folder, e.g. VOCdevkit/VOC2012)")
    return data.VOCDetection(path, image_set=split)


def load_datasets(
    spec: DataSpec,
    *,
    image_size: int,
    num_images: int = 512,
    val_images: int = 64,
    num_classes: int = 5,
    imbalance: float = 1.0,
    seed: int = 0,
    train_split: str | None = None,
    val_split: str | None = None,
    parts: tuple[str, ...] = ("train", "val"),
    augment: tuple[str, ...] = (),
) -> tuple[Dataset | None, Dataset | None]:
    """(train, validation) datasets for ``spec``; a part left out of ``parts`` is None (and none of
    its files is read). ``augment`` names training augmentations (``AUGMENTATIONS``): the training
    set becomes an ``AugmentedDataset``."""
    splits = {"coco": ("train2017", "val2017"), "voc": ("train", "val")}.get(spec.kind)
    out = []
    for part, count, split, seed_offset in (
        ("train", num_images, train_split, 0),
        ("val", val_images, val_split, 1_000_003),
    ):
        if part not in parts:
            out.append(None)
        elif spec.kind == "synthetic":
            common = dict(image_size=image_size, num_classes=num_classes, imbalance=imbalance)
            out.append(data.SyntheticShapes(count, seed=seed + seed_offset, **common))
        else:
            default = splits[0] if part == "train" else splits[1]
            out.append((_coco if spec.kind == "coco" else _voc)(spec.path, split or default))
    if augment and out[0] is not None:
        out[0] = AugmentedDataset(out[0], augmentation(tuple(augment), out[0]), seed)
    return out[0], out[1]


class AugmentedDataset(Dataset):
    """``dataset`` with ``transform`` applied to each sample, its random draws from a generator
    seeded by (seed, epoch, index): an image gets the same augmentation in an interrupted and a
    resumed run, whichever loader worker reads it. Attributes other than these (``num_classes``,
    ``image_labels``, ``has_masks``...) are the dataset's."""

    def __init__(self, dataset: Dataset, transform, seed: int = 0):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, target = self.dataset[i]
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_033 + int(i))
        return self.transform(image, target, generator)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "dataset":  # unpickling in a worker asks before __init__ ran
            raise AttributeError(name)
        return getattr(self.dataset, name)


def augmentation(names: tuple[str, ...], source: Dataset | None):
    """The training transform for ``--augment`` names, applied in the order given (``copy_paste``
    pastes objects of ``source``, the training set without augmentation)."""
    steps = []
    for name in names:
        if name == "flip":
            steps.append(data.transforms.RandomHorizontalFlip())
        elif name == "scale":
            steps.append(data.transforms.RandomScale((0.8, 1.25)))
        elif name == "erasing":
            steps.append(data.RandomErasing(p=0.5))
        elif name == "copy_paste":
            if source is None or not getattr(source, "has_masks", False):
                raise EngineError("--augment copy_paste needs instance masks, which this dataset does not have")
            steps.append(data.CopyPaste(source))
        else:
            raise EngineError(f"unknown augmentation {name!r}; choose from: {', '.join(AUGMENTATIONS)}")
    return data.transforms.Compose(steps)


def make_sampler(name: str, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, repeat_thresh: float = 0.001):
    """The training sampler, sharded by rank: ``none`` (a shuffled DistributedSampler),
    ``class_balanced`` or ``repeat_factor`` (fastops.data's, from the images' labels; ``repeat_thresh``
    is its threshold t: images whose rarest class is in fewer than a fraction t of the images repeat).
    Its order is a function of (seed, epoch), so a resumed run sees the same images."""
    if name == "none":
        return DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    labels = [dataset.image_labels(i) for i in range(len(dataset))]
    classes = dataset.num_classes
    if name == "class_balanced":
        return data.ClassBalancedSampler(labels, num_classes=classes, num_replicas=num_replicas, rank=rank, seed=seed)
    if name == "repeat_factor":
        return data.RepeatFactorSampler(
            labels, repeat_thresh=repeat_thresh, num_classes=classes, num_replicas=num_replicas, rank=rank, seed=seed
        )
    raise EngineError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")


def sampler_state(sampler) -> dict:
    """What fixes a sampler's order ({seed, epoch}); torch's DistributedSampler has no state_dict."""
    if hasattr(sampler, "state_dict"):
        return sampler.state_dict()
    return {"seed": sampler.seed, "epoch": sampler.epoch}


def load_sampler_state(sampler, state: dict) -> None:
    """Restores what ``sampler_state`` saved."""
    if hasattr(sampler, "load_state_dict"):
        sampler.load_state_dict(state)
    else:
        sampler.seed, sampler.epoch = state["seed"], state["epoch"]


def batches(dataset: Dataset, indices: list[int], batch_size: int, num_workers: int = 0, seed: int = 0) -> DataLoader:
    """A loader over ``indices`` in their order (one epoch's order, less what a resumed run has seen).
    Its workers' seeds come from its own generator (seeded by ``seed``), not from torch's global
    one, which the training's random draws use: starting a loader leaves those draws unchanged."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=indices,
        collate_fn=data.collate,
        num_workers=num_workers,
        generator=generator,
    )


def eval_loader(dataset: Dataset, batch_size: int, *, num_replicas: int, rank: int, limit: int | None = None):
    """This process's share of the evaluation images (every num_replicas-th from rank; no padding,
    so each image counts once over the processes)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return batches(dataset, list(range(rank, n, num_replicas)), batch_size)
