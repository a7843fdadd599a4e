"""Reading and writing a model folder: JSON configuration, safetensors weights, sentence-transformers metadata.

Loading reads JSON and safetensors only: nothing in a folder is imported, executed or unpickled.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Dict, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

#: The weights file of a saved model (the name sentence-transformers and the Hugging Face hub expect).
WEIGHTS_NAME = "model.safetensors"
#: The configuration file of a saved model: ``{"class": <class name>, "config": <constructor arguments>}``.
CONFIG_NAME = "pml_relaxed_config.json"
_SAFETENSORS_HINT = "install it with `pip install safetensors` (part of `pip install pml-relaxed[text]`)"


def check_folder_path(name: str, path: object) -> Path:
    """Returns ``path`` as a :class:`Path`; raises TypeError for anything but a str or a path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or a path; got {type(path).__name__}")
    return Path(path).expanduser()


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch
    except ImportError as err:
        raise ImportError(f"saving and loading models needs safetensors: {_SAFETENSORS_HINT}") from err
    return safetensors.torch


def write_json(path: Path, content: Dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: is {str(path.parent)!r} a saved model folder?")
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    if not isinstance(content, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object; got {type(content).__name__}")
    return content


def write_config(folder: Path, model: torch.nn.Module, config: Dict[str, Any]) -> None:
    """Writes ``folder/pml_relaxed_config.json``: the model's class name and its constructor arguments ``config``."""
    write_json(folder / CONFIG_NAME, {"class": type(model).__name__, "config": config})


def read_config(folder: Path, cls: type) -> Dict[str, Any]:
    """The constructor arguments stored by :func:`write_config` for a model of class ``cls``.

    Raises:
        FileNotFoundError: the folder has no ``pml_relaxed_config.json``.
        ValueError: the file does not describe a ``cls`` or names arguments ``cls`` does not take.
    """
    path = folder / CONFIG_NAME
    saved = read_json(path)
    config = saved.get("config")
    if saved.get("class") != cls.__name__ or not isinstance(config, dict):
        raise ValueError(
            f"{str(path)!r} must describe a {cls.__name__} (keys 'class' and 'config'); "
            f"got class {saved.get('class')!r}"
        )
    unknown = sorted(set(config) - set(inspect.signature(cls.__init__).parameters) - {"self"})
    if unknown:
        raise ValueError(f"{str(path)!r} has unknown {cls.__name__} arguments {unknown}")
    return config


def save_weights(module: torch.nn.Module, folder: Path) -> None:
    """Writes the module's state dict (CPU, contiguous copies) to ``folder/model.safetensors``."""
    state = {key: value.detach().to("cpu").contiguous() for key, value in module.state_dict().items()}
    _safetensors_torch().save_file(state, str(folder / WEIGHTS_NAME))


def read_weights(folder: Path) -> Dict[str, torch.Tensor]:
    """The tensors of ``folder/model.safetensors`` (on the CPU); no other weights file is ever read.

    Raises:
        FileNotFoundError: the folder has no ``model.safetensors`` (a pickled ``pytorch_model.bin`` does not count).
    """
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: is {str(folder)!r} a saved model folder?")
    return _safetensors_torch().load_file(str(path))


def load_weights(module: torch.nn.Module, folder: Path) -> None:
    """Loads ``folder/model.safetensors`` into ``module`` (every key must match)."""
    module.load_state_dict(read_weights(folder), strict=True)


def write_sentence_transformers_metadata(folder: Path, module_type: str) -> None:
    """Writes ``modules.json`` and ``config_sentence_transformers.json`` for a one-module model saved in ``folder``.

    ``module_type`` is the import path of the module class. ``SentenceTransformer(folder, trust_remote_code=True)``
    imports whatever class ``modules.json`` names, a ``modeling_*.py`` placed in the folder included, so that
    route is for folders one trusts; the library's own loaders never read ``modules.json``.
    """
    from .. import __version__

    modules = [{"idx": 0, "name": "0", "path": "", "type": module_type}]
    with open(folder / "modules.json", "w", encoding="utf-8") as f:
        json.dump(modules, f, indent=2)
        f.write("\n")
    write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "__version__": {"pml_relaxed": __version__, "pytorch": torch.__version__},
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
