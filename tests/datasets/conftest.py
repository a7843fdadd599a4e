"""Shared fixtures: the real Omniglot / Banking77 data from ``../shared/datasets`` (never downloaded)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pml_relaxed.datasets.banking77 import DEFAULT_BANKING77_ROOT
from pml_relaxed.datasets.omniglot import DEFAULT_OMNIGLOT_ROOT, Omniglot


def _require(path: Path, env_var: str, files: tuple) -> Path:
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        pytest.fail(
            f"shared dataset folder {str(path)!r} is missing {missing}: the tests need the repo's "
            f"sibling folder ../shared/datasets (or {env_var} pointing at the data)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    return _require(
        DEFAULT_OMNIGLOT_ROOT,
        "PML_RELAXED_OMNIGLOT",
        ("images_background_small1.zip", "images_background_small2.zip"),
    )


@pytest.fixture(scope="session")
def omniglot_train(omniglot_root: Path) -> Omniglot:
    return Omniglot(omniglot_root, split="train")


@pytest.fixture(scope="session")
def omniglot_test(omniglot_root: Path) -> Omniglot:
    return Omniglot(omniglot_root, split="test")


@pytest.fixture(scope="session")
def banking77_root() -> Path:
    return _require(
        DEFAULT_BANKING77_ROOT, "PML_RELAXED_BANKING77", ("train.csv", "test.csv", "categories.json")
    )
