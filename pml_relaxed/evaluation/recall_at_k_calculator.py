"""PML's AccuracyCalculator plus Recall@K as defined in metric-learning papers."""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from pytorch_metric_learning.utils import accuracy_calculator as pml_ac
from pytorch_metric_learning.utils.inference import FaissKMeans

from .backend import evaluation_device, faiss_backend

_RECALL_PREFIX = "recall_at_"
_RECALL_RE = re.compile(r"^recall_at_(\d+)$")


def recall_at_k(
    knn_labels: torch.Tensor,
    gt_labels: torch.Tensor,
    k: int,
    avg_of_avgs: bool,
    return_per_class: bool,
    label_comparison_fn: Any,
) -> Any:
    """Fraction of queries with at least one relevant item among their ``k`` nearest neighbours.

    Args:
        knn_labels: ``(num_queries, num_neighbours)`` labels of each query's neighbours, nearest
            first, with the query itself already removed. Only the first ``k`` columns are used
            (all of them if there are fewer).
        gt_labels: ``(num_queries, 1)`` query labels.
        k: number of neighbours, >= 1.
        avg_of_avgs: average per class first, then over classes.
        return_per_class: return a list with one value per class.
        label_comparison_fn: ``fn(gt_labels, knn_labels) -> bool tensor``, e.g. ``torch.eq``.

    Returns:
        A float in [0, 1], or a list of floats when ``return_per_class``.
    """
    hits = label_comparison_fn(gt_labels, knn_labels[:, :k])
    accuracy_per_sample = torch.any(hits, dim=1).type(torch.float64)
    return pml_ac.maybe_get_avg_of_avgs(accuracy_per_sample, gt_labels, avg_of_avgs, return_per_class)


def parse_recall_metric(name: str) -> int:
    """Returns K of a ``"recall_at_K"`` metric name, or raises ValueError."""
    match = _RECALL_RE.match(name) if isinstance(name, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"expected a metric name 'recall_at_K' with K >= 1; got {name!r}")
    return int(match.group(1))


def _check_ks(ks: object) -> Tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, (list, tuple)):
        raise TypeError(f"ks must be a tuple of ints >= 1, e.g. (1, 2, 4, 8); got {type(ks).__name__} ({ks!r})")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"ks must hold ints >= 1; got {k!r} ({type(k).__name__}) in {ks!r}")
        if k < 1:
            raise ValueError(f"ks must hold ints >= 1; got {k!r} in {ks!r}")
    return tuple(sorted(set(ks)))


