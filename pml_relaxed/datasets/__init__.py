"""Datasets: digits (embedded default), Omniglot, CUB/Cars/SOP wrappers, Banking77, multi-view wrapper.

Without ``root=``, a dataset is read from ``$PML_RELAXED_<DATASET>`` (Omniglot, Banking77), else
``$PML_RELAXED_DATA/<dataset>``, else ``~/.cache/pml_relaxed/<dataset>``: see :mod:`.data_root`.
"""

from pathlib import Path

from . import banking77, omniglot
from .banking77 import Banking77
from .cars196 import Cars196
from .cub import CUB200
from .digits import Digits
from .multi_view import MultiViewDataset, multi_view_collate
from .data_root import DATA_ENV_VAR, default_root
from .omniglot import Omniglot
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
    "DATA_ENV_VAR",
    "default_root",
]


def __getattr__(name: str) -> Path:
    # DEFAULT_BANKING77_ROOT / DEFAULT_OMNIGLOT_ROOT follow the environment at the moment they are read
    if name == "DEFAULT_BANKING77_ROOT":
        return banking77.DEFAULT_BANKING77_ROOT
    if name == "DEFAULT_OMNIGLOT_ROOT":
        return omniglot.DEFAULT_OMNIGLOT_ROOT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
