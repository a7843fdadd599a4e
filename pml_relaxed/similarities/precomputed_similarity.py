"""Any soft targets as relaxed labels: a given (n, m) matrix, or a callable that builds one per batch."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .. import _validation as v
from .base_similarity import BaseSimilarity
from .teacher_inputs import TeacherInputs

RelaxedLabelsFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]], torch.Tensor]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _check_relaxed_labels(name: str, mat: object, shape: Optional[tuple], check_values: bool) -> torch.Tensor:
    v.check_embeddings(name, mat, "(num_queries, num_refs)")  # a 2D floating-point tensor
    if shape is not None and tuple(mat.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} (queries, references); got {tuple(mat.shape)}")
    if check_values:
        v.check_finite(name, mat)
        if mat.numel() and not bool(((mat >= 0) & (mat <= 1)).all()):
            raise ValueError(f"{name} must lie in [0, 1]; got values in [{float(mat.min())}, {float(mat.max())}]")
    return mat


class PrecomputedSimilarity(BaseSimilarity):
    r"""Relaxed labels given from outside the teacher: a fixed (n, m) matrix or a callable.

    So the relaxed losses serve any pairwise soft supervision (e.g. class-similarity matrices, human
    judgements, another model's scores), not only teacher embeddings.

    - Matrix: ``w = relaxed_labels``, for a loss called on exactly n queries and m references (m = n
      without ``ref_emb``); a batch of another size raises ValueError. Row blocks are slices of the matrix,
      so the blockwise losses work with it (``supports_blocks = True``).
    - Callable: ``w = relaxed_labels(teacher_emb, teacher_ref_emb, labels, ref_labels)``, called once per
      loss call with the full reference set (``teacher_ref_emb`` is ``teacher_emb`` and ``ref_labels`` is
      ``labels`` when the batch is its own reference set); it must return an (n, m) float tensor in [0, 1].
      Row blocks are slices of its result (computed once), so any callable is exact under ``block_size``.

    The losses still need ``teacher_emb=`` with one row per query; with a matrix it only gives the shape
    and device, so any (n, D) tensor (e.g. ``embeddings.detach()``) will do. The result is cast to the
    teacher's device and dtype (float16/bfloat16: float32) and carries no gradient.

    Args:
        relaxed_labels: an (n, m) floating-point tensor in [0, 1], or a callable as above.
        requires_labels: the callable reads ``labels``, which are then required (matrix: must be False).
        validate: check the callable's output (shape at every call; finite and in [0, 1], one host
            synchronisation); a matrix is always checked once, at construction.

    Shape:
        teacher_emb (n, D), teacher_ref_emb (m, D) or None -> (n, m).

    Raises:
        TypeError: relaxed_labels neither a float tensor nor a callable; non-bool requires_labels or validate;
            a callable returning a non-tensor or non-float tensor.
        ValueError: a matrix that is not 2D, not finite or outside [0, 1]; requires_labels with a matrix; at
            call time a batch whose (queries, references) differ from the matrix's shape, a callable result
            of the wrong shape or outside [0, 1].

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss
        >>> class_similarity = torch.tensor([[1.0, 0.7, 0.0], [0.7, 1.0, 0.1], [0.0, 0.1, 1.0]])
        >>> similarity = PrecomputedSimilarity(
        ...     lambda t, t_ref, labels, ref_labels: class_similarity[labels][:, ref_labels], requires_labels=True)
        >>> labels = torch.tensor([0, 1, 2, 0])
        >>> similarity(torch.zeros(4, 1), labels=labels)[0]
        tensor([1.0000, 0.7000, 0.0000, 1.0000])
        >>> embeddings = torch.randn(4, 8, requires_grad=True)
        >>> loss = RelaxedContrastiveLoss(similarity=similarity)(embeddings, labels, teacher_emb=embeddings.detach())
        >>> loss.backward()
    """

    rows_from_whole_matrix = True  # slices of the matrix, or of the callable's result (computed once)

    def __init__(
        self,
        relaxed_labels: Union[torch.Tensor, RelaxedLabelsFn],
        requires_labels: bool = False,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.requires_labels = v.check_bool("requires_labels", requires_labels)
        self.validate = v.check_bool("validate", validate)
        if isinstance(relaxed_labels, torch.Tensor):
            if self.requires_labels:
                raise ValueError(
                    "requires_labels is for a callable that reads labels; a fixed relaxed_labels "
                    "matrix reads none: got requires_labels=True with a tensor"
                )
            mat = _check_relaxed_labels("relaxed_labels", relaxed_labels, None, check_values=True)
            self.register_buffer("matrix", mat.detach().clone(), persistent=False)
            self.fn: Optional[RelaxedLabelsFn] = None
        elif callable(relaxed_labels):
            self.matrix = None
            self.fn = relaxed_labels
        else:
            raise TypeError(
                f"relaxed_labels must be an (n, m) float tensor or a callable (teacher_emb, "
                f"teacher_ref_emb, labels, ref_labels) -> (n, m); got {type(relaxed_labels).__name__}"
            )

    def check_inputs(self, inputs: TeacherInputs) -> None:
        super().check_inputs(inputs)
        shape = (inputs.num_queries, inputs.num_refs)
        if self.matrix is not None and tuple(self.matrix.shape) != shape:
            raise ValueError(
                f"the batch has {shape[0]} queries and {shape[1]} references, but the precomputed relaxed_labels "
                f"matrix has shape {tuple(self.matrix.shape)}: the loss must be called on the batch it describes"
            )

    def compute_mat(self, inputs: TeacherInputs) -> torch.Tensor:
        teacher_emb = inputs.teacher_emb
        dtype = _compute_dtype(teacher_emb.dtype)
        if self.matrix is not None:
            return self.matrix.to(device=teacher_emb.device, dtype=dtype, copy=True)  # callers may write into it
        mat = self.fn(teacher_emb, inputs.refs, inputs.labels, inputs.reference_labels)
        shape = (inputs.num_queries, inputs.num_refs)
        if not isinstance(mat, torch.Tensor) or not mat.is_floating_point():
            _check_relaxed_labels("the relaxed_labels callable's result", mat, shape, check_values=False)
        if tuple(mat.shape) != shape:
            raise ValueError(
                f"the relaxed_labels callable's result must have shape {shape} (queries, references); "
                f"got {tuple(mat.shape)}"
            )
        if self.validate:
            _check_relaxed_labels("the relaxed_labels callable's result", mat, shape, check_values=True)
        return mat.detach().to(device=teacher_emb.device, dtype=dtype)

    def extra_repr(self) -> str:
        source = f"matrix of shape {tuple(self.matrix.shape)}" if self.matrix is not None else f"fn={self.fn!r}"
        return f"{source}, requires_labels={self.requires_labels}, validate={self.validate}"
