"""Cars-196 with the paper's class-disjoint split, on top of PML's ``Cars196`` reader."""

from __future__ import annotations

from pytorch_metric_learning import datasets as pml_datasets

from ._paper_split_mixin import _PaperSplitMixin


class Cars196(_PaperSplitMixin, pml_datasets.Cars196):
    """Stanford Cars: classes 1-98 for ``"train"``, 99-196 for ``"test"`` (paper split).

    PML 2.9.0 reads the Kaggle "stanford-car-dataset-by-classes-folder" layout, not the original
    ``.mat`` annotations: ``root/names.csv`` (one class name per line, line i = class i),
    ``root/anno_train.csv`` and ``root/anno_test.csv`` (``file,x1,y1,x2,y2,class`` without header)
    and images in ``root/car_data/car_data/{train,test}/<class name with "/" -> "-">/<file>``.
    Images of both official halves are pooled, then split by class. Labels are remapped to
    contiguous 0-based ids (``class_ids[label]`` is the original 1-based id).

    Arguments, attributes and errors are those of the paper's image datasets, documented once in their shared
    base ``_PaperSplitMixin`` (class and ``__init__``) and in docs/datasets.md.
    """

    DATA_NAME = "cars196"
    SOURCE = 'the Kaggle dataset "jutrera/stanford-car-dataset-by-classes-folder"'
    REQUIRED_FILES = ("names.csv", "anno_train.csv", "anno_test.csv")
