"""STML's batches: random queries, each with its nearest neighbours in an embedding space refreshed every pass."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch.utils.data import BatchSampler

from .. import _validation as v

Embeddings = Union[torch.Tensor, Callable[[], torch.Tensor]]


def nearest_neighbour_table(embeddings: torch.Tensor, k: int, block_size: int = 1024) -> torch.Tensor:
    """``(N, k)`` indices: row i holds i itself, then its ``k - 1`` nearest other rows by Euclidean distance.

    Distances are computed in float64 on ``block_size`` query rows at a time (``O(block_size * N)`` memory).
    Ties are broken by the smaller index (a stable sort), so the table is deterministic; i comes first even
    when another row is identical to it.

    Args:
        embeddings: ``(N, D)`` floating-point, finite.
        k: neighbours per row, the row itself included, in ``[1, N]``.
        block_size: query rows per block, >= 1.

    Returns:
        ``(N, k)`` int64 indices on the CPU.

    Raises:
        TypeError: embeddings not a floating-point tensor; a non-int k or block_size.
        ValueError: embeddings not 2D, empty or non-finite; k outside ``[1, N]``; block_size < 1.

    Examples:
        >>> import torch
        >>> nearest_neighbour_table(torch.tensor([[0.0], [5.0], [1.0], [4.0]]), k=2).tolist()
        [[0, 2], [1, 3], [2, 0], [3, 1]]
    """
    v.check_embeddings("embeddings", embeddings, "(num_samples, dim)")
    n = embeddings.shape[0]
    if n == 0:
        raise ValueError("embeddings must hold at least one row; got shape (0, D)")
    v.check_finite("embeddings", embeddings)
    v.check_int("k", k, minimum=1)
    if k > n:
        raise ValueError(f"k must be <= the number of rows ({n}); got {k}")
    v.check_int("block_size", block_size, minimum=1)
    x = embeddings.detach().to(device="cpu", dtype=torch.float64)
    squared_norms = (x * x).sum(dim=1)
    rows = []
    for start in range(0, n, block_size):
        block = x[start : start + block_size]
        dist = squared_norms[start : start + block_size, None] + squared_norms[None, :] - 2 * block @ x.T
        dist = dist.clamp_min(0)
        own = torch.arange(start, start + len(block))
        dist[torch.arange(len(block)), own] = -1.0  # the query ranks first, ahead of any duplicate of it
        rows.append(torch.sort(dist, dim=1, stable=True).indices[:, :k])
    return torch.cat(rows)


class NearestNeighbourBatchSampler(BatchSampler):
    """Batches of ``batch_size // neighbours_per_query`` random queries, each with its nearest neighbours.

    The batch construction of STML (Kim et al., "Self-Taught Metric Learning without Labels", CVPR 2022):
    without labels, a random batch of a many-class dataset holds almost no pair of the same class, so the
    relaxed labels have nothing to pull together. Here each batch draws ``q = batch_size //
    neighbours_per_query`` distinct queries uniformly at random and adds, for each, the row of
    :func:`nearest_neighbour_table`: the query and its ``neighbours_per_query - 1`` nearest items. A batch
    is the ``q`` groups one after the other (``batch_size`` indices); neighbourhoods may overlap, so an item
    may appear twice in a batch (as in STML).

    ``embeddings`` is either a fixed ``(N, D)`` tensor (e.g. a frozen teacher's embeddings of the dataset) or
    a callable returning one, e.g. the student's embeddings of the un-augmented dataset. A callable is called
    once at construction and again at the start of every later pass, so each epoch's neighbourhoods come from
    the model as it is then (STML rebuilds them every epoch from the student). Pass it to a PML trainer as
    ``sampler=``: PML hands a ``BatchSampler`` to its DataLoader as the ``batch_sampler``; with
    ``iterations_per_epoch = len(sampler)`` each epoch is one pass. ``state_dict()`` / ``load_state_dict()``
    save and restore the passes begun and the generator, so that a run resumed from a checkpoint (see
    :func:`pml_relaxed.trainers.register_training_state`) draws the batches the uninterrupted run would have.

    Args:
        embeddings: ``(N, D)`` floating-point tensor, one row per dataset item in dataset order, or a
            callable returning one (the same N every call).
        batch_size: indices per batch, a multiple of ``neighbours_per_query``.
        neighbours_per_query: the group size: the query and its nearest items, in ``[1, N]`` (STML: 5).
        num_batches: batches per pass, >= 1; default ``N // batch_size`` (as a DataLoader with
            ``drop_last=True``).
        seed: seed of the sampler's own random generator (the queries); None draws from torch's global
            generator (seeded with ``torch.manual_seed``).
        block_size: query rows per block of the neighbour search (see :func:`nearest_neighbour_table`).

    Raises:
        TypeError: embeddings neither a tensor nor a callable; a callable returning no floating-point tensor;
            non-int batch_size, neighbours_per_query, num_batches, seed or block_size.
        ValueError: batch_size not a multiple of neighbours_per_query; more queries per batch than items;
            neighbours_per_query > N; N < batch_size without num_batches; non-finite or non-2D embeddings;
            a callable whose number of rows changes between passes.

    Examples:
        >>> import torch
        >>> points = torch.tensor([[0.0], [0.1], [5.0], [5.1], [9.0], [9.1]])
        >>> sampler = NearestNeighbourBatchSampler(points, batch_size=4, neighbours_per_query=2, seed=0)
        >>> len(sampler)
        1
        >>> batch = next(iter(sampler))  # two queries, each followed by its nearest neighbour
        >>> all(abs(points[a] - points[b]).item() < 0.2 for a, b in zip(batch[0::2], batch[1::2]))
        True
    """

    def __init__(
        self,
        embeddings: Embeddings,
        batch_size: int,
        neighbours_per_query: int,
        num_batches: Optional[int] = None,
        seed: Optional[int] = None,
        block_size: int = 1024,
    ) -> None:
        if not (isinstance(embeddings, torch.Tensor) or callable(embeddings)):
            raise TypeError(
                "embeddings must be a torch.Tensor of shape (num_samples, dim) or a callable returning one; got "
                f"{type(embeddings).__name__}"
            )
        self.embeddings = embeddings
        self.neighbours_per_query = v.check_int("neighbours_per_query", neighbours_per_query, minimum=1)
        batch_size = v.check_int("batch_size", batch_size, minimum=1)
        if batch_size % self.neighbours_per_query != 0:
            raise ValueError(
                "batch_size must be a multiple of neighbours_per_query (each batch holds whole groups); got "
                f"batch_size={batch_size}, neighbours_per_query={self.neighbours_per_query}"
            )
        self.block_size = v.check_int("block_size", block_size, minimum=1)
        self.seed = v.check_int("seed", seed, minimum=0, allow_none=True)
        self.generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        self.table = self._build_table()
        self.num_samples = len(self.table)
        if batch_size // self.neighbours_per_query > self.num_samples:
            raise ValueError(
                f"a batch draws batch_size // neighbours_per_query = {batch_size // self.neighbours_per_query} "
                f"distinct queries, more than the {self.num_samples} items"
            )
        if num_batches is None:
            if self.num_samples < batch_size:
                raise ValueError(
                    f"the default num_batches, N // batch_size, is 0: N = {self.num_samples} < batch_size = "
                    f"{batch_size}; pass num_batches"
                )
            num_batches = self.num_samples // batch_size
        self.num_batches = v.check_int("num_batches", num_batches, minimum=1)
        super().__init__(range(self.num_samples), batch_size, drop_last=True)
        self._passes = 0

    def _build_table(self) -> torch.Tensor:
        embeddings = self.embeddings() if callable(self.embeddings) else self.embeddings
        v.check_embeddings("embeddings", embeddings, "(num_samples, dim)")
        if embeddings.shape[0] < self.neighbours_per_query:
            raise ValueError(
                f"neighbours_per_query must be <= the number of items ({embeddings.shape[0]}); got "
                f"{self.neighbours_per_query}"
            )
        return nearest_neighbour_table(embeddings, self.neighbours_per_query, self.block_size)

    def refresh(self) -> None:
        """Recomputes the neighbour table from ``embeddings`` (a callable: called again)."""
        table = self._build_table()
        if len(table) != self.num_samples:
            raise ValueError(
                f"embeddings must keep one row per dataset item: expected {self.num_samples} rows, got {len(table)}"
            )
        self.table = table

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs to draw the same batches: the passes begun and the seeded generator's state.

        Returns:
            ``{"passes": int, "generator": ByteTensor or None}`` (None with ``seed=None``: the queries then
            come from torch's global generator, which :class:`pml_relaxed.trainers.RandomState` saves). The
            neighbour table is not saved: a resumed pass rebuilds it from ``embeddings``, as every pass after
            the first does.
        """
        return {"passes": self._passes, "generator": None if self.generator is None else self.generator.get_state()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`; the next pass then refreshes the table (a callable ``embeddings``).

        Raises:
            ValueError: a generator state given to a sampler without ``seed``, or the reverse.
        """
        generator = state_dict["generator"]
        if (generator is None) != (self.generator is None):
            raise ValueError(
                "the state_dict and this sampler disagree on seed: "
                f"{'no generator state' if generator is None else 'a generator state'} for a sampler with "
                f"seed={self.seed}; build the sampler as the saved run did"
            )
        if generator is not None:
            self.generator.set_state(generator.cpu())
        self._passes = int(state_dict["passes"])

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[List[int]]:
        if self._passes > 0 and callable(self.embeddings):
            self.refresh()
        self._passes += 1
        queries_per_batch = self.batch_size // self.neighbours_per_query
        for _ in range(self.num_batches):
            queries = torch.randperm(self.num_samples, generator=self.generator)[:queries_per_batch]
            yield self.table[queries].reshape(-1).tolist()
