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

    Args:
        root: folder holding ``names.csv``, the two annotation CSVs and ``car_data``. None (default):
            ``$PML_RELAXED_DATA/cars196``, else ``~/.cache/pml_relaxed/cars196``
            (see :mod:`pml_relaxed.datasets.data_root`).
        split: ``"train"``, ``"test"`` or ``"train+test"``.
        transform: callable on the RGB PIL image; default ``ResizeToTensor(image_size)``, giving
            a float tensor of shape (3, image_size, image_size). See also ``paper_transforms``.
        target_transform: optional callable on the int label.
        image_size: output side of the default transform.
        download: let PML download the Kaggle archive into root (needs internet).

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

    DATA_NAME = "cars196"
    SOURCE = 'the Kaggle dataset "jutrera/stanford-car-dataset-by-classes-folder"'
    REQUIRED_FILES = ("names.csv", "anno_train.csv", "anno_test.csv")
