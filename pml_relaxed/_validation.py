"""One place for input checks. Every message names the argument and says expected versus actual."""

from __future__ import annotations

import math
from typing import Optional

import torch


def _describe(tensor: torch.Tensor) -> str:
    return f"a {tensor.ndim}D tensor of shape {tuple(tensor.shape)} and dtype {tensor.dtype}"


def check_embeddings(name: str, tensor: object, expected: str = "(batch_size, dim)") -> torch.Tensor:
    """Checks that ``tensor`` is a 2D floating-point tensor.

    Raises:
        TypeError: if ``tensor`` is not a torch.Tensor or is not floating point.
        ValueError: if ``tensor`` is not 2D.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {expected}; got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {_describe(tensor)}")
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a 2D tensor of shape {expected}; got {_describe(tensor)}")
    return tensor


def check_required(name: str, value: object, hint: str) -> None:
    """Raises ValueError when a required keyword argument was left as None."""
    if value is None:
        raise ValueError(f"{name} is required: {hint}; got None")


def check_same_rows(name: str, tensor: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    """Checks that two tensors describe the same samples (same number of rows)."""
    if tensor.shape[0] != other.shape[0]:
        raise ValueError(
            f"{name} must have one row per row of {other_name}: expected {other.shape[0]} rows, "
            f"got {tensor.shape[0]} (shape {tuple(tensor.shape)})"
        )


def check_same_cols(name: str, tensor: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    """Checks that a reference set lives in the same space as the queries (same number of columns)."""
    if tensor.shape[1] != other.shape[1]:
        raise ValueError(
            f"{name} must have the same dimension as {other_name}: expected {other.shape[1]} columns, "
            f"got {tensor.shape[1]} (shape {tuple(tensor.shape)})"
        )


def check_finite(name: str, tensor: torch.Tensor, max_rows_shown: int = 8) -> None:
    """Raises ValueError if ``tensor`` holds NaN or infinity; the message names the offending rows.

    One host synchronisation (the ``all()`` test); the rows are located only on failure.
    """
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        where = ""
        if tensor.ndim >= 2:
            rows = torch.nonzero(~finite.reshape(tensor.shape[0], -1).all(dim=1)).flatten().tolist()
            shown = ", ".join(str(r) for r in rows[:max_rows_shown]) + (", ..." if len(rows) > max_rows_shown else "")
            where = f" in {len(rows)} row(s) [{shown}]"
        raise ValueError(
            f"{name} must be finite; got {bad} non-finite value(s) (NaN or inf){where} of {_describe(tensor)}"
        )


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} ({value!r})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """Checks ``value > 0`` and returns it as a float."""
    value = _check_number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return value


def check_non_negative(name: str, value: object) -> float:
    """Checks ``value >= 0`` and returns it as a float."""
    value = _check_number(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    return value


def check_in_unit_interval(name: str, value: object) -> float:
    """Checks ``0 <= value <= 1`` and returns it as a float."""
    value = _check_number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Checks that ``value`` is a bool (not merely truthy) and returns it."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__} ({value!r})")
    return value


def check_int(name: str, value: object, minimum: Optional[int] = None, allow_none: bool = False) -> Optional[int]:
    """Checks that ``value`` is an int (a bool is not one), ``>= minimum`` when given, and returns it.

    With ``allow_none``, None is accepted and returned as well.

    Raises:
        TypeError: a value that is not an int (nor None with ``allow_none``).
        ValueError: an int below ``minimum``.

    Examples:
        >>> check_int("num_views", 2, minimum=1)
        2
        >>> check_int("num_views", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: num_views must be >= 1; got 0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int" + ("" if minimum is None else f" >= {minimum}") + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")
    return value


def check_optional_positive_int(name: str, value: object) -> Optional[int]:
    """Checks that ``value`` is None or an int >= 1."""
    return check_int(name, value, minimum=1, allow_none=True)


