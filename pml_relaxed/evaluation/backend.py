"""Which FAISS backend ("gpu" or "cpu") the evaluation runs on, with a one-time note when it falls back to CPU."""

from __future__ import annotations

import logging
from typing import Optional, Set, Tuple, Union

import faiss
import torch

from .._validation import check_optional_device

LOGGER = logging.getLogger(__name__)
_NOTED: Set[Tuple[int, str]] = set()  # (level, reason) notes already logged in this process

_NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"
_NO_FAISS_GPU = (
    "this FAISS build has no GPU support (faiss.get_num_gpus() == 0); install the FAISS GPU build with "
    "pip install 'pml-relaxed[gpu]' (faiss-gpu; if faiss-cpu's files were written over it, "
    "pip install --force-reinstall --no-deps faiss-gpu)"
)


def faiss_gpu_count() -> int:
    """The number of GPUs FAISS sees (0 for a CPU-only build such as faiss-cpu)."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return int(get_num_gpus()) if get_num_gpus is not None else 0


def faiss_backend(device: Optional[Union[str, torch.device]] = None) -> str:
    """The FAISS backend that evaluation on ``device`` uses: ``"gpu"`` or ``"cpu"``.

    ``"gpu"`` exactly when the device is None (automatic) or a CUDA device, torch sees a CUDA
    device (``torch.cuda.is_available()``) and FAISS is a GPU build (``faiss.get_num_gpus() > 0``);
    ``"cpu"`` otherwise, in particular for ``device="cpu"``. This is what
    :func:`~pml_relaxed.evaluation.evaluate_embeddings` (``device=``), :class:`RecallAtKCalculator`
    (its default ``knn_func`` and ``kmeans_func``) and the benchmark (``--device``, recorded as
    ``hparams["faiss_backend"]``) run on. Nothing is logged.

    Note that PML's ``FaissKNN`` itself runs a search with more than 2048 neighbours per query on
    the CPU (with its own warning), since FAISS GPU indexes cap k there.

    Args:
        device: None (automatic), or a ``torch.device`` / device string such as ``"cpu"``, ``"cuda:0"``.

    Returns:
        ``"gpu"`` or ``"cpu"``.

    Raises:
        TypeError: a ``device`` that is not None, a str or a ``torch.device``.
        ValueError: a device string torch does not know.

    Examples:
        >>> faiss_backend("cpu")
        'cpu'
        >>> faiss_backend() in ("cpu", "gpu")
        True
    """
    device = check_optional_device("device", device)
    if device is not None and device.type != "cuda":
        return "cpu"
    return "gpu" if torch.cuda.is_available() and faiss_gpu_count() > 0 else "cpu"


def evaluation_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """The torch device evaluation on ``device`` puts its tensors on, noting once why FAISS runs on the CPU.

    None (automatic): CUDA when :func:`faiss_backend` is ``"gpu"``, else the CPU. A given device is
    kept, except a CUDA device on a machine where torch sees none, which falls back to the CPU.
    When evaluation that could use the GPU, or was asked to, runs FAISS on the CPU, the reason is
    logged once per process on the ``pml_relaxed.evaluation.backend`` logger: a WARNING for a FAISS
    build without GPU support beside CUDA, or for a CUDA ``device`` without CUDA; an INFO on a
    machine without CUDA evaluated automatically. ``device="cpu"`` logs nothing.
    """
    device = check_optional_device("device", device)
    if faiss_backend(device) == "gpu":
        return device if device is not None else torch.device("cuda")
    if device is not None and device.type != "cuda":
        return device
    if torch.cuda.is_available():
        _note_once(logging.WARNING, _NO_FAISS_GPU)
        return device if device is not None else torch.device("cpu")
    _note_once(logging.INFO if device is None else logging.WARNING, _NO_CUDA)
    return torch.device("cpu")


def _note_once(level: int, reason: str) -> None:
    if (level, reason) not in _NOTED:
        _NOTED.add((level, reason))
        LOGGER.log(level, "FAISS evaluation runs on the CPU: %s", reason)
