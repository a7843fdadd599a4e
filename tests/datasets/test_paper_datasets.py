"""CUB200 / Cars196 / StanfordOnlineProducts on tiny fixtures in PML 2.9.0's on-disk formats."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

from pml_relaxed.datasets.cars196 import Cars196
from pml_relaxed.datasets.cub import CUB200
from pml_relaxed.datasets.sop import StanfordOnlineProducts
from tests.helpers.paper_fixtures import make_cars, make_cub, make_sop

CUB_CLASSES = {"train": [1, 2, 100], "test": [101, 150, 200]}
CARS_CLASSES = {"train": [1, 2, 98], "test": [99, 196]}
SOP_CLASSES = {"train": [1, 2, 11318], "test": [11319, 22634]}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("paper")
    make_cub(base / "cub", CUB_CLASSES["train"] + CUB_CLASSES["test"])
    # Cars: PML pools both official halves, then splits by class; class 1 also in anno_test, 99 in train.
    make_cars(base / "cars", {"train": [1, 2, 98, 99], "test": [1, 196]})
    make_sop(base / "sop", SOP_CLASSES)
    return {"cub": base / "cub", "cars": base / "cars", "sop": base / "sop"}


CASES = [
    (CUB200, "cub", CUB_CLASSES, {"train": 6, "test": 6}),
    (Cars196, "cars", CARS_CLASSES, {"train": 8, "test": 4}),
    (StanfordOnlineProducts, "sop", SOP_CLASSES, {"train": 6, "test": 4}),
]


@pytest.mark.parametrize("cls, key, classes, sizes", CASES)
def test_paper_split_is_class_disjoint_with_contiguous_labels(roots, cls, key, classes, sizes):
    train = cls(roots[key], split="train", image_size=16)
    test = cls(roots[key], split="test", image_size=16)
    for ds, split in ((train, "train"), (test, "test")):
        assert len(ds) == sizes[split]
        assert ds.class_ids == classes[split]
        assert ds.labels.dtype == torch.long
        assert torch.equal(ds.labels.unique(), torch.arange(len(classes[split])))
        assert ds.num_classes == len(classes[split])
        lookup = torch.tensor(ds.class_ids)
        assert torch.equal(lookup[ds.labels], ds.original_labels)
    assert not set(train.original_labels.tolist()) & set(test.original_labels.tolist())


@pytest.mark.parametrize("cls, key, classes, sizes", CASES)
def test_train_plus_test_covers_both(roots, cls, key, classes, sizes):
    ds = cls(roots[key], split="train+test", image_size=8)
    assert len(ds) == sizes["train"] + sizes["test"]
    assert ds.class_ids == classes["train"] + classes["test"]


@pytest.mark.parametrize("cls, key, classes, sizes", CASES)
def test_getitem_gives_rgb_tensor_and_int_label(roots, cls, key, classes, sizes):
    ds = cls(roots[key], split="train", image_size=16)
    for i in (0, len(ds) - 1):  # CUB's first image is greyscale on disk
        image, label = ds[i]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert isinstance(label, int) and label == int(ds.labels[i])


def test_default_transform_is_224(roots):
    image, _ = CUB200(roots["cub"], split="test")[0]
    assert image.shape == (3, 224, 224)


def test_custom_transforms_are_used(roots):
    ds = Cars196(roots["cars"], split="test", transform=lambda img: img.size, target_transform=lambda y: -y)
    size, label = ds[len(ds) - 1]
    assert size[1] == 7 and label == -1


@pytest.mark.parametrize("cls", [CUB200, Cars196, StanfordOnlineProducts])
def test_missing_root_is_a_clear_error(tmp_path, cls):
    with pytest.raises(FileNotFoundError, match=r"root .*nowhere.* does not exist.*download=(True)"):
        cls(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "cls, expected",
    [
        (CUB200, "CUB_200_2011/images.txt"),
        (Cars196, "names.csv"),
        (StanfordOnlineProducts, "Stanford_Online_Products/Ebay_train.txt"),
    ],
)
def test_missing_index_file_is_named(tmp_path, cls, expected):
    with pytest.raises(FileNotFoundError, match=f"lacks the index file '{expected}'"):
        cls(tmp_path)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"split": "val"}, ValueError, r"split must be one of \['train', 'test', 'train\+test'\]; got 'val'"),
        ({"transform": "resize"}, TypeError, "transform must be callable or None; got str"),
        ({"download": "no"}, TypeError, "download must be a bool; got str"),
        ({"image_size": 0}, ValueError, "image_size must be >= 1; got 0"),
    ],
)
def test_bad_arguments(roots, kwargs, err, match):
    with pytest.raises(err, match=match):
        CUB200(roots["cub"], **kwargs)


def test_root_must_be_path_like():
    with pytest.raises(TypeError, match="root must be a str, an os.PathLike or None"):
        StanfordOnlineProducts(3)


def test_split_without_images_is_an_error(tmp_path):
    make_cub(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="split 'test' in root .* holds no images"):
        CUB200(tmp_path, split="test")