def check_labels(name: str, labels: object, num_rows: int, rows_of: str) -> torch.Tensor:
    """Checks a 1D label tensor with one label per row of ``rows_of``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a 1D torch.Tensor of shape ({num_rows},); got {type(labels).__name__}")
    if labels.ndim != 1 or labels.shape[0] != num_rows:
        raise ValueError(
            f"{name} must be a 1D tensor with one label per row of {rows_of}: expected shape ({num_rows},), "
            f"got {tuple(labels.shape)}"
        )
    return labels


def check_teacher_pair(
    embeddings: torch.Tensor,
    ref_emb: Optional[torch.Tensor],
    teacher_emb: Optional[torch.Tensor],
    teacher_ref_emb: Optional[torch.Tensor],
    check_values: bool = True,
) -> None:
    """The checks every teacher-fed loss and miner runs on its inputs.

    ``embeddings`` (student, n x d) and ``teacher_emb`` (teacher, n x D) describe the same n samples;
    ``teacher_ref_emb`` is required exactly when ``ref_emb`` is given, with one row per reference row.

    With ``check_values`` (the default) every tensor is also checked for NaN/inf, which costs one host
    synchronisation per tensor; without it only shapes and dtypes are checked (no synchronisation, so the
    caller stays capturable by ``torch.compile`` and CUDA graphs).

    Raises:
        TypeError: a non-tensor or non-floating-point input.
        ValueError: a missing teacher_emb, a non-2D tensor, mismatched rows, a teacher_ref_emb without
            ref_emb (or the reverse), or non-finite values (student or teacher; the message names the rows).
    """
    check_embeddings("embeddings", embeddings, "(batch_size, student_dim)")
    check_required(
        "teacher_emb",
        teacher_emb,
        "pass the frozen teacher's embeddings of the same batch, e.g. loss_fn(embeddings, teacher_emb=teacher(x))",
    )
    check_embeddings("teacher_emb", teacher_emb, "(batch_size, teacher_dim)")
    check_same_rows("teacher_emb", teacher_emb, "embeddings", embeddings)
    if check_values:
        check_finite("embeddings", embeddings)
        check_finite("teacher_emb", teacher_emb)
    if ref_emb is None and teacher_ref_emb is not None:
        raise ValueError("teacher_ref_emb was given without ref_emb: pass both or neither; got ref_emb=None")
    if ref_emb is not None:
        check_embeddings("ref_emb", ref_emb, "(num_ref, student_dim)")
        check_same_cols("ref_emb", ref_emb, "embeddings", embeddings)
        check_required(
            "teacher_ref_emb",
            teacher_ref_emb,
            "ref_emb was given, so pass the teacher's embeddings of the same reference samples",
        )
        check_embeddings("teacher_ref_emb", teacher_ref_emb, "(num_ref, teacher_dim)")
        check_same_rows("teacher_ref_emb", teacher_ref_emb, "ref_emb", ref_emb)
        check_same_cols("teacher_ref_emb", teacher_ref_emb, "teacher_emb", teacher_emb)
        if check_values:
            check_finite("ref_emb", ref_emb)
            check_finite("teacher_ref_emb", teacher_ref_emb)


def check_block_size(name: str, value: object) -> Optional[int]:
    """Checks that ``value`` is None (auto) or an int >= 0 (0: dense)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be None (auto), 0 (dense) or a positive int (rows per block); "
            f"got {type(value).__name__} ({value!r})"
        )
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0: dense, None: auto); got {value!r}")
    return value


def check_optional_device(name: str, value: object) -> Optional[torch.device]:
    """Checks that ``value`` is None, a ``torch.device`` or a device string (``"cpu"``, ``"cuda:1"``)."""
    if value is None or isinstance(value, torch.device):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a torch.device, a device string such as 'cuda:0', or None; "
            f"got {type(value).__name__} ({value!r})"
        )
    try:
        return torch.device(value)
    except RuntimeError as err:
        raise ValueError(f"{name} must name a device such as 'cpu' or 'cuda:0'; got {value!r}") from err


def check_indices_tuple(indices_tuple: object) -> None:
    """Checks PML pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``: 3 or 4 one-dimensional integer tensors.

    Raises:
        TypeError: anything else; the message says which entry and what it got.
    """
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        got = type(indices_tuple).__name__
        if isinstance(indices_tuple, (tuple, list)):
            got = f"a {got} of length {len(indices_tuple)}"
        raise TypeError(
            f"indices_tuple must be PML pairs (a1, p, a2, n) or triplets (a, p, n) of index tensors; got {got}"
        )
    for position, indices in enumerate(indices_tuple):
        if not isinstance(indices, torch.Tensor) or indices.ndim != 1 or indices.is_floating_point():
            got = _describe(indices) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise TypeError(f"indices_tuple[{position}] must be a 1D integer tensor; got {got}")
