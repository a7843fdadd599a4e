"""Banking77 class-disjoint splits on the real shared CSVs (expected counts recomputed here)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from pml_relaxed.datasets.banking77 import NUM_TRAIN_INTENTS, Banking77


@pytest.fixture(scope="module")
def reference(banking77_root):
    """Independent reading: categories and (text, category) rows of both CSVs."""
    categories = json.loads((banking77_root / "categories.json").read_text(encoding="utf-8"))
    rows = {}
    for split in ("train", "test"):
        with open(banking77_root / f"{split}.csv", newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            assert next(reader) == ["text", "category"]
            rows[split] = [tuple(r) for r in reader]
    return categories, rows


def test_shared_files_have_the_documented_sizes(reference):
    categories, rows = reference
    assert len(categories) == 77 and NUM_TRAIN_INTENTS == 39
    assert len(rows["train"]) == 10003 and len(rows["test"]) == 3080


def test_train_split_holds_only_the_first_39_intents(banking77_root, reference):
    categories, rows = reference
    ds = Banking77(banking77_root, split="train")
    expected = [(t.strip(), c) for t, c in rows["train"] if c in categories[:39]]
    assert ds.intents == categories[:39]
    assert len(ds) == len(expected)
    assert [(text, ds.intents[y]) for text, y in zip(ds.texts, ds.labels.tolist())] == expected


def test_test_split_holds_only_the_other_38_intents(banking77_root, reference):
    categories, rows = reference
    ds = Banking77(banking77_root, split="test")
    expected = [(t.strip(), c) for t, c in rows["test"] if c in categories[39:]]
    assert ds.intents == categories[39:] and ds.num_classes == 38
    assert len(ds) == len(expected)
    assert [(text, ds.intents[y]) for text, y in zip(ds.texts, ds.labels.tolist())] == expected


@pytest.mark.parametrize("split, num_val", [("train", 0), ("test", 0), ("train", 8), ("val", 8)])
def test_labels_are_contiguous(banking77_root, split, num_val):
    ds = Banking77(banking77_root, split=split, num_val_classes=num_val)
    assert ds.labels.dtype == torch.long
    assert torch.equal(ds.labels.unique(), torch.arange(ds.num_classes))


def test_train_val_test_are_class_disjoint(banking77_root, reference):
    categories, rows = reference
    train = Banking77(banking77_root, "train", num_val_classes=8, seed=1)
    val = Banking77(banking77_root, "val", num_val_classes=8, seed=1)
    test = Banking77(banking77_root, "test")
    assert train.num_classes == 31 and val.num_classes == 8
    assert not set(train.intents) & set(val.intents)
    assert not (set(train.intents) | set(val.intents)) & set(test.intents)
    assert sorted(train.intents + val.intents) == sorted(categories[:39])
    n_first = sum(c in categories[:39] for _, c in rows["train"])
    assert len(train) + len(val) == n_first
    assert set(val.texts) <= {t.strip() for t, _ in rows["train"]}


def test_val_intents_depend_on_seed_only(banking77_root):
    a = Banking77(banking77_root, "val", num_val_classes=5, seed=0)
    b = Banking77(banking77_root, "val", num_val_classes=5, seed=0)
    c = Banking77(banking77_root, "val", num_val_classes=5, seed=1)
    assert a.intents == b.intents and a.intents != c.intents


def test_quoted_commas_survive_and_texts_are_stripped(banking77_root):
    ds = Banking77(banking77_root, "train")
    assert any("," in t for t in ds.texts)
    assert all(t == t.strip() for t in ds.texts)


def test_getitem(banking77_root):
    ds = Banking77(banking77_root, "test")
    text, label = ds[3]
    assert text == ds.texts[3] and isinstance(label, int) and label == int(ds.labels[3])


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"split": "dev"}, ValueError, r"split must be one of \['train', 'val', 'test'\]; got 'dev'"),
        ({"split": "val"}, ValueError, "split='val' needs num_val_classes >= 1"),
        ({"num_val_classes": 39}, ValueError, r"num_val_classes must be in \[0, 38\]; got 39"),
        ({"num_val_classes": -1}, ValueError, r"num_val_classes must be in \[0, 38\]; got -1"),
        ({"num_val_classes": "3"}, TypeError, "num_val_classes must be an int; got str"),
        ({"seed": 1.0}, TypeError, "seed must be an int; got float"),
    ],
)
def test_bad_arguments(banking77_root, kwargs, err, match):
    with pytest.raises(err, match=match):
        Banking77(banking77_root, **kwargs)


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Banking77 root .*absent.* does not exist.*train\.csv"):
        Banking77(tmp_path / "absent")


def _write(root: Path, categories, header="text,category", body="hello,a\n") -> None:
    (root / "categories.json").write_text(json.dumps(categories))
    (root / "train.csv").write_text(f"{header}\n{body}")


def test_missing_file_names_the_path(tmp_path):
    _write(tmp_path, [f"c{i}" for i in range(77)])
    with pytest.raises(FileNotFoundError, match=r"split 'test' needs the file .*test\.csv"):
        Banking77(tmp_path, split="test")


def test_malformed_files_are_rejected(tmp_path):
    names = [f"c{i}" for i in range(77)]
    _write(tmp_path, names[:10])
    with pytest.raises(ValueError, match="more than 39 distinct intent names; got list of length 10"):
        Banking77(tmp_path)
    _write(tmp_path, names, header="sentence,label")
    with pytest.raises(ValueError, match=r"columns text,category; got \['sentence', 'label'\]"):
        Banking77(tmp_path)
    _write(tmp_path, names, body='"hi, there",unknown_intent\n')
    with pytest.raises(ValueError, match=r"intents missing from categories.json: \['unknown_intent'\]"):
        Banking77(tmp_path)
