"""CUB-200-2011 with the paper's class-disjoint split, on top of PML's ``CUB`` reader."""

from __future__ import annotations

from pytorch_metric_learning import datasets as pml_datasets

from ._paper_split_mixin import _PaperSplitMixin


class CUB200(_PaperSplitMixin, pml_datasets.CUB):
    """CUB-200-2011 birds: classes 1-100 for ``"train"``, 101-200 for ``"test"`` (paper split).

    Expects PML's layout: ``root/CUB_200_2011/{images.txt, image_class_labels.txt, images/...}``.
    Labels are remapped to contiguous 0-based ids (``class_ids[label]`` is the original 1-based id).

    Args:
        root: folder holding ``CUB_200_2011``. None (default): ``$PML_RELAXED_DATA/cub200``, else
            ``~/.cache/pml_relaxed/cub200`` (see :mod:`pml_relaxed.datasets.data_root`).
        split: ``"train"``, ``"test"`` or ``"train+test"``.
        transform: callable on the RGB PIL image; default ``ResizeToTensor(image_size)``, giving
            a float tensor of shape (3, image_size, image_size). See also ``paper_transforms``.
        target_transform: optional callable on the int label.
        image_size: output side of the default transform.
        download: let PML download and extract the archive into root (needs internet).

    Attributes:
        paths: list of N image paths.
        labels: LongTensor of shape (N,), contiguous 0-based class ids.
        original_labels: LongTensor of shape (N,), the dataset's 1-based class ids.
        class_ids: sorted original class ids; index = label.

    Raises:
        FileNotFoundError: if root or an index file is missing (and download is False).
        ValueError: for an unknown split, or a split without images.
        TypeError: for a bad root, transform or download type.
    """

    DATA_NAME = "cub200"
    SOURCE = "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz)"
    REQUIRED_FILES = ("CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt")
