"""Default dataset folders: an environment variable or the user cache, never the source tree; clear errors."""

from __future__ import annotations

import io
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import pml_relaxed
from pml_relaxed import datasets
from pml_relaxed.datasets import CUB200, Banking77, Omniglot, default_root
from pml_relaxed.datasets.data_root import resolve_root

VARIABLES = ("PML_RELAXED_DATA", "PML_RELAXED_OMNIGLOT", "PML_RELAXED_BANKING77", "XDG_CACHE_HOME")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No dataset variable set, and a home folder of our own."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_resolution_order(clean_env, monkeypatch):
    home = clean_env / "home"
    assert default_root("omniglot", "PML_RELAXED_OMNIGLOT") == home / ".cache" / "pml_relaxed" / "omniglot"
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "xdg"))
    assert default_root("omniglot", "PML_RELAXED_OMNIGLOT") == clean_env / "xdg" / "pml_relaxed" / "omniglot"
    monkeypatch.setenv("PML_RELAXED_DATA", str(clean_env / "data"))
    assert default_root("omniglot", "PML_RELAXED_OMNIGLOT") == clean_env / "data" / "omniglot"
    assert default_root("cub200") == clean_env / "data" / "cub200"
    monkeypatch.setenv("PML_RELAXED_OMNIGLOT", str(clean_env / "mine"))
    assert default_root("omniglot", "PML_RELAXED_OMNIGLOT") == clean_env / "mine"
    assert default_root("banking77", "PML_RELAXED_BANKING77") == clean_env / "data" / "banking77"
    assert resolve_root(clean_env / "given", "omniglot", "PML_RELAXED_OMNIGLOT") == (clean_env / "given", "root=")


def test_default_is_never_inside_the_package(clean_env):
    package = Path(pml_relaxed.__file__).resolve().parent
    for name, env_var in (("omniglot", "PML_RELAXED_OMNIGLOT"), ("banking77", "PML_RELAXED_BANKING77")):
        root = default_root(name, env_var)
        assert package not in root.parents and package.parent not in root.parents


def test_default_root_constants_follow_the_environment(clean_env, monkeypatch):
    monkeypatch.setenv("PML_RELAXED_DATA", str(clean_env / "a"))
    assert datasets.DEFAULT_OMNIGLOT_ROOT == clean_env / "a" / "omniglot"
    monkeypatch.setenv("PML_RELAXED_BANKING77", str(clean_env / "b"))
    assert datasets.DEFAULT_BANKING77_ROOT == clean_env / "b"
    assert datasets.banking77.DEFAULT_BANKING77_ROOT == clean_env / "b"
    with pytest.raises(AttributeError, match="has no attribute 'DEFAULT_CUB_ROOT'"):
        datasets.DEFAULT_CUB_ROOT  # noqa: B018


def test_missing_banking77_says_where_it_looked_and_where_the_data_is(clean_env, monkeypatch):
    monkeypatch.setenv("PML_RELAXED_DATA", str(clean_env / "data"))
    expected = str(clean_env / "data" / "banking77")
    with pytest.raises(FileNotFoundError) as error:
        Banking77()
    message = str(error.value)
    assert f"Banking77 root {expected!r} (from $PML_RELAXED_DATA/banking77) does not exist" in message
    assert "https://github.com/PolyAI-LDN/task-specific-datasets/tree/master/banking_data" in message
    assert "set PML_RELAXED_BANKING77 or PML_RELAXED_DATA" in message


def test_missing_omniglot_offers_the_download(clean_env):
    with pytest.raises(FileNotFoundError) as error:
        Omniglot()
    message = str(error.value)
    cache = clean_env / "home" / ".cache" / "pml_relaxed" / "omniglot"
    assert f"Omniglot root {str(cache)!r} (from the user cache folder" in message
    assert "https://github.com/brendenlake/omniglot/raw/master/python" in message and "download=True" in message


def test_missing_cub_names_pml_download_and_the_source(clean_env):
    with pytest.raises(
        FileNotFoundError,
        match=r"CUB200 root .*cub200' \(from the user cache folder.*download=True "
        r"lets PML fetch it.*data\.caltech\.edu",
    ):
        CUB200()


def _tiny_omniglot_zip(path: Path, top: str, characters: int = 2) -> None:
    alphabet = f"Alphabet_{top[-1]}"  # one alphabet per zip: no class shared by the two splits
    with zipfile.ZipFile(path, "w") as archive:
        for c in range(characters):
            for k in range(3):
                buffer = io.BytesIO()
                Image.new("L", (105, 105), color=255 if k else 0).save(buffer, format="PNG")
                archive.writestr(f"{top}/{alphabet}/character{c:02d}/{c:02d}_{k}.png", buffer.getvalue())


def test_omniglot_download_goes_through_torchvision(clean_env, monkeypatch):
    calls = []

    def download_url(url, root, filename):  # torchvision.datasets.utils.download_url, without the internet
        calls.append((url, Path(root), filename))
        Path(root).mkdir(parents=True, exist_ok=True)
        _tiny_omniglot_zip(Path(root) / filename, filename[: -len(".zip")])

    utils = types.ModuleType("torchvision.datasets.utils")
    utils.download_url = download_url
    for name, module in (
        ("torchvision", types.ModuleType("torchvision")),
        ("torchvision.datasets", types.ModuleType("torchvision.datasets")),
        ("torchvision.datasets.utils", utils),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    root = clean_env / "omni"
    train = Omniglot(root, split="train", download=True)
    assert calls == [
        (
            "https://github.com/brendenlake/omniglot/raw/master/python/images_background_small1.zip",
            root,
            "images_background_small1.zip",
        )
    ]
    assert len(train) == 6 and train.num_classes == 2
    Omniglot(root, split="train", download=True)  # present: not downloaded again
    assert len(calls) == 1
    shutil.rmtree(root)
    test = Omniglot(root, split="test", download=True, drop_overlap=True)  # it also needs the train zip
    assert [c[2] for c in calls[1:]] == ["images_background_small2.zip", "images_background_small1.zip"]
    assert test.class_names == ["Alphabet_2/character00", "Alphabet_2/character01"]


def test_omniglot_download_without_torchvision_says_what_to_install(clean_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"uses torchvision's downloader.*pip install 'pml-relaxed\[vision\]'"):
        Omniglot(clean_env / "omni", download=True)
    with pytest.raises(TypeError, match="download must be a bool; got str"):
        Omniglot(clean_env / "omni", download="yes")
