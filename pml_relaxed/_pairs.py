"""Index tuples and self pairs, one place each: which (query, reference) pairs a loss, miner or wrapper sees.

PML's index tuples are pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``; both are read here as groups of
(anchor, partner) tensors. A self pair is query i compared with its own row of the reference set,
``(i, offset + i)``: ``offset`` is 0 when the reference set is the batch itself, the batch's first row in a
larger reference set otherwise (a gathered batch, a memory, a block of rows).

Not public API: :func:`pair_mask` and :func:`pair_mask_rows` are public through :mod:`pml_relaxed.functional`.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch

from . import _validation as v

__all__ = [
    "anchor_groups",
    "anchors_in_rows",
    "drop_self_pairs",
    "fill_self_pairs_",
    "pair_keys",
    "pair_mask",
    "pair_mask_rows",
    "self_pair_mask",
    "self_pairs",
    "shift_anchors",
    "zero_self_pairs",
]


# ----------------------------------------------------------------------------------------- self pairs


def self_pairs(num_rows: int, offset: int, device: Optional[torch.device]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (row, column) indices of the self pairs ``(i, offset + i)`` of ``num_rows`` queries."""
    rows = torch.arange(num_rows, device=device)
    return rows, rows + offset


def fill_self_pairs_(mat: torch.Tensor, offset: int, value) -> torch.Tensor:
    """Writes ``value`` at the self pairs ``(i, offset + i)`` of ``mat`` (in place) and returns it."""
    mat[self_pairs(mat.shape[0], offset, mat.device)] = value
    return mat


def zero_self_pairs(mat: torch.Tensor, offset: int) -> torch.Tensor:
    """``mat`` with its self pairs ``(i, offset + i)`` set to 0, out of place (differentiable)."""
    zero = torch.zeros((), dtype=mat.dtype, device=mat.device)
    return mat.index_put(self_pairs(mat.shape[0], offset, mat.device), zero)


def self_pair_mask(
    num_queries: int, num_refs: int, offset: int = 0, device: Optional[torch.device] = None
) -> torch.Tensor:
    """(n, m) bool mask, True exactly at the self pairs ``(i, offset + i)``."""
    if offset == 0:
        return torch.eye(num_queries, num_refs, dtype=torch.bool, device=device)
    mask = torch.zeros(num_queries, num_refs, dtype=torch.bool, device=device)
    return fill_self_pairs_(mask, offset, True)


# ----------------------------------------------------------------------------------------- index tuples


def anchor_groups(indices_tuple: Sequence[torch.Tensor]) -> List[List[torch.Tensor]]:
    """The tuple as groups that share an anchor: ``[[a, p, n]]`` for triplets, ``[[a1, p], [a2, n]]`` for pairs."""
    tensors = list(indices_tuple)
    return [tensors] if len(tensors) == 3 else [tensors[:2], tensors[2:]]


def _anchor_partner_pairs(indices_tuple: Sequence[torch.Tensor]):
    return [(group[0], partner) for group in anchor_groups(indices_tuple) for partner in group[1:]]


def shift_anchors(indices_tuple: Sequence[torch.Tensor], shift: int) -> tuple[torch.Tensor, ...]:
    """Adds ``shift`` to the anchor tensors (a of triplets; a1 and a2 of pairs)."""
    return tuple(t + shift if k == 0 else t for group in anchor_groups(indices_tuple) for k, t in enumerate(group))


