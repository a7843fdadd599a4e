"""Benchmark datasets: what to train on, what to evaluate on, which networks, which augmentation.

Each :class:`BenchData` bundles a class-disjoint training set and evaluation set (the unseen test
classes, or validation classes held out of the training classes with ``--val-classes``), a model
factory for the teacher and the students of the paper's three settings, and a batch collate that
makes the augmented views. Image data lives in memory, and the views are drawn for the whole
batch at once (one affine draw per image), which keeps the CPU busy with the networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from pml_relaxed.datasets import Digits, Omniglot
from pml_relaxed.datasets.transforms import Compose, GaussianNoise, RandomAffine
from pml_relaxed.models.conv4 import Conv4
from pml_relaxed.models.mlp import MLP

from .config import BenchConfig

#: (student architecture, student dimension) per setting; the teacher's is ``teacher``.
Settings = Dict[str, Tuple[str, int]]


class TensorDataset(Dataset):
    """In-memory ``(inputs[i], labels[i])`` pairs with a ``labels`` attribute for PML's samplers."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.inputs[index], int(self.labels[index])


class ViewCollate:
    """Stacks a batch and draws ``num_views`` augmented views of it: B items -> B*k rows.

    The k views of item b are rows ``b*k .. b*k + k - 1`` (as :func:`multi_view_collate`).
    With ``transform=None`` the views are identical copies (text, or no augmentation).
    """

    def __init__(self, transform: Optional[Callable[[torch.Tensor], torch.Tensor]], num_views: int) -> None:
        self.transform, self.num_views = transform, num_views

    def __call__(self, batch):
        inputs = torch.stack([torch.as_tensor(item[0]) for item in batch])
        labels = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.long)
        views = [inputs if self.transform is None else self.transform(inputs) for _ in range(self.num_views)]
        stacked = torch.stack(views, dim=1).reshape(len(batch) * self.num_views, *inputs.shape[1:])
        return stacked, labels.repeat_interleave(self.num_views)


@dataclass
class BenchData:
    """Everything the runner needs to know about one dataset."""

    name: str
    train: Dataset
    evaluation: Dataset
    eval_split: str
    teacher_arch: str
    teacher_dim: int
    settings: Settings
    make_model: Callable[[str, int], torch.nn.Module]
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]]
    defaults: Dict[str, float] = field(default_factory=dict)
    teacher: Optional[torch.nn.Module] = None  # a given (pretrained) teacher; None = train one
    throughput_fn: Optional[Callable[[torch.nn.Module], float]] = None  # items/s of a student
    teacher_throughput_fn: Optional[Callable[[], float]] = None  # items/s of the given teacher
    train_views: Optional[Callable[[int], Tuple[Dataset, Callable]]] = None  # per-item views (images on disk)
    student_options: Optional[Dict[str, object]] = None  # constructor options of the students, recorded per run
    texts: Optional[Tuple[List[str], List[str]]] = None  # text datasets: the (training, evaluation) raw strings
    teacher_encoder: Optional[Callable[[List[str]], torch.Tensor]] = None  # the given teacher on raw strings
    # --unlabelled-texts: rows without labels that transfer batches append (pml_relaxed_bench.unlabelled)
    unlabelled: Optional[torch.Tensor] = None
    teacher_source: Optional[str] = None  # a given text teacher's folder or hub name (the peers distil it)
    teacher_sha256: Optional[str] = None  # SHA-256 of a given teacher's content (teacher_cache.teacher_fingerprint)

    @property
    def num_train_classes(self) -> int:
        return int(self.train.labels.max()) + 1

    def training_set(self, num_views: int) -> Tuple[Dataset, Callable]:
        """The training dataset and collate function that give ``num_views`` views of each item."""
        if self.train_views is not None:
            return self.train_views(num_views)
        return self.train, ViewCollate(self.augment, num_views)


def _split_classes(labels: torch.Tensor, num_val_classes: int, seed: int) -> Tuple[list, list]:
    classes = sorted(set(labels.tolist()))
    if not 0 <= num_val_classes < len(classes):
        raise ValueError(f"--val-classes must be in [0, {len(classes) - 1}] for this dataset; got {num_val_classes}")
    order = torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(classes[i] for i in order[:num_val_classes])
    return [c for c in classes if c not in val], val


def _subset(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]) -> TensorDataset:
    keep = torch.isin(labels, torch.as_tensor(list(classes)))
    remap = {c: i for i, c in enumerate(sorted(classes))}
    return TensorDataset(images[keep], torch.as_tensor([remap[int(c)] for c in labels[keep]]))


