"""The inputs of a teacher similarity, in one object: queries, references and their labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class TeacherInputs:
    """What a :class:`~pml_relaxed.similarities.BaseSimilarity` reads: the teacher embeddings of the queries and
    of the references, and their class labels.

    ``similarity(teacher_emb, teacher_ref_emb, labels, ref_labels)`` packs its arguments into one
    ``TeacherInputs`` and hands it to ``compute_mat(inputs)`` and ``rows(inputs)``, the methods a subclass
    implements. The fields are the call's arguments as given (None where not given); the properties resolve
    the defaults, so a subclass never writes ``teacher_emb if teacher_ref_emb is None else teacher_ref_emb``.

    Args:
        teacher_emb: (n, D) teacher embeddings of the queries.
        teacher_ref_emb: (m, D) teacher embeddings of the references, or None: the queries are their own
            reference set.
        labels: (n,) class labels of the queries, or None.
        ref_labels: (m,) class labels of the references, or None for ``labels``.

    Examples:
        >>> import torch
        >>> inputs = TeacherInputs(torch.eye(3), labels=torch.tensor([0, 1, 1]))
        >>> inputs.self_reference, inputs.num_queries, inputs.num_refs, inputs.reference_labels.tolist()
        (True, 3, 3, [0, 1, 1])
        >>> block = inputs.query_rows(1, 3)  # rows 1 and 2 against every reference
        >>> block.teacher_emb.shape, block.refs.shape, block.labels.tolist(), block.self_reference
        (torch.Size([2, 3]), torch.Size([3, 3]), [1, 1], False)
    """

    teacher_emb: torch.Tensor
    teacher_ref_emb: Optional[torch.Tensor] = None
    labels: Optional[torch.Tensor] = None
    ref_labels: Optional[torch.Tensor] = None

    @property
    def self_reference(self) -> bool:
        """True when the queries are their own reference set (``teacher_ref_emb`` is None)."""
        return self.teacher_ref_emb is None

    @property
    def refs(self) -> torch.Tensor:
        """(m, D) teacher embeddings of the references: ``teacher_ref_emb``, or the queries when it is None."""
        return self.teacher_emb if self.teacher_ref_emb is None else self.teacher_ref_emb

    @property
    def reference_labels(self) -> Optional[torch.Tensor]:
        """(m,) labels of the references: ``ref_labels``, or ``labels`` when it is None."""
        return self.labels if self.ref_labels is None else self.ref_labels

    @property
    def num_queries(self) -> int:
        """n, the number of queries (rows of the relaxed labels)."""
        return self.teacher_emb.shape[0]

    @property
    def num_refs(self) -> int:
        """m, the number of references (columns of the relaxed labels)."""
        return self.refs.shape[0]

    def detached(self) -> TeacherInputs:
        """The same inputs with the teacher embeddings detached from any graph (the teacher is frozen)."""
        ref = None if self.teacher_ref_emb is None else self.teacher_ref_emb.detach()
        return TeacherInputs(self.teacher_emb.detach(), ref, self.labels, self.ref_labels)

    def query_rows(self, start: int, end: int) -> TeacherInputs:
        """The inputs of rows ``[start, end)``: those queries (and their labels) against every reference.

        ``similarity.compute_mat(inputs.query_rows(start, end))`` equals ``similarity.compute_mat(inputs)[start:end]``
        for a similarity whose rows do not depend on the other queries. The whole range returns ``self``, so
        a single block is the full call, self-reference included.
        """
        if start == 0 and end == self.num_queries:
            return self
        block_labels = None if self.labels is None else self.labels[start:end]
        return TeacherInputs(self.teacher_emb[start:end], self.refs, block_labels, self.reference_labels)
