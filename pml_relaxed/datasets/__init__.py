"""Datasets: digits (embedded default), Omniglot, CUB/Cars/SOP wrappers, Banking77, multi-view wrapper."""
from .banking77 import DEFAULT_BANKING77_ROOT, Banking77
from .cars196 import Cars196
from .cub import CUB200
from .digits import Digits
from .multi_view import MultiViewDataset, multi_view_collate
from .omniglot import DEFAULT_OMNIGLOT_ROOT, Omniglot
from .sop import StanfordOnlineProducts
from .transforms import Compose, GaussianNoise, RandomAffine, ResizeToTensor, paper_transforms

__all__ = [
    "Banking77",
    "DEFAULT_BANKING77_ROOT",
    "Cars196",
    "CUB200",
    "Digits",
    "MultiViewDataset",
    "multi_view_collate",
    "Omniglot",
    "DEFAULT_OMNIGLOT_ROOT",
    "StanfordOnlineProducts",
    "Compose",
    "GaussianNoise",
    "RandomAffine",
    "ResizeToTensor",
    "paper_transforms",
]
