"""PML loss base class for losses that read a frozen teacher's embeddings."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from pytorch_metric_learning.distances import BaseDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import ClassWeightedReducer
from pytorch_metric_learning.utils import common_functions as c_f

from .. import _validation as v
from .._teacher import check_teacher_reached
from .transfer_batch import TransferBatch


class BaseTransferLoss(BaseMetricLossFunction):
    """A PML ``BaseMetricLossFunction`` whose forward also takes the teacher's embeddings.

    Called as ``loss_fn(embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None,
    *, teacher_emb, teacher_ref_emb=None)``. Subclasses implement ``compute_transfer_loss(batch)``, which
    gets a :class:`~pml_relaxed.losses.TransferBatch` and returns PML's loss dict; reducers and embedding
    regularizers then work as in PML. (Overriding PML's ``compute_loss(embeddings, labels, indices_tuple,
    ref_emb, ref_labels, teacher_emb, teacher_ref_emb)`` itself works as well.) When ``ref_emb`` is None the
    reference set is the batch itself (``batch.ref_emb is batch.embeddings``) and
    ``teacher_ref_emb is teacher_emb``.

    A loss whose formula fixes its inputs says so with three class flags, checked here once:
    ``supports_distance = False`` refuses a ``distance=`` argument, ``supports_indices_tuple = False`` an
    ``indices_tuple`` (mined pairs), ``supports_ref_emb = False`` a reference set.

    An empty batch (or reference set) gives a zero loss connected to the graph, as PML's losses do.

    Args:
        validate: check the student and teacher embeddings for NaN/inf on every call (the message names
            the rows); one host synchronisation per tensor. ``validate=False`` checks shapes and dtypes
            only: no synchronisation, so the loss can be captured by ``torch.compile(fullgraph=True)``.
        **kwargs: PML's ``distance``, ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``,
            ``collect_stats``.

    Raises:
        TypeError: a keyword argument that neither the loss nor PML takes (the message names the loss), a
            ``distance`` that is not a PML BaseDistance, a validate that is not a bool.
        ValueError: if ``distance`` is a similarity (``is_inverted=True``) or is given to a loss that does not
            support one, an ``indices_tuple`` or a reference set given to a loss that does not support it, and
            bad input (see :func:`pml_relaxed._validation.check_teacher_pair`).
        IndexError: an ``indices_tuple`` entry outside the batch (anchors) or the reference set (partners);
            PML's losses raise IndexError there too, where the relaxed losses' pair mask would otherwise read
            it as another pair.
    """

    #: the loss compares embeddings with a PML ``distance`` (False: the formula fixes it; ``distance=`` refused)
    supports_distance: bool = True
    #: the loss can be restricted to mined pairs or triplets (False: ``indices_tuple`` refused)
    supports_indices_tuple: bool = True
    #: the loss accepts a reference set ``ref_emb`` / ``teacher_ref_emb`` (False: refused)
    supports_ref_emb: bool = True

    def __init__(self, validate: bool = True, **kwargs) -> None:
        v.check_keywords(self, kwargs, BaseMetricLossFunction)
        if not self.supports_distance and "distance" in kwargs:
            raise ValueError(
                f"{type(self).__name__} compares embeddings with the fixed formula of its paper, so distance cannot "
                f"be set; got distance={kwargs['distance']!r}"
            )
        super().__init__(**kwargs)
        self.validate = v.check_bool("validate", validate)
        if not isinstance(self.distance, BaseDistance):
            raise TypeError(
                f"distance must be a PML BaseDistance (e.g. LpDistance); got {type(self.distance).__name__}"
            )
        if self.distance.is_inverted:
            raise ValueError(
                f"{type(self).__name__} needs a distance (is_inverted=False), since its formula is written on "
                f"distances; got the similarity {type(self.distance).__name__} (is_inverted=True)"
            )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        indices_tuple: Optional[Sequence[torch.Tensor]] = None,
        ref_emb: Optional[torch.Tensor] = None,
        ref_labels: Optional[torch.Tensor] = None,
        *,
        teacher_emb: Optional[torch.Tensor] = None,
        teacher_ref_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Computes the loss.

        Args:
            embeddings: (n, d) student embeddings.
            labels: (n,) labels; ignored unless the loss or its reducer uses them.
            indices_tuple: PML pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)`` restricting the pairs.
            ref_emb: (m, d) student embeddings of a reference set, or None for the batch.
            ref_labels: (m,) reference labels.
            teacher_emb: (n, D) teacher embeddings of the same n samples (required).
            teacher_ref_emb: (m, D) teacher embeddings of the reference set (required with ref_emb).

        Returns:
            The reduced loss (a scalar with PML's default reducers).
        """
        return self._transfer_forward(
            embeddings, labels, indices_tuple, ref_emb, ref_labels, teacher_emb, teacher_ref_emb
        )

    def _transfer_forward(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor],
        indices_tuple: Optional[Sequence[torch.Tensor]],
        ref_emb: Optional[torch.Tensor],
        ref_labels: Optional[torch.Tensor],
        teacher_emb: Optional[torch.Tensor],
        teacher_ref_emb: Optional[torch.Tensor],
        aux_embeddings: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """:meth:`forward`'s checks, reducer and regularizer; ``aux_embeddings`` (checked by the caller) reach
        :class:`~pml_relaxed.losses.TransferBatch` for losses with a second head (:class:`STMLLoss`)."""
        self.reset_stats()
        self._check_supported(indices_tuple, ref_emb, teacher_ref_emb)
        check_teacher_reached(teacher_emb, self)
        v.check_teacher_pair(embeddings, ref_emb, teacher_emb, teacher_ref_emb, check_values=self.validate)
        if labels is not None:
            v.check_labels("labels", labels, embeddings.shape[0], "embeddings")
            labels = c_f.to_device(labels, embeddings)
        if ref_labels is not None and ref_emb is not None:
            v.check_labels("ref_labels", ref_labels, ref_emb.shape[0], "ref_emb")
        self._check_reducer_inputs(labels)
        teacher_emb = c_f.to_device(teacher_emb.detach(), embeddings)
        if ref_emb is None:
            teacher_ref_emb = teacher_emb
        else:
            teacher_ref_emb = c_f.to_device(teacher_ref_emb.detach(), embeddings)
        ref_emb, ref_labels = c_f.set_ref_emb(embeddings, labels, ref_emb, ref_labels)
        if indices_tuple is not None:
            refs = "embeddings" if ref_emb is embeddings else "ref_emb"
            v.check_indices_tuple(indices_tuple, embeddings.shape[0], ref_emb.shape[0], refs=refs)
        if embeddings.shape[0] == 0 or ref_emb.shape[0] == 0:
            zero = ref_emb.sum() * 0 + (0 if aux_embeddings is None else aux_embeddings.sum() * 0)
            return self.reducer(self.zero_losses(), embeddings, labels) + zero
        aux = () if aux_embeddings is None else (aux_embeddings,)  # PML-style compute_loss overrides take none
        loss_dict = self.compute_loss(
            embeddings, labels, indices_tuple, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, *aux
        )
        self.add_embedding_regularization_to_loss_dict(loss_dict, embeddings)
        return self.reducer(loss_dict, embeddings, labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor],
        indices_tuple: Optional[Sequence[torch.Tensor]],
        ref_emb: torch.Tensor,
        ref_labels: Optional[torch.Tensor],
        teacher_emb: Optional[torch.Tensor] = None,
        teacher_ref_emb: Optional[torch.Tensor] = None,
        aux_embeddings: Optional[torch.Tensor] = None,
    ) -> dict:
        """PML's hook, with the teacher: bundles the inputs and calls :meth:`compute_transfer_loss`."""
        batch = TransferBatch(
            embeddings, labels, indices_tuple, ref_emb, ref_labels, teacher_emb, teacher_ref_emb, aux_embeddings
        )
        return self.compute_transfer_loss(batch)

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        """PML's loss dict for one checked batch (see :class:`~pml_relaxed.losses.TransferBatch`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_transfer_loss(batch)")

    def _check_supported(
        self,
        indices_tuple: Optional[Sequence[torch.Tensor]],
        ref_emb: Optional[torch.Tensor],
        teacher_ref_emb: Optional[torch.Tensor],
    ) -> None:
        name = type(self).__name__
        if not self.supports_ref_emb and (ref_emb is not None or teacher_ref_emb is not None):
            raise ValueError(
                f"{name} compares each sample with its own teacher embedding only, so ref_emb/teacher_ref_emb are "
                "not supported; pass neither"
            )
        if not self.supports_indices_tuple and indices_tuple is not None:
            raise ValueError(
                f"{name} does not work on mined pairs or triplets (see its docstring), so indices_tuple is not "
                "supported; pass indices_tuple=None (drop the miner)"
            )

    def _check_reducer_inputs(self, labels: Optional[torch.Tensor]) -> None:
        if labels is None:
            for module in self.reducer.modules():
                if isinstance(module, ClassWeightedReducer):
                    raise ValueError(
                        "reducer ClassWeightedReducer weights losses by class, so labels are required; got labels=None"
                    )

    def element_loss_dict(self, per_sample: torch.Tensor, embeddings: torch.Tensor, name: str = "loss") -> dict:
        """PML's loss dict for one loss per query row; MeanReducer then averages over the n rows."""
        return {
            name: {
                "losses": per_sample,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
                "divisor": embeddings.shape[0],
            }
        }
