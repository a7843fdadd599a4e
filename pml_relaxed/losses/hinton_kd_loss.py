"""Hinton et al., "Distilling the Knowledge in a Neural Network" (2015), as a transfer loss on a classifier
head."""

from __future__ import annotations

import torch

from .. import _validation as v
from .. import functional_baselines as fb
from .base_transfer_loss import BaseTransferLoss
from .transfer_batch import TransferBatch


class HintonKDLoss(BaseTransferLoss):
    r"""Knowledge distillation on logits: the student's classifier head against the teacher's logits.

    For student embeddings e (n, d), the student's head h (e.g. ``torch.nn.Linear(d, C)``) and teacher logits
    ``z^t`` (n, C), with ``z^s = h(e)`` and temperature T::

        L = T^2 (1/n) sum_i KL(softmax(z^t_i / T) || softmax(z^s_i / T))

    (``F.kl_div(..., reduction="batchmean") * T^2``, Hinton et al.'s soft-target term). The loss is returned
    per sample, so PML's default MeanReducer gives exactly L. The teacher's "embeddings" are its logits: give
    :class:`~pml_relaxed.trainers.EmbeddingTransfer` a teacher that ends in its classifier.

    The head is held by reference and not registered as a submodule, so its parameters stay the classifier's
    alone (train them with the classifier's optimizer; they are not in ``loss.parameters()``). Pointwise like
    :class:`FitNetLoss`: ``ref_emb``, ``indices_tuple`` and ``distance`` are not supported, labels are ignored.

    Args:
        student_head: maps (n, d) student embeddings to (n, C) logits.
        temperature: T > 0 (Hinton et al.: 2 to 20; commonly 4).
        **kwargs: PML's ``reducer``, ``embedding_regularizer``, ``embedding_reg_weight``, ``collect_stats``;
            ``validate``.

    Shape:
        embeddings (n, d), teacher_emb (n, C). Output: scalar.

    Raises:
        TypeError: a ``student_head`` that is not callable, a non-number temperature; non-tensor inputs.
        ValueError: temperature <= 0; at call time logits whose class count differs from the teacher's, and
            the bad inputs of :class:`BaseTransferLoss` (e.g. a missing teacher_emb).

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import HintonKDLoss
        >>> head = torch.nn.Linear(16, 10)
        >>> loss_fn = HintonKDLoss(head, temperature=4.0)
        >>> embeddings = torch.randn(8, 16, requires_grad=True)
        >>> loss = loss_fn(embeddings, teacher_emb=torch.randn(8, 10))  # the teacher's logits
        >>> loss.backward()
        >>> list(loss_fn.parameters()), head.weight.grad.shape
        ([], torch.Size([10, 16]))
    """

    supports_distance = False
    supports_indices_tuple = False
    supports_ref_emb = False

    def __init__(self, student_head: torch.nn.Module, temperature: float = 4.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not callable(student_head):
            raise TypeError(
                "student_head must map student embeddings to logits (e.g. torch.nn.Linear(d, num_classes)); "
                f"got {type(student_head).__name__}"
            )
        self._head = (student_head,)  # a tuple: not registered, its parameters stay the classifier's
        self.temperature = v.check_positive("temperature", temperature)
        self.add_to_recordable_attributes(list_of_names=["temperature"], is_stat=False)

    @property
    def student_head(self) -> torch.nn.Module:
        """The student's classifier head (held by reference)."""
        return self._head[0]

    def compute_transfer_loss(self, batch: TransferBatch) -> dict:
        logits = self.student_head(batch.embeddings)
        if logits.ndim != 2 or logits.shape != batch.teacher_emb.shape:
            raise ValueError(
                f"student_head must give logits of the teacher's shape {tuple(batch.teacher_emb.shape)} (n, classes); "
                f"got {tuple(logits.shape)}"
            )
        per_sample = fb.hinton_kd_per_sample(logits, batch.teacher_emb, self.temperature)
        return self.element_loss_dict(per_sample, batch.embeddings)
