"""Omniglot loader on the real shared zips (background small1 / small2)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from pml_relaxed.datasets.omniglot import Omniglot


def test_train_split_sizes_and_tensors(omniglot_train):
    ds = omniglot_train
    assert len(ds) == 2720
    assert ds.num_classes == 136
    assert ds.images.shape == (2720, 1, 28, 28)
    assert ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.long
    assert torch.equal(torch.bincount(ds.labels), torch.full((136,), 20))
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0


def test_test_split_drops_characters_shared_with_train(omniglot_train, omniglot_test):
    ds = omniglot_test
    assert len(ds) == 2120
    assert ds.num_classes == 106
    assert torch.equal(torch.bincount(ds.labels), torch.full((106,), 20))
    assert not set(omniglot_train.class_names) & set(ds.class_names)
    alphabets = {n.split("/")[0] for n in ds.class_names}
    assert alphabets == {"Japanese_(katakana)", "Sanskrit", "Tagalog"}


def test_the_two_zips_really_share_greek_and_latin(omniglot_root, omniglot_train):
    full = Omniglot.list_classes(omniglot_root, "test", drop_overlap=False)
    assert len(full) == 156
    shared = set(full) & set(omniglot_train.class_names)
    assert {n.split("/")[0] for n in shared} == {"Greek", "Latin"} and len(shared) == 50
    names = [f"images_background_small{i}/Greek/character01/0394_01.png" for i in (1, 2)]
    blobs = []
    for i, name in zip((1, 2), names):
        with zipfile.ZipFile(omniglot_root / f"images_background_small{i}.zip") as z:
            blobs.append(z.read(name))
    assert blobs[0] == blobs[1]


def test_test_split_can_keep_all_156_characters(omniglot_root):
    names = Omniglot.list_classes(omniglot_root, "test", drop_overlap=False)
    greek = [i for i, n in enumerate(names) if n.startswith("Greek/")][:2]
    ds = Omniglot(omniglot_root, "test", classes=greek, drop_overlap=False)
    assert ds.class_names == ["Greek/character01", "Greek/character02"]
    assert len(ds) == 40


def test_drop_overlap_needs_the_train_zip(omniglot_root, tmp_path):
    (tmp_path / "images_background_small2.zip").symlink_to(omniglot_root / "images_background_small2.zip")
    with pytest.raises(FileNotFoundError, match=r"images_background_small1\.zip.*does not exist"):
        Omniglot.list_classes(tmp_path, "test")
    assert len(Omniglot.list_classes(tmp_path, "test", drop_overlap=False)) == 156


def test_class_names_sorted_and_labels_follow_them(omniglot_train):
    names = omniglot_train.class_names
    assert names == sorted(names) and len(set(names)) == len(names)
    assert names == Omniglot.list_classes(omniglot_train.root, "train")
    assert torch.equal(omniglot_train.labels.unique(), torch.arange(136))
    assert bool((omniglot_train.labels[1:] >= omniglot_train.labels[:-1]).all())


def test_strokes_are_one_and_background_zero(omniglot_root):
    ds = Omniglot(omniglot_root, "train", image_size=105, classes=[0])
    with zipfile.ZipFile(omniglot_root / "images_background_small1.zip") as z:
        prefix = f"images_background_small1/{ds.class_names[0]}/"
        first = sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(".png"))[0]
        raw = np.asarray(Image.open(io.BytesIO(z.read(first))).convert("L"), dtype=np.float32)
    expected = 1.0 - torch.from_numpy(raw) / 255.0
    assert torch.equal(ds.images[0, 0], expected)
    assert float(ds.images.mean()) < 0.3  # mostly background


def test_getitem_returns_image_and_int_label(omniglot_train):
    image, label = omniglot_train[25]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int) and label == 1
    assert torch.equal(image, omniglot_train.images[25])


def test_transform_is_applied_in_getitem(omniglot_root):
    ds = Omniglot(omniglot_root, "train", classes=[3], transform=lambda x: x.flip(-1) + 2.0)
    image, _ = ds[0]
    assert torch.equal(image, ds.images[0].flip(-1) + 2.0)


def test_image_size_resizes(omniglot_root):
    ds = Omniglot(omniglot_root, "test", image_size=14, classes=[0, 1])
    assert ds.class_names == Omniglot.list_classes(omniglot_root, "test")[:2]
    assert ds.images.shape == (40, 1, 14, 14)


def test_classes_subset_is_relabelled_contiguously(omniglot_root, omniglot_train):
    ds = Omniglot(omniglot_root, "train", classes=[7, 2])
    assert ds.class_ids == [2, 7]
    assert ds.class_names == [omniglot_train.class_names[2], omniglot_train.class_names[7]]
    assert torch.equal(ds.labels, torch.tensor([0] * 20 + [1] * 20))
    rows = (omniglot_train.labels == 2) | (omniglot_train.labels == 7)
    assert torch.equal(ds.images, omniglot_train.images[rows])


def test_class_split_is_disjoint_complete_and_seeded(omniglot_root):
    train_ids, val_ids = Omniglot.class_split(omniglot_root, num_val_classes=20, seed=3)
    assert len(val_ids) == 20 and len(train_ids) == 116
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == list(range(136))
    assert Omniglot.class_split(omniglot_root, 20, seed=3) == (train_ids, val_ids)
    assert Omniglot.class_split(omniglot_root, 20, seed=4)[1] != val_ids
    val = Omniglot(omniglot_root, "train", classes=val_ids)
    assert val.num_classes == 20 and len(val) == 400


@pytest.mark.parametrize(
    "num_val, err, match",
    [
        (0, ValueError, r"num_val_classes must be in \[1, 135\]"),
        (136, ValueError, "got 136"),
        (2.5, TypeError, "num_val_classes must be an int"),
    ],
)
def test_class_split_rejects_bad_sizes(omniglot_root, num_val, err, match):
    with pytest.raises(err, match=match):
        Omniglot.class_split(omniglot_root, num_val)


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"nope.*does not exist.*images_background_small1\.zip"):
        Omniglot(missing)


def test_missing_zip_names_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images_background_small2\.zip.*does not exist"):
        Omniglot(tmp_path, split="test")


def test_zip_with_wrong_layout_is_rejected(tmp_path):
    with zipfile.ZipFile(tmp_path / "images_background_small1.zip", "w") as z:
        z.writestr("flat.png", b"not an image")
    with pytest.raises(ValueError, match="holds no images laid out as"):
        Omniglot(tmp_path)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"split": "val"}, ValueError, r"split must be one of \['test', 'train'\]; got 'val'"),
        ({"image_size": 0}, ValueError, "image_size must be >= 1; got 0"),
        ({"image_size": "28"}, TypeError, "image_size must be an int"),
        ({"transform": 3}, TypeError, "transform must be callable"),
        ({"classes": [136]}, ValueError, r"out-of-range ids \[136\]"),
        ({"classes": []}, ValueError, "at least one class id"),
        ({"classes": [1, 1]}, ValueError, "must not repeat"),
        ({"classes": ["a"]}, TypeError, "classes must hold int class ids"),
        ({"classes": 5}, TypeError, "classes must be a sequence"),
    ],
)
def test_bad_arguments_raise(omniglot_root, kwargs, err, match):
    with pytest.raises(err, match=match):
        Omniglot(omniglot_root, **kwargs)
