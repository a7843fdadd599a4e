"""CUB-200-2011 with the paper's class-disjoint split, on top of PML's ``CUB`` reader."""

from __future__ import annotations

from pytorch_metric_learning import datasets as pml_datasets

from ._paper_split_mixin import _PaperSplitMixin


class CUB200(_PaperSplitMixin, pml_datasets.CUB):
    """CUB-200-2011 birds: classes 1-100 for ``"train"``, 101-200 for ``"test"`` (paper split).

    Expects PML's layout: ``root/CUB_200_2011/{images.txt, image_class_labels.txt, images/...}``.
    Labels are remapped to contiguous 0-based ids (``class_ids[label]`` is the original 1-based id).

    Arguments, attributes and errors are those of the paper's image datasets, documented once in their shared
    base ``_PaperSplitMixin`` (class and ``__init__``) and in docs/datasets.md.
    """

    DATA_NAME = "cub200"
    SOURCE = "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz)"
    REQUIRED_FILES = ("CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt")
