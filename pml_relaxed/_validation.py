"""One place for input checks. Every message names the argument and says expected versus actual."""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import warnings
from typing import Iterable, Optional

import numpy as np
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


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool)


def _scalar(value: object) -> object:
    """A 0-d tensor as the Python number it holds; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_complex() and value.dtype != torch.bool:
        return value.item()
    return value


def _as_integer(value: object) -> Optional[int]:
    """``value`` as an int when it is a Python or numpy integer or a 0-d integer tensor (never a bool), else None."""
    number = _scalar(value)
    if _is_bool(value) or not isinstance(number, numbers.Integral):
        return None
    return int(number)


def _check_number(name: str, value: object) -> float:
    """A real number: a Python or numpy real scalar, or a 0-d real tensor; never a bool. Returned as a float."""
    number = _scalar(value)
    if _is_bool(value) or not isinstance(number, numbers.Real):
        raise TypeError(
            f"{name} must be a real number; got {_type_and_value(value)} (a Python or numpy real scalar or a 0-d "
            "real tensor is accepted, a bool is not)"
        )
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return float(number)


def _type_and_value(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return _describe(value)
    return f"{type(value).__name__} ({value!r})"


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
    """Checks that ``value`` is a bool (not merely truthy: ``"yes"``, 1 or None are refused) and returns it.

    A numpy bool is accepted and returned as a Python bool.

    Raises:
        TypeError: anything but a bool.

    Examples:
        >>> check_bool("validate", "no")
        Traceback (most recent call last):
        ...
        TypeError: validate must be a bool; got str ('no')
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {_type_and_value(value)}")
    return bool(value)


