"""Datasets: digits (embedded default), Omniglot, CUB/Cars/SOP wrappers, Banking77, multi-view wrapper.

Without ``root=``, a dataset is read from ``$PML_RELAXED_<DATASET>`` (Omniglot, Banking77), else
``$PML_RELAXED_DATA/<dataset>``, else ``~/.cache/pml_relaxed/<dataset>``: see :mod:`.data_root`.

``CUB200``, ``Cars196`` and ``StanfordOnlineProducts`` extend PML's dataset readers, which import Pillow;
they are imported when first used, so the rest of this package works without Pillow.
"""

import importlib
from typing import TYPE_CHECKING, Any, List

from . import banking77, omniglot
from .banking77 import Banking77
from .data_root import DATA_ENV_VAR, default_root
from .digits import Digits
from .multi_view import MultiViewDataset, multi_view_collate
from .omniglot import Omniglot
from .seeded_view_dataset import SeededViewDataset, seeded_view_collate
from .transforms import Compose, GaussianNoise, RandomAffine, ResizeToTensor, paper_transforms
from .two_view_collate import TwoViewCollate

if TYPE_CHECKING:
    from .cars196 import Cars196
    from .cub import CUB200
    from .sop import StanfordOnlineProducts

#: the classes built on PML's readers (which need Pillow), and their modules
_ON_PML_READERS = {"CUB200": ".cub", "Cars196": ".cars196", "StanfordOnlineProducts": ".sop"}

__all__ = [
    "Banking77",
    "DEFAULT_BANKING77_ROOT",
    "Cars196",
    "CUB200",
    "Digits",
    "MultiViewDataset",
    "multi_view_collate",
    "SeededViewDataset",
    "seeded_view_collate",
    "TwoViewCollate",
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


def __getattr__(name: str) -> Any:
    if name in _ON_PML_READERS:
        try:
            module = importlib.import_module(_ON_PML_READERS[name], __name__)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] != "PIL":
                raise
            raise ImportError(
                f"{name} extends PML's dataset reader, which needs Pillow, not installed: pip install pillow "
                "(pml-relaxed[vision] and pml-relaxed[bench] include it)"
            ) from err
        return getattr(module, name)
    # DEFAULT_BANKING77_ROOT / DEFAULT_OMNIGLOT_ROOT follow the environment at the moment they are read
    if name == "DEFAULT_BANKING77_ROOT":
        return banking77.DEFAULT_BANKING77_ROOT
    if name == "DEFAULT_OMNIGLOT_ROOT":
        return omniglot.DEFAULT_OMNIGLOT_ROOT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
