"""Shared fixtures: the real Omniglot / Banking77 data from ``$PML_RELAXED_DATA`` (never downloaded).

tests/conftest.py points PML_RELAXED_DATA at the checkout's sibling folder ../shared/datasets unless it is set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pml_relaxed.datasets import Omniglot, default_root


def _require(path: Path, env_var: str, files: tuple) -> Path:
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        pytest.fail(
            f"shared dataset folder {str(path)!r} is missing {missing}: the tests need the repo's "
            f"sibling folder ../shared/datasets (or PML_RELAXED_DATA, or {env_var}, pointing at the data)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    return _require(
        default_root("omniglot", "PML_RELAXED_OMNIGLOT"),
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
        default_root("banking77", "PML_RELAXED_BANKING77"),
        "PML_RELAXED_BANKING77",
        ("train.csv", "test.csv", "categories.json"),
    )