def check_int(name: str, value: object, minimum: Optional[int] = None, allow_none: bool = False) -> Optional[int]:
    """Checks that ``value`` is an int (a bool is not one), ``>= minimum`` when given, and returns it.

    A numpy integer or a 0-d integer tensor counts as an int (returned as one). With ``allow_none``, None is
    accepted and returned as well.

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
    number = _as_integer(value)
    if number is None:
        expected = "an int" + ("" if minimum is None else f" >= {minimum}") + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}; got {_type_and_value(value)}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")
    return number


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
    _check_student_and_teacher(
        ("embeddings", embeddings, "batch_size"),
        ("teacher_emb", teacher_emb),
        "pass the frozen teacher's embeddings of the same batch, e.g. loss_fn(embeddings, teacher_emb=teacher(x))",
        None,
        check_values,
    )
    check_teacher_ref_emb(ref_emb, teacher_ref_emb)
    if ref_emb is not None:
        _check_student_and_teacher(
            ("ref_emb", ref_emb, "num_ref"),
            ("teacher_ref_emb", teacher_ref_emb),
            "ref_emb was given, so pass the teacher's embeddings of the same reference samples",
            (embeddings, teacher_emb),
            check_values,
        )


def _check_student_and_teacher(student, teacher, hint: str, batch, check_values: bool) -> None:
    """One half of :func:`check_teacher_pair`: a student tensor and the teacher's tensor of the same samples.

    ``student`` is ``(name, tensor, rows)``, ``teacher`` ``(name, tensor)``; ``batch``, for the reference
    set, is ``(embeddings, teacher_emb)``, whose columns the two must match.
    """
    (student_name, student_emb, rows), (teacher_name, teacher_emb) = student, teacher
    check_embeddings(student_name, student_emb, f"({rows}, student_dim)")
    if batch is not None:
        check_same_cols(student_name, student_emb, "embeddings", batch[0])
    check_required(teacher_name, teacher_emb, hint)
    check_embeddings(teacher_name, teacher_emb, f"({rows}, teacher_dim)")
    check_same_rows(teacher_name, teacher_emb, student_name, student_emb)
    if batch is not None:
        check_same_cols(teacher_name, teacher_emb, "teacher_emb", batch[1])
    if check_values:
        check_finite(student_name, student_emb)
        check_finite(teacher_name, teacher_emb)


def check_teacher_ref_emb(ref_emb: Optional[torch.Tensor], teacher_ref_emb: Optional[torch.Tensor]) -> None:
    """Raises ValueError for a ``teacher_ref_emb`` without the ``ref_emb`` it describes."""
    if ref_emb is None and teacher_ref_emb is not None:
        raise ValueError("teacher_ref_emb was given without ref_emb: pass both or neither; got ref_emb=None")


def check_block_size(name: str, value: object) -> Optional[int]:
    """Checks that ``value`` is None (auto) or an int >= 0 (0: dense)."""
    if value is None:
        return None
    number = _as_integer(value)
    if number is None:
        raise TypeError(
            f"{name} must be None (auto), 0 (dense) or a positive int (rows per block); got {_type_and_value(value)}"
        )
    if number < 0:
        raise ValueError(f"{name} must be >= 0 (0: dense, None: auto); got {value!r}")
    return number


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


_PAIR_ROLES = ("positive-pair anchors", "positives", "negative-pair anchors", "negatives")
_TRIPLET_ROLES = ("anchors", "positives", "negatives")


def check_indices_tuple(
    indices_tuple: object,
    num_queries: Optional[int] = None,
    num_refs: Optional[int] = None,
    refs: str = "ref_emb (the batch itself when ref_emb is None)",
) -> None:
    """Checks PML pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``, and with the row counts, that every index fits.

    The structure: 3 or 4 one-dimensional integer tensors, an anchor tensor as long as its partners. With
    ``num_queries`` and ``num_refs``: every anchor (``a1``, ``a2``, ``a``) in ``[0, num_queries)`` and every
    positive or negative in ``[0, num_refs)``. PML's losses raise IndexError on an index past the end; a
    negative index would wrap around to another row, and the pair mask of the relaxed losses would read
    either as another pair, so both are refused. The bounds cost one host synchronisation (the minima and
    maxima of every tensor read back together).

    Args:
        indices_tuple: the tuple to check.
        num_queries: number of query rows (the anchors' range), or None to check the structure only.
        num_refs: number of reference rows (the positives' and negatives' range); required with num_queries.
        refs: what the reference rows are, for the message.

    Raises:
        TypeError: not a tuple/list of 3 or 4 one-dimensional integer tensors; the message says which entry.
        ValueError: an anchor tensor whose length differs from its partners'.
        IndexError: an index outside its range; the message names the entry, the range and the value.

    Examples:
        >>> import torch
        >>> pairs = (torch.tensor([0]), torch.tensor([8]), torch.tensor([0]), torch.tensor([1]))
        >>> check_indices_tuple(pairs, num_queries=8, num_refs=8, refs="embeddings")
        Traceback (most recent call last):
        ...
        IndexError: indices_tuple[1] (positives) must index the 8 rows of embeddings: expected values in [0, 8); got 8
    """
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        got = type(indices_tuple).__name__
        if isinstance(indices_tuple, (tuple, list)):
            got = f"a {got} of length {len(indices_tuple)}"
        raise TypeError(
            f"indices_tuple must be PML pairs (a1, p, a2, n) or triplets (a, p, n) of index tensors; got {got}"
        )
    for position, indices in enumerate(indices_tuple):
        if (
            not isinstance(indices, torch.Tensor)
            or indices.ndim != 1
            or indices.is_floating_point()
            or indices.is_complex()
            or indices.dtype == torch.bool
        ):
            got = _describe(indices) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise TypeError(f"indices_tuple[{position}] must be a 1D integer tensor; got {got}")
    pairs = len(indices_tuple) == 4
    groups = ((0, 1), (2, 3)) if pairs else ((0, 1, 2),)
    for group in groups:
        lengths = [len(indices_tuple[k]) for k in group]
        if len(set(lengths)) > 1:
            names = ", ".join(f"indices_tuple[{k}]" for k in group)
            raise ValueError(
                f"{names} must have the same length (one entry per {'pair' if pairs else 'triplet'}); got lengths "
                f"{lengths}"
            )
    if num_queries is None:
        return
    roles = _PAIR_ROLES if pairs else _TRIPLET_ROLES
    bounds = (num_queries, num_refs, num_queries, num_refs) if pairs else (num_queries, num_refs, num_refs)
    checked = [k for k, indices in enumerate(indices_tuple) if indices.numel() > 0]
    if not checked:
        return
    device = indices_tuple[checked[0]].device
    extremes = torch.cat([torch.stack(indices_tuple[k].aminmax()).to(device) for k in checked]).tolist()
    for j, k in enumerate(checked):
        low, high = extremes[2 * j], extremes[2 * j + 1]
        if low < 0 or high >= bounds[k]:
            rows = "embeddings" if roles[k].endswith("anchors") else refs
            raise IndexError(
                f"indices_tuple[{k}] ({roles[k]}) must index the {bounds[k]} rows of {rows}: expected values in "
                f"[0, {bounds[k]}); got {low if low < 0 else high}"
            )


_WARNED_ONCE: set = set()


class DegenerateBatchWarning(UserWarning):
    """A batch from which a loss cannot learn: its value is constant in the student embeddings (zero gradient)."""


def warn_once(key: str, message: str, category: type = UserWarning) -> None:
    """``warnings.warn(message, category)`` the first time ``key`` is seen in this process; later calls are silent."""
    if key in _WARNED_ONCE:
        return
    _WARNED_ONCE.add(key)
    warnings.warn(message, category, stacklevel=3)


def warn_if_degenerate(
    owner: str, queries: torch.Tensor, refs: Optional[torch.Tensor] = None, check_values: bool = True
) -> None:
    """Warns once per process when a relaxed loss gets a batch it cannot learn from.

    - Fewer than 3 reference rows (the batch itself when ``refs`` is None): the relative distances
      ``d_ij = D_ij / mean_k D_ik`` of a row of two entries, one of them the zero self-distance, are
      constant (2), so the loss is constant and its gradient 0 (up to rounding). Read from the shapes: free.
    - All student rows equal (a collapsed or zero-initialised student): every distance is 0, so is the
      gradient. Read from the values (one host synchronisation), so only with ``check_values``.

    Raises nothing; the warning's category is :class:`DegenerateBatchWarning` (a UserWarning).
    """
    num_refs = queries.shape[0] if refs is None else refs.shape[0]
    if num_refs < 3:
        where = "the batch" if refs is None else "ref_emb"
        warn_once(
            "few_rows",
            f"{owner} got a batch whose reference set ({where}) has {num_refs} row(s); with fewer than 3 the "
            "relative distances are constant, so the loss is constant and its gradient 0 (up to rounding): use "
            "batches of at least 3 rows (shown once per process)",
            DegenerateBatchWarning,
        )
        return
    if not check_values or queries.shape[0] == 0:
        return
    first = queries[:1]
    collapsed = (queries == first).all() if refs is None else (queries == first).all() & (refs == first).all()
    if bool(collapsed):
        warn_once(
            "collapsed",
            f"{owner} got a batch whose student embeddings are all equal (a collapsed or zero-initialised student): "
            "every distance is 0, so the loss is constant and its gradient 0; initialise the student randomly "
            "(shown once per process)",
            DegenerateBatchWarning,
        )


def _init_parameters(classes: Iterable[type]) -> list:
    """The named ``__init__`` arguments of ``classes`` (each class's own ``__init__``), in order, without repeats."""
    names: list = []
    for cls in classes:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            named = parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            if named and parameter.name not in names:
                names.append(parameter.name)
    return names


def check_keywords(owner: object, kwargs: dict, base: type) -> None:
    """Refuses keyword arguments that neither ``type(owner)`` nor the PML base class ``base`` takes.

    Without it, an unknown keyword travels down PML's ``**kwargs`` chain and Python reports it as
    ``ModuleWithRecords.__init__() got an unexpected keyword argument``, naming a class the user never wrote.

    Args:
        owner: the object being constructed (its class is named).
        kwargs: the keyword arguments about to be passed to ``base.__init__``.
        base: the PML class whose ``__init__`` chain receives ``kwargs`` (e.g. BaseMetricLossFunction).

    Raises:
        TypeError: naming ``type(owner)``, the unknown keyword(s), a close match and what it takes.
    """
    pml = _init_parameters(base.__mro__)
    unknown = [name for name in kwargs if name not in pml]
    if not unknown:
        return
    cls = type(owner)
    own = [name for name in _init_parameters(c for c in cls.__mro__ if c not in base.__mro__) if name not in pml]
    names = ", ".join(repr(name) for name in unknown)
    close = difflib.get_close_matches(unknown[0], own + pml, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    got = "unexpected keyword arguments" if len(unknown) > 1 else "an unexpected keyword argument"
    raise TypeError(
        f"{cls.__name__} got {got} {names}{hint}; it takes "
        f"{', '.join(own) + ' and ' if own else ''}PML's {', '.join(pml)}"
    )
