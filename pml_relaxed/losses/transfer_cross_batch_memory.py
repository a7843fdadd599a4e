"""Cross-batch memory (Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020) for transfer losses:
PML's CrossBatchMemory with a teacher memory beside the student memory."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from pytorch_metric_learning.losses import CrossBatchMemory
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from pytorch_metric_learning.utils.module_with_records import ModuleWithRecords

from .. import _validation as v
from .._pairs import drop_self_pairs
from .._teacher import takes_keyword, takes_teacher, teacher_kwargs
from .dark_rank_loss import DarkRankLoss
from .fitnet_loss import FitNetLoss
from .pkt_loss import PKTLoss
from .rkd_loss import RKDLoss

_NO_SELF_PAIR_EXCLUSION = (
    "accepts no indices_tuple, so the self pairs of the current batch, which sit in the memory, cannot be "
    "excluded; call it with a ref_emb/teacher_ref_emb of your own that leaves the current batch out"
)
_UNSUPPORTED = (
    (FitNetLoss, "it regresses each sample's own teacher embedding and accepts no reference set (ref_emb)"),
    (RKDLoss, f"it uses every (query, reference) pair and triplet and {_NO_SELF_PAIR_EXCLUSION}"),
    (PKTLoss, f"its conditionals run over every reference and it {_NO_SELF_PAIR_EXCLUSION}"),
    (DarkRankLoss, f"its rank term ranks every reference and {_NO_SELF_PAIR_EXCLUSION.replace('accepts', 'takes')}"),
)


_MEMORY_BUFFERS = ("embedding_memory", "teacher_memory", "label_memory")
_LABELS_UNKNOWN = -1  # _memory_has_labels before the first enqueue


class _ScalarBuffer:
    """An attribute of the memory that lives in a 0-dim buffer of the module, so that ``state_dict()`` holds it.

    Reading it decodes the buffer's integer value (``decode(int(buffer))``); setting it fills the buffer in place
    with ``encode(value)``, on the buffer's device and in its dtype.
    """

    def __init__(self, buffer: str, decode: Callable[[int], Any], encode: Callable[[Any], int], doc: str) -> None:
        self.buffer, self.decode, self.encode = buffer, decode, encode
        self.__doc__ = f"{doc} (the ``{buffer}`` buffer)"

    def __get__(self, module: Optional[torch.nn.Module], owner: type = None) -> Any:
        if module is None:
            return self
        return self.decode(int(getattr(module, self.buffer)))

    def __set__(self, module: torch.nn.Module, value: Any) -> None:
        getattr(module, self.buffer).fill_(self.encode(value))


def _check_size(name: str, value: object) -> int:
    v.check_required(name, value, "an int >= 1")
    return v.check_optional_positive_int(name, value)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.ndim}D tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def check_no_batch_miner(loss: object, miner: object, slot: str) -> None:
    """Refuses a miner of the batch whose pairs would reach a cross-batch memory as its ``indices_tuple``.

    A memory reads an ``indices_tuple`` as (batch row, memory slot) pairs, so a miner run on the batch alone
    (a trainer's ``tuple_miner``, a TransferMultipleLosses miner) would have its batch indices read as memory
    slots: training would go on with the wrong pairs. The memory's own ``miner=`` mines the queries against
    the whole memory instead. Wrappers that name what they wrap in ``teacher_passthrough`` (the distributed
    wrappers) are looked through; a memory is recognised by its ``enqueue_mask`` argument (PML's included).

    Args:
        loss: the loss that would receive the miner's pairs.
        miner: the miner, or None (nothing to check).
        slot: where the miner was given, for the message (e.g. ``"mining_funcs['tuple_miner']"``).

    Raises:
        ValueError: ``loss`` is (or wraps) a cross-batch memory and ``miner`` is not None.
    """
    if miner is None:
        return
    memory = loss
    while getattr(memory, "teacher_passthrough", None) is not None:
        memory = memory.teacher_passthrough
    if not takes_keyword(memory, "enqueue_mask"):
        return
    name, miner_name = type(memory).__name__, type(miner).__name__
    raise ValueError(
        f"{slot} {miner_name} mines the batch, but {name} is a cross-batch memory, which reads an indices_tuple as "
        f"(batch row, memory slot) pairs, so the batch indices would be read as memory slots; give the miner to the "
        f"memory instead, {name}(loss, ..., miner={miner_name}(...)), which mines the queries against the whole "
        f"memory, and drop {slot}"
    )


class TransferCrossBatchMemory(ModuleWithRecords):
    r"""Cross-batch memory for embedding transfer: queues of past student and teacher embeddings as the reference set.

    PML 2.9's :class:`~pytorch_metric_learning.losses.CrossBatchMemory`, with a teacher memory
    (``memory_size x teacher_embedding_size``) beside the student memory (``memory_size x
    embedding_size``) and a label memory when labels are given. On each call:

    1. The rows to enqueue (the whole batch, or the rows where ``enqueue_mask`` is True) are written,
       detached, into the ring buffers at ``queue_idx, queue_idx + 1, ...`` (mod ``memory_size``); once
       the queue has wrapped around, each new row replaces the oldest.
    2. The queries are the whole batch (no mask) or the rows where ``enqueue_mask`` is False. The reference
       set is the filled memory: its first ``queue_idx`` rows before the first wrap-around, all
       ``memory_size`` rows after. It contains the batch just enqueued, so m = min(rows enqueued so
       far, memory_size), the current batch included.
    3. Pairs: the miner's (``miner(queries, labels, ref_emb, ref_labels)``, with ``teacher_emb=`` and
       ``teacher_ref_emb=`` when it takes them, e.g. TeacherSimilarityMiner), or else all (query,
       reference) pairs (PML's ``get_all_pairs_indices`` with labels; all pairs as positives without:
       a transfer loss only uses their union). A given ``indices_tuple`` (anchors index the batch,
       partners index the reference set, as in PML) is converted to that format and appended.
    4. Self pairs are removed: without ``enqueue_mask`` each query also sits in the memory (at the
       slot it was just written to), and every pair (query i, slot of i) is dropped, from the
       positives and the negatives (PML drops the positives; with labels a self pair is never a
       negative). With ``enqueue_mask`` queries are not enqueued, so there is none.
    5. ``loss(queries, labels, pairs, ref_emb, ref_labels, teacher_emb=teacher queries,
       teacher_ref_emb=teacher memory)`` (a loss without ``teacher_emb`` gets PML's five arguments).

    So one step's loss equals the wrapped loss called with ``ref_emb`` = the filled student memory,
    ``teacher_ref_emb`` = the filled teacher memory and ``indices_tuple`` = the pairs of step 3 minus
    the self pairs; its gradient reaches only the current (query) rows, the memory being detached.

    The relaxed losses restrict the pair sum to those pairs, while their relative distances divide by
    the row mean over *every* reference column, ``(1/m) sum_k ||g_i - g_k||`` over the whole filled
    memory, the query's own stored copy included at distance 0 (not a pair, but a column). This is the
    convention of the plain loss, whose row mean over the batch includes the zero self-distance, so on
    a first step (empty memory, no mask) the memory loss equals the plain loss on the batch (its
    gradient is the queries' part only, the memory copy being detached). Without a miner the pairs are
    index tensors of n x m entries, the size of the distance matrix the loss computes anyway. Note that
    a miner sees the whole memory, the query's own copy included, before self pairs are removed (as in
    PML): ``TeacherSimilarityMiner(pos_topk=k)`` finds that copy as its most similar reference, so a
    query keeps k - 1 positives.

    Differences from PML 2.9, all on its edge cases: self pairs are also removed from the negatives,
    from triplets whose negative is the self copy, and from an appended ``indices_tuple`` (PML keeps
    those); the memory changes only once the wrapped loss has returned; an empty enqueue leaves the
    queue as it is (PML then marks it filled); no query or no reference gives a differentiable zero;
    bad inputs raise ValueError/TypeError instead of AssertionError.

    Supported losses: the relaxed losses (:class:`RelaxedContrastiveLoss`,
    :class:`RelaxedMultiSimilarityLoss`), any loss taking ``teacher_emb`` that restricts its pairs to
    ``indices_tuple`` when ``ref_emb`` is given, and the PML pair and triplet losses that PML's
    CrossBatchMemory supports (e.g. ContrastiveLoss), which need a teacher-based miner. Not supported
    (error at construction): FitNetLoss (no reference set), RKDLoss, PKTLoss and DarkRankLoss (no way
    to exclude the self pairs).

    Under ``pml_relaxed.distributed``, wrap the memory, not the loss:
    ``DistributedTransferLossWrapper(TransferCrossBatchMemory(loss, ...))``, as PML's
    ``DistributedLossWrapper(CrossBatchMemory(...))``; every rank then enqueues the global batch.
    In :class:`~pml_relaxed.trainers.EmbeddingTransfer` use it as the ``transfer_loss`` and give the
    miner to it (``miner=``), not to ``mining_funcs``: a batch miner's indices do not index the memory, so
    the trainer (and TransferMultipleLosses) refuse a miner beside a memory (:func:`check_no_batch_miner`).

    Checkpoints: ``state_dict()`` holds the whole queue: the three memories and, as buffers, its position
    ``_queue_idx``, ``_has_been_filled`` and ``_memory_has_labels`` (-1 before the first enqueue), read
    as the ``queue_idx``, ``has_been_filled`` and ``memory_has_labels`` attributes. They move with the
    module (``.to()``), and a loaded memory keeps the saved dtype. As a ``transfer_loss`` of a PML
    trainer it is saved and loaded with the models by PML's ``HookContainer`` (``transfer_loss_<epoch>.pth``),
    so a resumed run continues the queue where it stopped. A state_dict saved before these buffers existed
    fails to load (PyTorch's ``RuntimeError: ... Missing key(s) in state_dict: "_queue_idx", ...``);
    ``load_state_dict(state, strict=False)`` loads its memories and leaves the position as it is (slot 0
    and not filled in a new memory, what that version resumed with).

    Args:
        loss: the wrapped loss (see above).
        embedding_size: student embedding dimension d, >= 1.
        teacher_embedding_size: teacher embedding dimension D, >= 1.
        memory_size: number of rows kept, >= 1 (PML: 1024). A batch (or the enqueued part) holds at most that.
        miner: a miner called on the queries and the memory, or None for all pairs.

    Shape:
        embeddings (n, d), labels (n,) or None, enqueue_mask (n,) bool, teacher_emb (n, D). Output: the
        wrapped loss's (a scalar with its default reducer).

    Raises:
        TypeError: a loss or miner that is not an ``nn.Module``, an unsupported pml_relaxed loss (FitNetLoss,
            RKDLoss, PKTLoss, DarkRankLoss), non-int sizes, bad inputs (see forward).
        ValueError: sizes < 1, a PML loss that PML's CrossBatchMemory does not support; neither the loss
            nor the miner taking ``teacher_emb`` (the teacher memory would go unused: use PML's
            CrossBatchMemory); bad inputs (see forward).

    Examples:
        >>> import torch
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory
        >>> xbm = TransferCrossBatchMemory(RelaxedContrastiveLoss(), embedding_size=16,
        ...                                teacher_embedding_size=64, memory_size=48)
        >>> for step in range(4):
        ...     student = torch.randn(16, 16, requires_grad=True)
        ...     loss = xbm(student, teacher_emb=torch.randn(16, 64))
        ...     loss.backward()
        >>> xbm.queue_idx, xbm.has_been_filled
        (16, True)
    """

    def __init__(
        self,
        loss: torch.nn.Module,
        embedding_size: int,
        teacher_embedding_size: int,
        memory_size: int = 1024,
        miner: Optional[torch.nn.Module] = None,
    ) -> None:
        super().__init__()
        self._check_loss_and_miner(loss, miner)
        self.loss = loss
        self.miner = miner
        self.embedding_size = _check_size("embedding_size", embedding_size)
        self.teacher_embedding_size = _check_size("teacher_embedding_size", teacher_embedding_size)
        self.memory_size = _check_size("memory_size", memory_size)
        self.reset_queue()
        self.add_to_recordable_attributes(
            list_of_names=["embedding_size", "teacher_embedding_size", "memory_size", "queue_idx"], is_stat=False
        )

    @staticmethod
    def _check_loss_and_miner(loss: object, miner: object) -> None:
        if not isinstance(loss, torch.nn.Module):
            raise TypeError(f"loss must be a torch.nn.Module (a pml_relaxed or PML loss); got {type(loss).__name__}")
        if miner is not None and not isinstance(miner, torch.nn.Module):
            raise TypeError(
                f"miner must be a torch.nn.Module (a PML or pml_relaxed miner) or None; got {type(miner).__name__}"
            )
        name = type(loss).__name__
        for loss_class, reason in _UNSUPPORTED:
            if isinstance(loss, loss_class):
                raise TypeError(f"TransferCrossBatchMemory does not support {name}: {reason}")
        if takes_teacher(loss):
            return
        if name not in CrossBatchMemory.supported_losses():
            raise ValueError(
                f"loss {name} takes no teacher_emb, so it must be a pair or triplet loss that PML's CrossBatchMemory "
                f"supports ({', '.join(CrossBatchMemory.supported_losses())}); got {name}"
            )
        if miner is None or not takes_teacher(miner):
            got = "no miner" if miner is None else f"miner {type(miner).__name__}"
            raise ValueError(
                f"neither loss {name} nor the miner takes teacher_emb, so the teacher memory would go unused: pass a "
                "teacher-based miner (e.g. pml_relaxed.miners.TeacherSimilarityMiner) or use PML's CrossBatchMemory; "
                f"got {got}"
            )

    def reset_queue(self) -> None:
        """Empties the memory (zeroed float32 buffers; they take the inputs' dtype and device on the next call)."""
        self.register_buffer("embedding_memory", torch.zeros(self.memory_size, self.embedding_size))
        self.register_buffer("teacher_memory", torch.zeros(self.memory_size, self.teacher_embedding_size))
        self.register_buffer("label_memory", torch.zeros(self.memory_size, dtype=torch.long))
        # the queue's position and flags are buffers too, so that state_dict() holds the whole queue
        self.register_buffer("_queue_idx", torch.zeros((), dtype=torch.long))
        self.register_buffer("_has_been_filled", torch.zeros((), dtype=torch.bool))
        self.register_buffer("_memory_has_labels", torch.full((), _LABELS_UNKNOWN, dtype=torch.int8))

    queue_idx = _ScalarBuffer("_queue_idx", int, int, "The slot the next enqueued row is written to.")
    has_been_filled = _ScalarBuffer(
        "_has_been_filled", bool, bool, "Whether the queue has wrapped around, i.e. every row holds an embedding."
    )
    memory_has_labels = _ScalarBuffer(
        "_memory_has_labels",
        lambda value: None if value == _LABELS_UNKNOWN else bool(value),
        lambda value: _LABELS_UNKNOWN if value is None else int(value),
        "Whether the rows were enqueued with labels; None before the first enqueue.",
    )

    def _load_from_state_dict(
        self,
        state_dict: Dict[str, Any],
        prefix: str,
        local_metadata: Dict[str, Any],
        strict: bool,
        missing_keys: List[str],
        unexpected_keys: List[str],
        errors: List[str],
    ) -> None:
        # the memory takes the saved dtype (load_state_dict would cast it into the current buffers'), so that a
        # float64 queue resumes in float64
        for name in _MEMORY_BUFFERS:
            saved, current = state_dict.get(prefix + name), self._buffers[name]
            if isinstance(saved, torch.Tensor) and saved.shape == current.shape and saved.dtype != current.dtype:
                self._buffers[name] = current.to(saved.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    @property
    def num_filled(self) -> int:
        """Number of memory rows that hold embeddings (the size m of the reference set after a call)."""
        return self.memory_size if self.has_been_filled else self.queue_idx

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        indices_tuple: Optional[Sequence[torch.Tensor]] = None,
        enqueue_mask: Optional[torch.Tensor] = None,
        *,
        teacher_emb: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Enqueues the batch, then computes the wrapped loss of the queries against the memory.

        All inputs are checked before the memory changes, and the memory is updated only once the
        wrapped loss has returned (a failing call leaves it as it was).

        Args:
            embeddings: (n, d) student embeddings.
            labels: (n,) labels, or None for label-free transfer. Give them on every call or on none
                (since the last :meth:`reset_queue`).
            indices_tuple: extra PML pairs or triplets: anchors index ``embeddings``, partners index the
                filled memory (PML's convention). Excludes ``enqueue_mask``.
            enqueue_mask: (n,) bool: True rows are enqueued (references only), False rows are the queries.
            teacher_emb: (n, D) teacher embeddings of the same samples (required).

        Returns:
            The wrapped loss; a differentiable zero when there is no query or no reference.

        Raises:
            TypeError: non-tensor or non-float embeddings, a non-bool enqueue_mask, a malformed indices_tuple.
            ValueError: a missing or non-finite teacher_emb, dimensions other than the memory's, mismatched
                rows, indices_tuple with enqueue_mask, more rows to enqueue than memory_size, labels given
                on some calls only, labels=None with a miner that takes no teacher_emb, a loss or miner that
                reads the teacher but takes no teacher_ref_emb.
            IndexError: an indices_tuple anchor outside the batch, or a partner outside the filled memory.
        """
        self.reset_stats()
        embeddings, labels, teacher_emb, enqueue_mask = self._check_inputs(
            embeddings, labels, indices_tuple, enqueue_mask, teacher_emb
        )
        if enqueue_mask is None:
            queue_rows = query_rows = None
        else:
            queue_rows, query_rows = enqueue_mask, ~enqueue_mask
        queue_emb, queue_teacher, queue_labels = self._rows((embeddings, teacher_emb, labels), queue_rows)
        query_emb, query_teacher, query_labels = self._rows((embeddings, teacher_emb, labels), query_rows)

        num_enqueued = queue_emb.shape[0]
        device = embeddings.device
        queue_idx = self.queue_idx  # read once: the buffer may sit on a GPU
        slots = (queue_idx + torch.arange(num_enqueued, device=device)) % self.memory_size
        memory = self.embedding_memory.to(device=device, dtype=embeddings.dtype)
        memory = memory.index_copy(0, slots, queue_emb.detach())
        teacher_memory = self.teacher_memory.to(device=device, dtype=teacher_emb.dtype)
        teacher_memory = teacher_memory.index_copy(0, slots, queue_teacher)
        label_memory = self.label_memory.to(device=device)
        if labels is not None:
            label_memory = label_memory.to(labels.dtype).index_copy(0, slots, queue_labels.detach())
        has_been_filled = self.has_been_filled or queue_idx + num_enqueued >= self.memory_size
        num_refs = self.memory_size if has_been_filled else queue_idx + num_enqueued
        ref_emb, ref_teacher = memory[:num_refs], teacher_memory[:num_refs]
        ref_labels = None if labels is None else label_memory[:num_refs]

        if query_emb.shape[0] == 0 or num_refs == 0:
            loss = embeddings.sum() * 0
        else:
            self_slots = slots if enqueue_mask is None else None
            pairs = self._pairs(
                query_emb, query_labels, query_teacher, ref_emb, ref_labels, ref_teacher, indices_tuple, self_slots
            )
            teacher = teacher_kwargs(self.loss, query_teacher, ref_teacher, ref_emb)
            loss = self.loss(query_emb, query_labels, pairs, ref_emb, ref_labels, **teacher)

        self.embedding_memory, self.teacher_memory, self.label_memory = memory, teacher_memory, label_memory
        if num_enqueued > 0:
            self.queue_idx = (queue_idx + num_enqueued) % self.memory_size
            self.has_been_filled = has_been_filled
            self.memory_has_labels = labels is not None
        return loss

    def _check_inputs(self, embeddings, labels, indices_tuple, enqueue_mask, teacher_emb):
        v.check_teacher_pair(embeddings, None, teacher_emb, None)
        self._check_dimension("embeddings", embeddings, self.embedding_size, "embedding_size")
        self._check_dimension("teacher_emb", teacher_emb, self.teacher_embedding_size, "teacher_embedding_size")
        teacher_emb = c_f.to_device(teacher_emb.detach(), embeddings)
        num_rows = embeddings.shape[0]
        if labels is not None:
            v.check_labels("labels", labels, num_rows, "embeddings")
            labels = c_f.to_device(labels, embeddings)
        has_labels = labels is not None
        if self.num_filled > 0 and self.memory_has_labels is not None and self.memory_has_labels != has_labels:
            stored = "with labels" if self.memory_has_labels else "without labels"
            raise ValueError(
                f"the memory holds rows enqueued {stored}, so labels must be given on every call or on none (until "
                f"reset_queue()); got labels={'None' if labels is None else 'a tensor'}"
            )
        if indices_tuple is not None:
            if enqueue_mask is not None:
                raise ValueError(
                    "indices_tuple and enqueue_mask are mutually exclusive (as in PML's CrossBatchMemory); got both"
                )
            # anchors index the batch, partners the filled memory once the batch is enqueued
            num_refs = min(int(self.num_filled) + num_rows, self.memory_size)
            v.check_indices_tuple(indices_tuple, num_rows, num_refs, refs="the filled memory (the batch enqueued)")
        if enqueue_mask is None:
            num_enqueued = num_rows
        else:
            if not isinstance(enqueue_mask, torch.Tensor) or enqueue_mask.dtype != torch.bool:
                raise TypeError(
                    f"enqueue_mask must be a 1D bool tensor of shape ({num_rows},); got {_describe(enqueue_mask)}"
                )
            if enqueue_mask.ndim != 1 or enqueue_mask.shape[0] != num_rows:
                raise ValueError(
                    f"enqueue_mask must have one entry per row of embeddings: expected shape ({num_rows},), got "
                    f"{tuple(enqueue_mask.shape)}"
                )
            enqueue_mask = c_f.to_device(enqueue_mask, embeddings)
            num_enqueued = int(enqueue_mask.sum())
        if num_enqueued > self.memory_size:
            raise ValueError(
                f"at most memory_size={self.memory_size} rows can be enqueued per call; got {num_enqueued} "
                "(use a smaller batch, a larger memory_size, or an enqueue_mask)"
            )
        if labels is None and self.miner is not None and not takes_teacher(self.miner):
            raise ValueError(
                f"miner {type(self.miner).__name__} takes no teacher_emb, so it mines from labels; got labels=None"
            )
        return embeddings, labels, teacher_emb, enqueue_mask

    @staticmethod
    def _check_dimension(name: str, tensor: torch.Tensor, size: int, size_name: str) -> None:
        if tensor.shape[1] != size:
            raise ValueError(
                f"{name} must have {size_name}={size} columns (the memory's); got {tensor.shape[1]} "
                f"(shape {tuple(tensor.shape)})"
            )

    @staticmethod
    def _rows(tensors: Tuple[Optional[torch.Tensor], ...], rows: Optional[torch.Tensor]):
        if rows is None:
            return tensors
        return tuple(None if tensor is None else tensor[rows] for tensor in tensors)

    def _pairs(
        self, query_emb, query_labels, query_teacher, ref_emb, ref_labels, ref_teacher, indices_tuple, self_slots
    ):
        if self.miner is not None:
            teacher = teacher_kwargs(self.miner, query_teacher, ref_teacher, ref_emb)
            pairs = self.miner(query_emb, query_labels, ref_emb, ref_labels, **teacher)
        elif query_labels is not None:
            pairs = lmu.get_all_pairs_indices(query_labels, ref_labels)
        else:
            anchors, partners = torch.where(
                torch.ones(query_emb.shape[0], ref_emb.shape[0], dtype=torch.bool, device=query_emb.device)
            )
            pairs = (anchors, partners, anchors[:0], partners[:0])
        if indices_tuple is not None:
            indices_tuple = tuple(c_f.to_device(indices, query_emb).long() for indices in indices_tuple)
            if len(pairs) == 4:
                indices_tuple = lmu.convert_to_pairs(indices_tuple, query_labels)
            else:
                indices_tuple = lmu.convert_to_triplets(indices_tuple, query_labels)
            pairs = c_f.concatenate_indices_tuples(pairs, indices_tuple)
        if self_slots is None:
            return pairs
        return drop_self_pairs(pairs, self_slots)
