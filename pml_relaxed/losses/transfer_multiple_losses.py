"""A weighted sum of losses, each with its optional miner: PML's MultipleLosses that passes the teacher on."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch

from .. import _validation as v
from .._teacher import takes_keyword, takes_teacher, teacher_kwargs
from .transfer_cross_batch_memory import check_no_batch_miner

LossesArg = Union[Sequence[torch.nn.Module], Mapping[str, torch.nn.Module]]


class TransferMultipleLosses(torch.nn.Module):
    r"""``sum_k weights[k] * losses[k](embeddings, labels, indices_k, ...)``, the teacher going only where it is read.

    PML's :class:`~pytorch_metric_learning.losses.MultipleLosses` for transfer: a transfer loss (e.g.
    :class:`RelaxedContrastiveLoss`) beside label losses (e.g. PML's ``ProxyAnchorLoss``) outside the
    trainer. ``losses`` is a list or a dict; ``miners`` and ``weights`` follow its structure (a list of
    the same length, ``None`` entries for losses without a miner; or a dict whose keys are loss keys,
    a subset for ``miners``, all of them for ``weights``). For each loss k:

    - ``indices_k`` is its miner's output, ``miner(embeddings, labels, ref_emb, ref_labels)``, or the
      ``indices_tuple`` given to forward (mutually exclusive with miners, as in PML);
    - ``teacher_emb=`` (and ``teacher_ref_emb=`` with a reference set) is passed to the losses and
      miners whose forward takes it (signature inspection, :func:`pml_relaxed._teacher.takes_teacher`),
      and only to them: PML losses and miners receive PML's arguments;
    - ``ref_emb`` / ``ref_labels``, when given, are passed by keyword to every loss (one that takes no
      ``ref_emb`` raises) and positionally to every miner.

    The teacher is never dropped silently: a ``teacher_emb`` that no loss or miner reads, or a missing
    one that some loss or miner needs, raises.

    Args:
        losses: a non-empty list/tuple or dict of losses (``nn.Module``).
        miners: None, or miners in the structure of ``losses`` (``nn.Module`` or None entries).
        weights: None (all 1), or non-negative numbers in the structure of ``losses``.

    Raises:
        TypeError: losses that are not a list/tuple/dict of ``nn.Module``; miners or weights of another
            structure; non-module miners; non-number weights.
        ValueError: empty losses; lengths or keys that do not match; negative weights; a miner for a
            cross-batch memory (its pairs would index the batch, not the memory: give the miner to the
            memory's ``miner=``); bad inputs (see forward).

    Examples:
        >>> import torch
        >>> from pytorch_metric_learning.losses import ContrastiveLoss, ProxyAnchorLoss
        >>> from pml_relaxed.losses import RelaxedContrastiveLoss, TransferMultipleLosses
        >>> from pml_relaxed.miners import TeacherSimilarityMiner
        >>> loss_fn = TransferMultipleLosses(
        ...     {"transfer": RelaxedContrastiveLoss(), "teacher_pairs": ContrastiveLoss(),
        ...      "labels": ProxyAnchorLoss(num_classes=4, embedding_size=16)},
        ...     miners={"teacher_pairs": TeacherSimilarityMiner(pos_topk=2)},
        ...     weights={"transfer": 1.0, "teacher_pairs": 0.5, "labels": 0.1})
        >>> student, labels = torch.randn(16, 16, requires_grad=True), torch.arange(4).repeat(4)
        >>> loss = loss_fn(student, labels, teacher_emb=torch.randn(16, 64))
        >>> loss.backward()
    """

    def __init__(
        self,
        losses: LossesArg,
        miners: Optional[Union[Sequence[Optional[torch.nn.Module]], Mapping[str, torch.nn.Module]]] = None,
        weights: Optional[Union[Sequence[float], Mapping[str, float]]] = None,
    ) -> None:
        super().__init__()
        self.is_dict = isinstance(losses, Mapping)
        if not self.is_dict and not isinstance(losses, (list, tuple)):
            raise TypeError(f"losses must be a list, tuple or dict of losses; got {type(losses).__name__}")
        if len(losses) == 0:
            raise ValueError("losses must hold at least one loss; got an empty collection")
        keys = list(losses.keys()) if self.is_dict else list(range(len(losses)))
        for key in keys:
            if not isinstance(losses[key], torch.nn.Module):
                raise TypeError(f"losses[{key!r}] must be a torch.nn.Module (a loss); got {type(losses[key]).__name__}")
        self.losses = torch.nn.ModuleDict(losses) if self.is_dict else torch.nn.ModuleList(losses)
        self.loss_keys = keys
        miners_by_key = self._by_key("miners", miners, keys, all_keys=False)
        for key, miner in miners_by_key.items():
            if miner is not None and not isinstance(miner, torch.nn.Module):
                raise TypeError(
                    f"miners[{key!r}] must be a torch.nn.Module (a miner) or None; got {type(miner).__name__}"
                )
            check_no_batch_miner(losses[key], miner, f"miners[{key!r}]")
        self.miners = None
        if any(miner is not None for miner in miners_by_key.values()):
            if self.is_dict:
                self.miners = torch.nn.ModuleDict({k: m for k, m in miners_by_key.items() if m is not None})
            else:
                self.miners = torch.nn.ModuleList([miners_by_key.get(k) for k in keys])
        weights_by_key = self._by_key("weights", weights, keys, all_keys=True)
        self.weights: Union[List[float], Dict[str, float]] = (
            {k: v.check_non_negative(f"weights[{k!r}]", w) for k, w in weights_by_key.items()}
            if weights is not None
            else {k: 1.0 for k in keys}
        )
        if not self.is_dict:
            self.weights = [self.weights[k] for k in keys]
        self.teacher_readers = [name for name, module in self._members() if takes_teacher(module)]

    def _by_key(self, name: str, value: object, keys: list, all_keys: bool) -> dict:
        """``value`` (list or dict in the structure of losses) as a dict keyed like losses; {} for None."""
        if value is None:
            return {}
        if self.is_dict:
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"{name} must be a dict keyed like losses (losses is a dict); got {type(value).__name__}"
                )
            unknown = sorted(str(k) for k in value if k not in keys)
            missing = sorted(str(k) for k in keys if k not in value) if all_keys else []
            if unknown or missing:
                raise ValueError(
                    f"{name} must have {'the same keys as' if all_keys else 'keys among those of'} losses "
                    f"({sorted(str(k) for k in keys)}); got unknown keys {unknown}, missing keys {missing}"
                )
            return dict(value)
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"{name} must be a list or tuple like losses (losses is a list); got {type(value).__name__}"
            )
        if len(value) != len(keys):
            raise ValueError(f"{name} must have one entry per loss: expected {len(keys)}, got {len(value)}")
        return dict(zip(keys, value))

    def _loss(self, key) -> torch.nn.Module:
        return self.losses[key]

    def _miner(self, key) -> Optional[torch.nn.Module]:
        if self.miners is None:
            return None
        if self.is_dict:
            return dict(self.miners.items()).get(key)
        return self.miners[key]

    def _members(self):
        for key in self.loss_keys:
            yield f"losses[{key!r}] ({type(self._loss(key)).__name__})", self._loss(key)
            miner = self._miner(key)
            if miner is not None:
                yield f"miners[{key!r}] ({type(miner).__name__})", miner

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
        """The weighted sum of the losses.

        Args:
            embeddings: (n, d) student embeddings.
            labels: (n,) labels or None (label losses and label miners need them).
            indices_tuple: PML pairs or triplets for every loss; not with miners.
            ref_emb: (m, d) reference embeddings or None; ref_labels: (m,) their labels.
            teacher_emb: (n, D) teacher embeddings, required exactly when a loss or miner takes it.
            teacher_ref_emb: (m, D) teacher embeddings of the reference set (with ref_emb).

        Returns:
            The weighted sum (a scalar with the losses' default reducers).

        Raises:
            ValueError: indices_tuple together with miners; teacher_emb missing while a loss or miner reads
                it, or given while none does; teacher_ref_emb without ref_emb, or for a member that reads the
                teacher but takes no teacher_ref_emb (:func:`pml_relaxed._teacher.teacher_kwargs`); ref_emb for a
                loss that takes none; the members' own errors.
            IndexError: an indices_tuple entry outside the batch (anchors) or the reference set (partners).
            TypeError: a malformed indices_tuple.
        """
        if self.miners is not None and indices_tuple is not None:
            raise ValueError("indices_tuple and miners are mutually exclusive (as in PML's MultipleLosses); got both")
        if teacher_emb is None and self.teacher_readers:
            v.check_required(
                "teacher_emb", teacher_emb, f"{', '.join(self.teacher_readers)} read(s) the teacher's embeddings"
            )
        if teacher_emb is not None and not self.teacher_readers:
            names = ", ".join(name for name, _ in self._members())
            raise ValueError(
                f"teacher_emb was given, but no loss or miner takes it ({names}), so the teacher would be dropped; "
                "add a transfer loss or a teacher-based miner, or leave teacher_emb out"
            )
        v.check_teacher_ref_emb(ref_emb, teacher_ref_emb)
        if indices_tuple is not None:  # checked once here for every loss (a PML loss skips a lone pair's check)
            v.check_embeddings("embeddings", embeddings)
            refs = embeddings if ref_emb is None else v.check_embeddings("ref_emb", ref_emb)
            v.check_indices_tuple(indices_tuple, embeddings.shape[0], refs.shape[0])
        total: Union[torch.Tensor, float] = 0.0
        for key in self.loss_keys:
            loss_fn = self._loss(key)
            curr_indices = indices_tuple
            miner = self._miner(key)
            if miner is not None:
                teacher = teacher_kwargs(miner, teacher_emb, teacher_ref_emb, ref_emb)
                curr_indices = miner(embeddings, labels, ref_emb, ref_labels, **teacher)
            kwargs = {}
            if ref_emb is not None:
                if not takes_keyword(loss_fn, "ref_emb"):
                    raise ValueError(
                        f"losses[{key!r}] ({type(loss_fn).__name__}) takes no ref_emb, so it cannot use the reference "
                        "set; got ref_emb"
                    )
                kwargs.update(ref_emb=ref_emb, ref_labels=ref_labels)
            kwargs.update(teacher_kwargs(loss_fn, teacher_emb, teacher_ref_emb, ref_emb))
            total = total + self.weights[key] * loss_fn(embeddings, labels, curr_indices, **kwargs)
        return total
