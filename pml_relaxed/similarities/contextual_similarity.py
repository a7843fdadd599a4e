"""STML's contextualised similarity: k-reciprocal neighbour overlap, query expansion, Gaussian kernel."""

from __future__ import annotations

from typing import Optional

import torch

from .. import _validation as v
from .._pairs import fill_self_pairs_
from .base_similarity import BaseSimilarity
from .teacher_inputs import TeacherInputs


class ContextualSimilarity(BaseSimilarity):
    r"""The contextualised relaxed labels of STML (Kim et al., "Self-Taught Metric Learning without Labels",
    CVPR 2022), computed on the teacher embeddings of one batch.

    With ``f`` the teacher embeddings of the n batch items (optionally centred on the batch mean, then by default
    L2-normalised) and ``d_ij = ||f_i - f_j||^2``:

    1. Ranking. Item i ranks the batch by ``d_ij`` ascending; i itself always comes first, then (with
       ``labels_mark_views=True``) the items with i's label (other views of the same instance), then the
       rest. Ties are broken by the smaller index (a stable sort), so the ranking is deterministic.
       ``N_k(i)`` is the first ``min(k, n)`` items of i's ranking (i included).
    2. k-reciprocal neighbours: ``R(i) = {j : j in N_k(i) and i in N_k(j)}`` (i is in R(i)).
    3. Neighbourhood overlap: ``w~_ij = |R(i) & R(j)| / |R(i)|`` if ``j in R(i)``, else 0.
    4. Query expansion: ``w^_ij = mean_{q in N_kq(i)} w~_qj`` over the first ``kq`` items of i's ranking
       (``kq = query_expansion_k``, default ``ceil(k / 2)``).
    5. Symmetrisation: ``w^C_ij = (w^_ij + w^_ji) / 2``.
    6. Average with the Gaussian kernel ``w^S_ij = exp(-d_ij / sigma)``:
       ``w_ij = (1 - contextual_weight) * w^S_ij + contextual_weight * w^C_ij`` (STML: weight 1/2).

    Every step lies in [0, 1], so ``w`` does too, and ``w`` is symmetric (the diagonal, which the losses
    skip, need not be 1). The squared distances are computed by
    matrix products and symmetrised (``(d + d^T) / 2``, clamped at 0), so ``d_ij == d_ji`` exactly.
    Differences from the STML code: its query expansion uses ``round(k / 2)`` neighbours (banker's
    rounding: 2 for k = 5); its ties follow ``torch.topk``'s unspecified order; it runs on CUDA only.

    Centring (``center=True``, not in STML) subtracts the batch mean before the normalisation, so the labels, like
    the relative distances of the relaxed losses, do not change when every embedding moves by the same vector. A
    randomly initialised network (ReLU features, a random linear head) puts every embedding near one common
    direction: uncentred, every pair then has a cosine near 1 and a Gaussian label near 1, whatever the images.

    The labels depend on the whole batch, so they cannot be computed in row blocks
    (``supports_blocks = False``), and the references must be the queries themselves
    (``teacher_ref_emb=None``; a memory bank or a second view set is refused).

    Args:
        k: neighbours per item, >= 1 (clamped to the batch size).
        sigma: bandwidth of the Gaussian kernel, > 0.
        query_expansion_k: neighbours averaged in the query expansion, >= 1, or None for ``ceil(k / 2)``
            (clamped to the batch size).
        contextual_weight: weight of the contextual part, in [0, 1] (0: the plain Gaussian kernel).
        normalize: L2-normalise the teacher embeddings first.
        center: subtract the batch mean of the teacher embeddings first (before ``normalize``).
        labels_mark_views: the labels passed with the batch mark views of one instance (e.g. instance
            ids from a two-view loader), which rank right after the item itself, as in STML; the labels
            are then required. They only change the neighbour ranking, not the kernel.

    Shape:
        teacher_emb (n, D) -> (n, n).

    Raises:
        TypeError: a non-int k or query_expansion_k, a non-bool normalize, center or labels_mark_views.
        ValueError: k or query_expansion_k < 1, sigma <= 0, contextual_weight outside [0, 1]; at call time a
            teacher_ref_emb (the batch must be its own reference set), or missing labels with
            ``labels_mark_views``.

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> similarity = ContextualSimilarity(k=3)
        >>> teacher_emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> w = similarity(teacher_emb)
        >>> w.shape, bool(torch.equal(w, w.T)), bool(((w >= 0) & (w <= 1)).all())
        (torch.Size([4, 4]), True, True)
        >>> w[0, 1] > w[0, 2]  # 0 and 1 are reciprocal neighbours, 0 and 2 are not
        tensor(True)
        >>> loss_fn = RelaxedContrastiveLoss(similarity=similarity, block_size=0)
        >>> float(loss_fn(torch.randn(4, 8), teacher_emb=teacher_emb)) >= 0
        True
    """

    supports_blocks = False
    rows_from_whole_matrix = True  # its rows depend on the whole batch

    def __init__(
        self,
        k: int = 4,
        sigma: float = 1.0,
        query_expansion_k: Optional[int] = None,
        contextual_weight: float = 0.5,
        normalize: bool = True,
        labels_mark_views: bool = False,
        center: bool = False,
    ) -> None:
        super().__init__()
        self.k = v.check_int("k", k, minimum=1)
        self.sigma = v.check_positive("sigma", sigma)
        self.query_expansion_k = v.check_int("query_expansion_k", query_expansion_k, minimum=1, allow_none=True)
        self.contextual_weight = v.check_in_unit_interval("contextual_weight", contextual_weight)
        self.normalize = v.check_bool("normalize", normalize)
        self.labels_mark_views = v.check_bool("labels_mark_views", labels_mark_views)
        self.center = v.check_bool("center", center)
        self.requires_labels = self.labels_mark_views

    @property
    def expansion_k(self) -> int:
        """Neighbours averaged in the query expansion (before clamping to the batch size)."""
        return self.query_expansion_k if self.query_expansion_k is not None else (self.k + 1) // 2

    def check_inputs(self, inputs: TeacherInputs) -> None:
        super().check_inputs(inputs)
        if not inputs.self_reference:
            raise ValueError(
                "ContextualSimilarity needs the batch as its own reference set (its neighbourhoods are those of "
                f"the batch): pass teacher_ref_emb=None; got a tensor of shape {tuple(inputs.teacher_ref_emb.shape)}"
            )

    def ranking(self, teacher_emb: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(n, n) indices: row i is i's ranking of the batch (step 1 of the class docstring)."""
        self.check_inputs(TeacherInputs(teacher_emb, labels=labels))
        with torch.no_grad():
            return self._ranking(self.squared_distances(teacher_emb.detach()), labels)

    def squared_distances(self, teacher_emb: torch.Tensor) -> torch.Tensor:
        """Symmetric (n, n) squared distances of the (centred, normalised) teacher embeddings, in the compute
        dtype."""
        dtype = teacher_emb.dtype if teacher_emb.dtype in (torch.float32, torch.float64) else torch.float32
        f = teacher_emb.to(dtype)
        if self.center and len(f):
            f = f - f.mean(dim=0, keepdim=True)
        if self.normalize:
            f = torch.nn.functional.normalize(f, p=2, dim=1)
        sq = (f * f).sum(dim=1)
        dist = sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * (f @ f.T)
        dist = ((dist + dist.T) / 2).clamp_min(0)
        return fill_self_pairs_(dist, 0, 0)

    def _ranking(self, dist: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        key = dist.clone()
        if self.labels_mark_views:  # distances are >= 0: -1 ranks the other views before every other item
            same = labels.to(dist.device).unsqueeze(1) == labels.to(dist.device).unsqueeze(0)
            key = torch.where(same, torch.full_like(key, -1.0), key)
        fill_self_pairs_(key, 0, -2.0)
        return torch.sort(key, dim=1, stable=True).indices

    def compute_mat(self, inputs: TeacherInputs) -> torch.Tensor:
        if not inputs.self_reference:  # reached through compute_mat directly, e.g. from MixedSimilarity
            self.check_inputs(inputs)
        teacher_emb, labels = inputs.teacher_emb, inputs.labels
        n = teacher_emb.shape[0]
        dist = self.squared_distances(teacher_emb)
        if n == 0:
            return dist
        order = self._ranking(dist, labels)
        k, kq = min(self.k, n), min(self.expansion_k, n)
        neighbours = torch.zeros_like(dist).scatter_(1, order[:, :k], 1.0)  # [i, j] = j in N_k(i)
        reciprocal = neighbours * neighbours.T  # [i, j] = j in R(i); symmetric
        overlap = reciprocal @ reciprocal  # [i, j] = |R(i) & R(j)|
        overlap_share = reciprocal * overlap / reciprocal.sum(dim=1, keepdim=True)  # w~
        expansion = torch.zeros_like(dist).scatter_(1, order[:, :kq], 1.0 / kq)
        expanded = expansion @ overlap_share  # w^_ij = mean over q in N_kq(i) of w~_qj
        contextual = (expanded + expanded.T) / 2
        kernel = torch.exp(-dist / self.sigma)
        return (1 - self.contextual_weight) * kernel + self.contextual_weight * contextual

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, sigma={self.sigma}, query_expansion_k={self.query_expansion_k}, "
            f"contextual_weight={self.contextual_weight}, normalize={self.normalize}, "
            f"labels_mark_views={self.labels_mark_views}, center={self.center}"
        )
