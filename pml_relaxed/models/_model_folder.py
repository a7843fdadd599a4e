"""Reading and writing a model folder: JSON configuration, safetensors weights, sentence-transformers metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]

#: The weights file of a saved model (the name sentence-transformers and the Hugging Face hub expect).
WEIGHTS_NAME = "model.safetensors"
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


def save_weights(module: torch.nn.Module, folder: Path) -> None:
    """Writes the module's state dict (CPU, contiguous copies) to ``folder/model.safetensors``."""
    state = {key: value.detach().to("cpu").contiguous() for key, value in module.state_dict().items()}
    _safetensors_torch().save_file(state, str(folder / WEIGHTS_NAME))


def load_weights(module: torch.nn.Module, folder: Path) -> None:
    """Loads ``folder/model.safetensors`` into ``module`` (every key must match)."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist: is {str(folder)!r} a saved model folder?")
    state = _safetensors_torch().load_file(str(path))
    module.load_state_dict(state, strict=True)


def write_sentence_transformers_metadata(folder: Path, module_type: str) -> None:
    """Writes ``modules.json`` and ``config_sentence_transformers.json`` for a one-module model saved in ``folder``.

    ``module_type`` is the import path of the module class, which ``SentenceTransformer(folder)`` imports
    (sentence-transformers >= 6 asks for ``trust_remote_code=True`` before importing a class from outside
    its own package, even an installed one; the folder holds no code).
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
