"""Stanford Online Products with the official split, on top of PML's reader."""

from __future__ import annotations

from pytorch_metric_learning import datasets as pml_datasets

from ._paper_split_mixin import _PaperSplitMixin


class StanfordOnlineProducts(_PaperSplitMixin, pml_datasets.StanfordOnlineProducts):
    """Stanford Online Products: 11,318 training and 11,316 test products (official split).

    Expects PML's layout: ``root/Stanford_Online_Products/Ebay_{train,test}.txt`` (a header line,
    then ``image_id class_id super_class_id path`` per line, path relative to that folder).
    Labels are remapped to contiguous 0-based ids (``class_ids[label]`` is the original class_id).

    Args:
        root: folder holding ``Stanford_Online_Products``. None (default): ``$PML_RELAXED_DATA/sop``, else
            ``~/.cache/pml_relaxed/sop`` (see :mod:`pml_relaxed.datasets.data_root`).
        split: ``"train"``, ``"test"`` or ``"train+test"``.
        transform: callable on the RGB PIL image; default ``ResizeToTensor(image_size)``, giving
            a float tensor of shape (3, image_size, image_size). See also ``paper_transforms``.
        target_transform: optional callable on the int label.
        image_size: output side of the default transform.
        download: let PML download and extract the archive into root (needs internet).

    Attributes:
        paths: list of N image paths.
        labels: LongTensor of shape (N,), contiguous 0-based class ids.
        original_labels: LongTensor of shape (N,), the dataset's class ids.
        class_ids: sorted original class ids; index = label.

    Raises:
        FileNotFoundError: if root or an index file is missing (and download is False).
        ValueError: for an unknown split, or a split without images.
        TypeError: for a bad root, transform or download type.
    """

    DATA_NAME = "sop"
    SOURCE = "https://github.com/rksltnl/Deep-Metric-Learning-CVPR16 (Stanford_Online_Products.zip)"
    REQUIRED_FILES = (
        "Stanford_Online_Products/Ebay_train.txt",
        "Stanford_Online_Products/Ebay_test.txt",
    )