def drop_self_pairs(
    indices_tuple: Sequence[torch.Tensor], offset: Union[int, torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """Removes the self pairs: query i compared with its own row in the reference set.

    That row is ``offset + i`` for an int ``offset``, ``offset[i]`` for a tensor (e.g. the memory slots a
    batch was written to). A triplet goes when either of its pairs is a self pair.
    """
    out = []
    for anchor, *partners in anchor_groups(indices_tuple):
        own = offset[anchor] if isinstance(offset, torch.Tensor) else anchor + offset
        keep = torch.stack([partner != own for partner in partners]).all(0)
        out += [t[keep] for t in (anchor, *partners)]
    return tuple(out)


def anchors_in_rows(indices_tuple: Sequence[torch.Tensor], offset: int, n: int, device) -> tuple[torch.Tensor, ...]:
    """The tuples whose anchor is a global row in ``[offset, offset + n)``, anchors made local."""
    tensors = [t.to(device=device, dtype=torch.long) for t in indices_tuple]
    out = []
    for group in anchor_groups(tensors):
        keep = (group[0] >= offset) & (group[0] < offset + n)
        out += [t[keep] for t in group]
    return shift_anchors(out, -offset)


def pair_keys(indices_tuple: Sequence[torch.Tensor], num_queries: int, num_refs: int, device) -> torch.Tensor:
    """Sorted unique flat keys ``anchor * m + other`` of the union of a PML tuple's pairs.

    Every index is checked against its range first: a key of an index past the end (or negative) would be
    the key of another pair.
    """
    v.check_indices_tuple(indices_tuple, num_queries, num_refs)
    keys = [
        anchor.to(device=device, dtype=torch.long) * num_refs + other.to(device=device, dtype=torch.long)
        for anchor, other in _anchor_partner_pairs(indices_tuple)
    ]
    return torch.unique(torch.cat(keys))


def pair_mask(
    num_queries: int,
    num_refs: int,
    indices_tuple: Optional[Sequence[torch.Tensor]] = None,
    self_reference: bool = True,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Boolean (n, m) mask of the pairs that contribute to the loss.

    Args:
        num_queries: n.
        num_refs: m.
        indices_tuple: None for all pairs, or PML's pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``;
            the union of the (anchor, other) pairs is used, each pair once.
        self_reference: the reference set is the batch itself; pairs (i, i) never contribute.
        device: device of the mask.

    Returns:
        (n, m) bool tensor.

    Raises:
        TypeError: if indices_tuple is not a tuple/list of 3 or 4 one-dimensional integer tensors.
        ValueError: an anchor tensor of another length than its partners.
        IndexError: an anchor outside ``[0, n)`` or a partner outside ``[0, m)`` (negative ones included).
    """
    return pair_mask_rows(num_queries, num_refs, indices_tuple, self_reference, device)(0, num_queries)


def pair_mask_rows(
    num_queries: int,
    num_refs: int,
    indices_tuple: Optional[Sequence[torch.Tensor]] = None,
    self_reference: bool = True,
    device: Optional[torch.device] = None,
) -> Callable[[int, int], torch.Tensor]:
    """Rows of :func:`pair_mask` on demand: ``rows(start, end)`` is ``pair_mask(...)[start:end]``.

    The pairs of ``indices_tuple`` are sorted once (O(number of pairs) memory); each block then costs
    O(block * m). Locating a block's pairs reads two indices back to the host, checking the indices' bounds
    one more.

    Raises:
        TypeError, ValueError, IndexError: as :func:`pair_mask`.
    """
    keys = None if indices_tuple is None else pair_keys(indices_tuple, num_queries, num_refs, device)

    def rows(start: int, end: int) -> torch.Tensor:
        if keys is None:
            mask = torch.ones(end - start, num_refs, dtype=torch.bool, device=device)
        else:
            mask = torch.zeros((end - start) * num_refs, dtype=torch.bool, device=device)
            if start == 0 and end == num_queries:
                mask[keys] = True
            else:
                bounds = torch.tensor([start * num_refs, end * num_refs], device=keys.device)
                lo, hi = torch.searchsorted(keys, bounds).tolist()
                mask[keys[lo:hi] - start * num_refs] = True
            mask = mask.view(end - start, num_refs)
        if self_reference:
            fill_self_pairs_(mask, start, False)
        return mask

    return rows
