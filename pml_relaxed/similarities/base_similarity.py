"""Base class of the teacher kernels that turn teacher embeddings into relaxed labels."""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch

from .. import _validation as v
from .teacher_inputs import TeacherInputs

#: the methods a subclass may override, each taking one TeacherInputs after self
_EXTENSION_METHODS = ("compute_mat", "rows", "check_inputs")
_MIGRATION_NOTE = "see docs/extend.md, 'Migrating from the four-argument compute_mat'"


def _check_extension_signature(cls: type, name: str) -> None:
    """Refuses, when ``cls`` is defined, an override of ``name`` that does not take exactly one ``inputs``
    argument (e.g. the four-argument ``compute_mat(teacher_emb, teacher_ref_emb, labels, ref_labels)`` of the
    old extension API, which would otherwise receive a TeacherInputs as ``teacher_emb``)."""
    method = cls.__dict__.get(name)
    if not inspect.isfunction(method):
        return
    params = list(inspect.signature(method).parameters.values())[1:]  # after self
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_keywords = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(positional) != 1 or required_keywords:
        got = ", ".join(p.name for p in params)
        raise TypeError(
            f"{cls.__name__}.{name} must take one argument after self, inputs: TeacherInputs "
            f"({name}(self, inputs); read inputs.teacher_emb, inputs.refs, inputs.labels, inputs.reference_labels); "
            f"got {name}(self, {got}): {_MIGRATION_NOTE}"
        )


class BaseSimilarity(torch.nn.Module):
    """Maps teacher embeddings of queries (n, D) and references (m, D) to weights in [0, 1], shape (n, m).

    Subclasses implement :meth:`compute_mat`, which receives the call's inputs as one
    :class:`~pml_relaxed.similarities.TeacherInputs`. Weights carry no gradient: the teacher is frozen.
    ``requires_labels`` says whether the similarity reads class labels instead of (or besides)
    the teacher embeddings.

    Raises:
        TypeError: when a subclass is defined, if its ``compute_mat``, ``rows`` or ``check_inputs`` does not take
            exactly one argument (``inputs``) after self, e.g. the old four-argument form.
    """

    requires_labels: bool = False
    supports_blocks: bool = True
    """Row blocks of the relaxed labels can be computed on their own (see :meth:`rows`). A similarity whose
    rows depend on the whole batch (e.g. neighbourhood-based ones) sets this to False; the relaxed losses
    then refuse ``block_size > 0`` instead of silently computing the full matrix."""
    rows_from_whole_matrix: bool = False
    """:meth:`rows` computes the whole matrix once and hands out a copy of each row block (the blockwise losses
    overwrite it): for a similarity that cannot compute a block on its own, or that holds the matrix."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in _EXTENSION_METHODS:
            _check_extension_signature(cls, name)

    def forward(
        self,
        teacher_emb: torch.Tensor,
        teacher_ref_emb: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        ref_labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Relaxed labels w (n, m) in [0, 1].

        Args:
            teacher_emb: (n, D) teacher embeddings of the queries.
            teacher_ref_emb: (m, D) teacher embeddings of the references, or None for the queries.
            labels: (n,) class labels, for similarities with ``requires_labels``.
            ref_labels: (m,) reference labels, or None for ``labels``.

        Raises:
            TypeError, ValueError: a non-2D or non-float teacher tensor, or missing/mis-sized labels.
        """
        return self.relaxed_labels(TeacherInputs(teacher_emb, teacher_ref_emb, labels, ref_labels))

    def relaxed_labels(self, inputs: TeacherInputs) -> torch.Tensor:
        """:meth:`forward` on inputs already packed: checks them, then :meth:`compute_mat` on the detached
        teacher under ``no_grad``."""
        self.check_inputs(inputs)
        with torch.no_grad():
            return self.compute_mat(inputs.detached())

    def check_inputs(self, inputs: TeacherInputs) -> None:
        """Shape, dtype and label checks of :meth:`forward` (no host synchronisation)."""
        teacher_emb, teacher_ref_emb = inputs.teacher_emb, inputs.teacher_ref_emb
        v.check_embeddings("teacher_emb", teacher_emb, "(batch_size, teacher_dim)")
        if teacher_ref_emb is not None:
            v.check_embeddings("teacher_ref_emb", teacher_ref_emb, "(num_ref, teacher_dim)")
            v.check_same_cols("teacher_ref_emb", teacher_ref_emb, "teacher_emb", teacher_emb)
        if self.requires_labels:
            v.check_required("labels", inputs.labels, f"{type(self).__name__} builds relaxed labels from class labels")
            v.check_labels("labels", inputs.labels, inputs.num_queries, "teacher_emb")
            if inputs.ref_labels is not None:
                v.check_labels("ref_labels", inputs.ref_labels, inputs.num_refs, "teacher_ref_emb")

    def rows(self, inputs: TeacherInputs) -> Callable[[int, int], torch.Tensor]:
        """Relaxed labels one row block at a time: ``rows(inputs)(start, end)`` equals
        ``self(teacher_emb, teacher_ref_emb, labels, ref_labels)[start:end]`` for the inputs' fields.

        The blockwise losses call it; the default computes each block from ``inputs.query_rows(start, end)``
        (with ``rows_from_whole_matrix``: slices the whole matrix, computed once). Subclasses may override it to
        prepare the teacher once (see GaussianKernel).
        """
        if self.rows_from_whole_matrix:
            full = self.relaxed_labels(inputs)
            return lambda start, end: full[start:end].clone()
        return lambda start, end: self.relaxed_labels(inputs.query_rows(start, end))

    def compute_mat(self, inputs: TeacherInputs) -> torch.Tensor:
        """The (n, m) relaxed labels of checked, detached ``inputs``, under ``no_grad``: what a subclass implements.

        ``inputs.teacher_ref_emb`` is None when the batch is its own reference set; ``inputs.refs`` and
        ``inputs.reference_labels`` resolve that case.
        """
        raise NotImplementedError
