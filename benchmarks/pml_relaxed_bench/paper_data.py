"""CUB-200-2011, Cars-196 and Stanford Online Products for the benchmark, as in Kim et al. (CVPR 2021).

The paper's setting: ImageNet-pretrained backbones (``--backbone resnet50``/``resnet18``, torchvision,
``pip install pml-relaxed[vision]``, weights downloaded on first use), RandomResizedCrop 224 + flip,
AdamW 1e-4 with a cosine schedule, 90 images x 2 views per batch, 2 images per class,
sigma = delta = 1. Images are read from disk by PML's dataset classes (our wrappers add the
paper's class split and contiguous labels). ``--backbone conv4`` runs a small from-scratch Conv-4
on ``--image-size`` pixels without torchvision (used by the tests on a generated fixture).
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch.utils.data import Dataset

from pml_relaxed.datasets import CUB200, Cars196, MultiViewDataset, StanfordOnlineProducts, multi_view_collate
from pml_relaxed.datasets.transforms import Compose, RandomAffine, ResizeToTensor, paper_transforms
from pml_relaxed.models.conv4 import Conv4

from .config import BenchConfig
from .data import BenchData

PAPER_DATASETS = {"cub": CUB200, "cars": Cars196, "sop": StanfordOnlineProducts}
TEACHER = ("resnet50", 512)
SETTINGS = {"self_transfer": ("resnet50", 512), "dim_reduction": ("resnet50", 64), "compression": ("resnet18", 128)}
CONV4_SETTINGS = {
    "self_transfer": ("conv4-w64", 128),
    "dim_reduction": ("conv4-w64", 16),
    "compression": ("conv4-w32", 32),
}


def _identity(image):
    return image


def _torchvision_backbone(arch: str, dim: int) -> torch.nn.Module:
    try:
        import torchvision
    except ImportError as err:  # pragma: no cover - depends on the extra
        raise ImportError(f"--backbone {arch} needs torchvision: pip install pml-relaxed[vision]") from err
    weights = {"resnet50": "IMAGENET1K_V2", "resnet18": "IMAGENET1K_V1"}[arch]
    net = getattr(torchvision.models, arch)(weights=weights)
    features = net.fc.in_features
    net.fc = torch.nn.Identity()
    return torch.nn.Sequential(net, torch.nn.Linear(features, dim))


def paper_data(name: str, config: BenchConfig) -> BenchData:
    """Builds CUB (``cub``), Cars-196 (``cars``) or SOP (``sop``) for the benchmark."""
    if config.val_classes:
        raise ValueError("--val-classes is not supported for cub/cars/sop yet; tune on omniglot or digits")
    cls = PAPER_DATASETS[name]
    root = config.data_root  # None: the dataset's default folder ($PML_RELAXED_DATA/<name> or the user cache)
    size = config.image_size
    if config.backbone == "conv4":
        train_tf: Callable = Compose([ResizeToTensor(size), RandomAffine(degrees=10, translate=0.1, scale=(0.8, 1.2))])
        test_tf: Callable = ResizeToTensor(size)
        settings, teacher = CONV4_SETTINGS, ("conv4-w64", 128)
    else:
        train_tf, test_tf = paper_transforms(True, size), paper_transforms(False, size)
        settings, teacher = SETTINGS, TEACHER
    train = cls(root, split="train", transform=_identity, download=config.download)
    evaluation = cls(root, split="test", transform=test_tf, download=config.download)

    def make_model(arch: str, dim: int) -> torch.nn.Module:
        if arch.startswith("conv4"):
            return Conv4(in_channels=3, width=int(arch.split("-w")[1]), embedding_dim=dim, image_size=size)
        return _torchvision_backbone(arch, dim)

    def train_views(num_views: int) -> Tuple[Dataset, Callable]:
        return MultiViewDataset(train, transform=train_tf, num_views=num_views), multi_view_collate

    return BenchData(
        name=name,
        train=train,
        evaluation=evaluation,
        eval_split="test",
        teacher_arch=teacher[0],
        teacher_dim=teacher[1],
        settings=settings,
        make_model=make_model,
        augment=train_tf,
        train_views=train_views,
        defaults={"epochs": 60, "teacher_epochs": 60, "batch_size": 90, "m": 2, "lr": 1e-4},
    )
