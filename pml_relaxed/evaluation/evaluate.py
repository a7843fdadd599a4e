"""Helpers to embed a dataset with a model and to score embeddings by leave-one-out retrieval."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKMeans
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import _validation as v
from .._validation import check_embeddings, check_finite, check_labels
from .backend import evaluation_device, faiss_backend
from .recall_at_k_calculator import RecallAtKCalculator, metric_ks

DEFAULT_METRICS: Tuple[str, ...] = (
    "recall_at_1",
    "recall_at_2",
    "recall_at_4",
    "recall_at_8",
    "mean_average_precision_at_r",
    "r_precision",
    "NMI",
)

_PREFIX = "calculate_"
_BASE_METRICS = tuple(name[len(_PREFIX) :] for name in dir(AccuracyCalculator) if name.startswith(_PREFIX))


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {type(value).__name__}")
    return value


def evaluate_embeddings(
    embeddings: Union[torch.Tensor, np.ndarray],
    labels: Union[torch.Tensor, np.ndarray],
    metrics: Sequence[str] = DEFAULT_METRICS,
    normalize: bool = False,
    device: Optional[Union[str, torch.device]] = None,
) -> Dict[str, float]:
    """Scores embeddings by leave-one-out retrieval: every sample queries all the others.

    Recall@K (any ``"recall_at_K"`` name) is the fraction of queries with a same-class item among
    their K nearest neighbours (Euclidean; pass ``normalize=True`` for cosine). Other names are
    PML ``AccuracyCalculator`` metrics: ``precision_at_1``, ``mean_average_precision_at_r``,
    ``r_precision``, ``mean_average_precision``, ``mean_reciprocal_rank``, ``NMI``, ``AMI``
    (k-means with one cluster per class, faiss seed fixed). Classes with a single sample are left
    out of the retrieval metrics, as in PML.

    FAISS runs on the GPU (PML's FAISS GPU index and GPU k-means) where torch sees a CUDA device and
    FAISS is a GPU build (the ``[gpu]`` extra), else on the CPU, saying why once on the
    ``pml_relaxed.evaluation.backend`` logger; ``faiss_backend(device)`` returns the one used
    (``"gpu"`` or ``"cpu"``). The GPU gives the CPU's neighbours (exact search; distance ties and
    float rounding aside), and k-means (NMI, AMI) may end in a slightly different clustering.

    Args:
        embeddings: ``(N, D)`` float tensor or array.
        labels: ``(N,)`` integer class labels.
        metrics: metric names to compute.
        normalize: L2-normalise the embeddings first.
        device: None (automatic: the GPU where available, as above), ``"cpu"`` (always the CPU, as
            before this option existed), or a CUDA device.

    Returns:
        ``{metric_name: value}`` with float values, in the order of ``metrics``.

    Raises:
        TypeError: inputs that are not tensors/arrays, non-float embeddings, ``metrics`` not a
            tuple/list of str, a ``device`` that is not None, a str or a ``torch.device``.
        ValueError: non-2D embeddings, a label count different from N, non-finite embeddings,
            an unknown or empty ``metrics``, an unknown device string.

    Examples:
        >>> import torch
        >>> emb, labels = torch.tensor([[0.0], [0.1], [5.0], [5.2]]), torch.tensor([0, 0, 1, 1])
        >>> evaluate_embeddings(emb, labels, metrics=("recall_at_1",), device="cpu"), faiss_backend("cpu")
        ({'recall_at_1': 1.0}, 'cpu')
    """
    embeddings = check_embeddings("embeddings", _as_tensor("embeddings", embeddings), "(N, dim)")
    labels = check_labels("labels", _as_tensor("labels", labels), embeddings.shape[0], "embeddings")
    check_finite("embeddings", embeddings)
    if isinstance(metrics, str) or not isinstance(metrics, (tuple, list)):
        raise TypeError(f"metrics must be a tuple of metric names; got {type(metrics).__name__} ({metrics!r})")
    if len(metrics) == 0:
        raise ValueError("metrics must name at least one metric; got an empty sequence")
    ks = metric_ks(metrics)
    unknown = [m for m in metrics if m not in ks and m not in _BASE_METRICS]
    if unknown:
        raise ValueError(
            f"metrics has unknown name(s) {unknown}; expected 'recall_at_K' (K >= 1) or one of {sorted(_BASE_METRICS)}"
        )
    device = evaluation_device(device)
    embeddings = embeddings.detach().float().to(device)
    labels = labels.detach().to(device)
    if normalize:
        embeddings = F.normalize(embeddings, p=2, dim=1)
    calculator = RecallAtKCalculator(
        ks=tuple(ks.values()) or (1,),
        include=tuple(metrics),
        k="max_bin_count",
        device=device,
        kmeans_func=FaissKMeans(niter=20, gpu=faiss_backend(device) == "gpu", seed=1234),
    )
    results = calculator.get_accuracy(embeddings, labels, embeddings, labels, True)
    return {name: float(results[name]) for name in metrics}


def _split_batch(batch: Any) -> Tuple[Any, Optional[torch.Tensor]]:
    if isinstance(batch, (tuple, list)) and len(batch) > 0 and not isinstance(batch[0], str):
        return batch[0], (batch[1] if len(batch) >= 2 else None)
    return batch, None


def compute_embeddings(
    model: Callable[[Any], torch.Tensor],
    dataset_or_loader: Union[Dataset, DataLoader],
    batch_size: int = 256,
    device: Union[str, torch.device] = "cpu",
    collate_fn: Optional[Callable[[list], Any]] = None,
    show_progress: bool = True,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Runs ``model`` over a dataset in eval mode under ``no_grad`` and gathers the outputs.

    Each batch is either ``(inputs, labels, ...)`` (extra fields are ignored), ``(inputs,)`` or
    bare inputs (a tensor, or a list of str).
    Tensor inputs are moved to ``device``; other inputs (e.g. a list of str for a text model)
    are passed as they are. The model's train/eval mode is restored afterwards.

    Args:
        model: an ``nn.Module`` (or any callable) mapping a batch of inputs to ``(B, D)``.
        dataset_or_loader: a map-style ``Dataset`` (wrapped in a non-shuffling ``DataLoader``) or
            a ``DataLoader`` used as is.
        batch_size: batch size when a dataset is given, >= 1.
        device: device for the tensor inputs (the model must already be there).
        collate_fn: collate function when a dataset is given, e.g. a ``TextCollator``.
        show_progress: show a tqdm progress bar.

    Returns:
        ``(embeddings, labels)``: ``(N, D)`` float tensor on CPU, and the ``(N,)`` labels on CPU
        (``None`` when the batches carry no labels).

    Raises:
        TypeError: ``model`` not callable, ``dataset_or_loader`` not a Dataset/DataLoader, a
            non-int ``batch_size``, or a model output that is not a 2D tensor.
        ValueError: ``batch_size < 1`` or an empty dataset.
    """
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module); got {type(model).__name__}")
    v.check_int("batch_size", batch_size, 1)
    if isinstance(dataset_or_loader, DataLoader):
        loader = dataset_or_loader
    elif hasattr(dataset_or_loader, "__getitem__") and hasattr(dataset_or_loader, "__len__"):
        loader = DataLoader(dataset_or_loader, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    else:
        raise TypeError(
            f"dataset_or_loader must be a map-style Dataset or a DataLoader; got {type(dataset_or_loader).__name__}"
        )
    device = torch.device(device)
    was_training = getattr(model, "training", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
    outputs, all_labels = [], []
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="embedding", disable=not show_progress, leave=False):
                inputs, labels = _split_batch(batch)
                if isinstance(inputs, torch.Tensor):
                    inputs = inputs.to(device)
                out = model(inputs)
                if not isinstance(out, torch.Tensor) or out.ndim != 2:
                    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise TypeError(f"model must return a 2D (batch, dim) tensor; got {shape}")
                outputs.append(out.detach().float().cpu())
                if labels is not None:
                    all_labels.append(torch.as_tensor(labels).cpu())
    finally:
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()
    if not outputs:
        raise ValueError("dataset_or_loader yielded no batches; expected at least one sample")
    embeddings = torch.cat(outputs)
    labels_out = torch.cat(all_labels) if len(all_labels) == len(outputs) else None
    return embeddings, labels_out