def _train_eval(
    images, labels, test_images, test_labels, config: BenchConfig
) -> Tuple[TensorDataset, TensorDataset, str]:
    """Class-disjoint train / evaluation sets: test classes, or validation classes held out of training."""
    if config.val_classes:
        train_classes, val_classes = _split_classes(labels, config.val_classes, config.split_seed)
        return _subset(images, labels, train_classes), _subset(images, labels, val_classes), "val"
    return (
        _subset(images, labels, sorted(set(labels.tolist()))),
        _subset(test_images, test_labels, sorted(set(test_labels.tolist()))),
        "test",
    )


def digits_data(config: BenchConfig) -> BenchData:
    """scikit-learn digits: train on 0-4, evaluate on 5-9; MLPs; small affine jitter and noise."""
    train, test = Digits("train"), Digits("test")
    train_set, eval_set, split = _train_eval(train.images, train.labels, test.images, test.labels, config)

    def make_model(arch: str, dim: int) -> torch.nn.Module:
        hidden = {"mlp256": 256, "mlp64": 64}[arch]
        return torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [hidden], dim, batch_norm=True))

    return BenchData(
        name="digits",
        train=train_set,
        evaluation=eval_set,
        eval_split=split,
        teacher_arch="mlp256",
        teacher_dim=64,
        settings={"self_transfer": ("mlp256", 64), "dim_reduction": ("mlp256", 8), "compression": ("mlp64", 8)},
        make_model=make_model,
        augment=Compose([RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1)), GaussianNoise(0.05)]),
        defaults={"epochs": 15, "teacher_epochs": 15, "batch_size": 60, "m": 12, "lr": 1e-3},
    )


def _split_alphabets(class_names: Sequence[str], num_val_alphabets: int, seed: int) -> Tuple[list, list, list]:
    """Train classes, validation classes and the held-out alphabets, drawn whole (``"<alphabet>/<character>"``)."""
    alphabets = sorted({name.split("/")[0] for name in class_names})
    if not 0 < num_val_alphabets < len(alphabets):
        raise ValueError(
            f"--val-alphabets must be in [1, {len(alphabets) - 1}] for this dataset "
            f"({len(alphabets)} training alphabets); got {num_val_alphabets}"
        )
    order = torch.randperm(len(alphabets), generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = sorted(alphabets[i] for i in order[:num_val_alphabets])
    in_held_out = [name.split("/")[0] in held_out for name in class_names]
    train = [c for c, held in enumerate(in_held_out) if not held]
    return train, [c for c, held in enumerate(in_held_out) if held], held_out


def omniglot_data(config: BenchConfig) -> BenchData:
    """Omniglot background small 1 (train) / 2 (test, unseen alphabets); Conv-4; random affine.

    ``--val-alphabets N`` holds out N whole training alphabets as the evaluation set (split
    ``"val-alphabets"``), the honest proxy for a test set of unseen alphabets.
    """
    root = config.data_root  # None: the dataset's default folder ($PML_RELAXED_OMNIGLOT, $PML_RELAXED_DATA, cache)
    train = Omniglot(root, split="train", image_size=28)
    if config.val_alphabets:
        train_classes, val_classes, _ = _split_alphabets(train.class_names, config.val_alphabets, config.split_seed)
        train_set = _subset(train.images, train.labels, train_classes)
        eval_set, split = _subset(train.images, train.labels, val_classes), "val-alphabets"
    else:
        test = Omniglot(root, split="test", image_size=28)
        train_set, eval_set, split = _train_eval(train.images, train.labels, test.images, test.labels, config)

    def make_model(arch: str, dim: int) -> torch.nn.Module:
        width = {"conv4-w64": 64, "conv4-w32": 32}[arch]
        return Conv4(in_channels=1, width=width, embedding_dim=dim, image_size=28)

    return BenchData(
        name="omniglot",
        train=train_set,
        evaluation=eval_set,
        eval_split=split,
        teacher_arch="conv4-w64",
        teacher_dim=128,
        settings={
            "self_transfer": ("conv4-w64", 128),
            "dim_reduction": ("conv4-w64", 16),
            "compression": ("conv4-w32", 32),
        },
        make_model=make_model,
        augment=RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1), shear=5),
        # 20 epochs at lr 3e-3: the budget every method (ProxyAnchorLoss for the teacher too) chose on
        # validation characters; 10 epochs at lr 1e-3 left all of them under-trained (docs/benchmarks.md)
        defaults={"epochs": 20, "teacher_epochs": 20, "batch_size": 90, "m": 2, "lr": 3e-3},
    )


IMAGE_DATASETS: Dict[str, Callable[[BenchConfig], BenchData]] = {
    "digits": digits_data,
    "omniglot": omniglot_data,
}