class RecallAtKCalculator(pml_ac.AccuracyCalculator):
    """``AccuracyCalculator`` that also reports ``recall_at_K`` for each K in ``ks``.

    Recall@K is the metric of deep metric learning papers (e.g. on CUB-200, Cars-196, SOP): the
    fraction of queries that have at least one item of their own class among their K nearest
    neighbours in the reference set, the query itself excluded when ``ref_includes_query``.
    Like PML's ``precision_at_1``, queries whose class has no other item in the reference set
    ("lone" queries) are left out, so ``recall_at_1 == precision_at_1``.

    All of PML's metrics stay available (``precision_at_1``, ``mean_average_precision_at_r``,
    ``r_precision``, ``NMI``, ``AMI``, ...), and the calculator plugs into PML testers such as
    ``GlobalEmbeddingSpaceTester(accuracy_calculator=RecallAtKCalculator())``.

    FAISS on the GPU: with ``device=None`` the calculator runs on CUDA with PML's FAISS GPU index
    and GPU k-means where torch sees a CUDA device and FAISS is a GPU build (the ``[gpu]`` extra),
    and on the CPU otherwise, saying why once (see :func:`pml_relaxed.evaluation.faiss_backend`).
    A given ``device`` is used as is (a CUDA one falls back to the CPU where torch sees no CUDA).
    ``calculator.faiss_backend`` (``"gpu"`` or ``"cpu"``) says which one its default ``knn_func``
    and ``kmeans_func`` use; functions you pass are yours.

    Neighbour count: PML retrieves ``k`` neighbours per query. This class defaults to
    ``k="max_bin_count"`` (what MAP@R and R-precision need) and raises the count to ``max(ks)``
    when recall metrics are computed, capped at the number of reference items. The plain
    ``mean_average_precision`` (MAP@k) depends on that count, so set ``k`` explicitly if you use it.

    Args:
        ks: the K values of the ``recall_at_K`` metrics; default ``(1, 2, 4, 8)``.
        include: metric names to compute (default: all), e.g. ``("recall_at_1", "NMI")``.
        exclude: metric names to skip.
        k: PML's neighbour count: an int >= 1, None (all references) or ``"max_bin_count"``.
        device: where the tensors and FAISS run: None (automatic, see above), a ``torch.device`` or a
            device string.
        **kwargs: other ``AccuracyCalculator`` arguments (``avg_of_avgs``, ``return_per_class``,
            ``label_comparison_fn``, ``knn_func``, ``kmeans_func``; the default ``kmeans_func`` is
            PML's ``FaissKMeans(niter=20, gpu=...)`` on the backend above).

    Raises:
        TypeError: ``ks`` is not a tuple/list of ints, ``include``/``exclude`` not a tuple/list, or a
            ``device`` that is not None, a str or a ``torch.device``.
        ValueError: a K < 1, an unknown metric in ``include``/``exclude`` (a ``recall_at_K`` whose
            K is not in ``ks`` says so), a bad ``k``, or an unknown device string.

    Examples:
        >>> import torch
        >>> calc = RecallAtKCalculator(ks=(1, 2), include=("recall_at_1", "recall_at_2"), device=torch.device("cpu"))
        >>> emb = torch.tensor([[0.0], [0.1], [5.0], [5.2]])
        >>> calc.get_accuracy(emb, torch.tensor([0, 0, 1, 1]))
        {'recall_at_1': 1.0, 'recall_at_2': 1.0}
        >>> calc.faiss_backend
        'cpu'
    """

    def __init__(
        self,
        ks: Sequence[int] = (1, 2, 4, 8),
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        k: Any = "max_bin_count",
        device: Optional[Union[str, torch.device]] = None,
        **kwargs: Any,
    ) -> None:
        self.ks = _check_ks(ks)
        for arg_name, names in (("include", include), ("exclude", exclude)):
            if not isinstance(names, (tuple, list)):
                raise TypeError(f"{arg_name} must be a tuple of metric names; got {type(names).__name__}")
            for name in names:
                if isinstance(name, str) and _RECALL_RE.match(name) and parse_recall_metric(name) not in self.ks:
                    raise ValueError(
                        f"{arg_name} names {name!r}, but ks={self.ks} has no K={parse_recall_metric(name)}; "
                        f"pass ks containing {parse_recall_metric(name)}"
                    )
        # AccuracyCalculator discovers metrics as the `calculate_<name>` attributes of the instance,
        # so the recall methods must exist before its __init__ runs.
        for recall_k in self.ks:
            setattr(self, f"calculate_{_RECALL_PREFIX}{recall_k}", partial(self._calculate_recall_at_k, k=recall_k))
        device = evaluation_device(device)
        self.faiss_backend = faiss_backend(device)
        if kwargs.get("kmeans_func") is None:
            kwargs["kmeans_func"] = FaissKMeans(niter=20, gpu=self.faiss_backend == "gpu")
        super().__init__(include=tuple(include), exclude=tuple(exclude), k=k, device=device, **kwargs)

    def recall_metric_names(self) -> List[str]:
        """``["recall_at_K", ...]`` for the K values of this calculator."""
        return [f"{_RECALL_PREFIX}{k}" for k in self.ks]

    def requires_knn(self) -> List[str]:
        return super().requires_knn() + self.recall_metric_names()

    def _calculate_recall_at_k(
        self,
        knn_labels: torch.Tensor,
        query_labels: torch.Tensor,
        not_lone_query_mask: torch.Tensor,
        label_counts: Tuple[torch.Tensor, torch.Tensor],
        k: int,
        **kwargs: Any,
    ) -> Any:
        knn_labels, query_labels = pml_ac.try_getting_not_lone_labels(knn_labels, query_labels, not_lone_query_mask)
        if knn_labels is None:
            return pml_ac.nan_accuracy(label_counts[0], self.return_per_class)
        return recall_at_k(
            knn_labels,
            query_labels[:, None],
            k,
            self.avg_of_avgs,
            self.return_per_class,
            self.label_comparison_fn,
        )

    def determine_k(self, bin_counts: torch.Tensor, num_reference_embeddings: int, ref_includes_query: bool) -> int:
        num_k = super().determine_k(bin_counts, num_reference_embeddings, ref_includes_query)
        wanted = [parse_recall_metric(m) for m in self.get_curr_metrics() if _RECALL_RE.match(m)]
        if wanted:
            num_k = max(num_k, max(wanted))
        available = num_reference_embeddings - int(ref_includes_query)
        return max(1, min(num_k, available))


def metric_ks(metrics: Sequence[str]) -> Dict[str, int]:
    """Maps each ``recall_at_K`` name in ``metrics`` to K (other names are skipped)."""
    return {m: parse_recall_metric(m) for m in metrics if isinstance(m, str) and _RECALL_RE.match(m)}
