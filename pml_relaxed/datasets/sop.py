"""Stanford Online Products with the official split, on top of PML's reader."""

from __future__ import annotations

from pytorch_metric_learning import datasets as pml_datasets

from ._paper_split_mixin import _PaperSplitMixin


class StanfordOnlineProducts(_PaperSplitMixin, pml_datasets.StanfordOnlineProducts):
    """Stanford Online Products: 11,318 training and 11,316 test products (official split).

    Expects PML's layout: ``root/Stanford_Online_Products/Ebay_{train,test}.txt`` (a header line,
    then ``image_id class_id super_class_id path`` per line, path relative to that folder).
    Labels are remapped to contiguous 0-based ids (``class_ids[label]`` is the original class_id).

    Arguments, attributes and errors are those of the paper's image datasets, documented once in their shared
    base ``_PaperSplitMixin`` (class and ``__init__``) and in docs/datasets.md.
    """

    DATA_NAME = "sop"
    SOURCE = "https://github.com/rksltnl/Deep-Metric-Learning-CVPR16 (Stanford_Online_Products.zip)"
    REQUIRED_FILES = (
        "Stanford_Online_Products/Ebay_train.txt",
        "Stanford_Online_Products/Ebay_test.txt",
    )
