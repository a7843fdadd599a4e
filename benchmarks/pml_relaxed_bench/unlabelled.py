"""Unlabelled texts in the transfer term: the relaxed losses learn from the teacher alone, so they need no labels.

``--unlabelled-texts PATH`` gives the bench a file of texts without labels. Mixing rule: every training batch
of a method with a transfer loss is the ``MPerClassSampler`` batch of labelled items (unchanged) followed by
``--unlabelled-per-batch`` unlabelled texts (k), drawn without replacement from the file in a random order
that restarts when every text has been used (the run's seeded torch generator draws it). Both parts then get
the same views (``--views``, ``--text-ngram-dropout``). Unlabelled rows carry the label :data:`UNLABELLED`
(-1): the transfer loss and its miner see every row (they read the teacher's embeddings, which the cached
teacher has for the unlabelled texts too), the label loss (``metric_loss``, e.g. ProxyAnchor) only the
labelled rows (:class:`LabelledRowsOnly`). A transfer loss that reads labels (DarkRank's triplet term, a
relaxed loss with label similarities) would take -1 for a class, so :func:`check_label_free_transfer`
refuses it; scratch methods have no transfer term and train without the unlabelled texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import torch

from pml_relaxed.losses import DarkRankLoss

#: the label of an unlabelled row in a mixed batch
UNLABELLED = -1


def read_unlabelled_texts(path: str) -> List[str]:
    """The texts of a UTF-8 file, one per line, without the line ends; blank lines are skipped.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file holds no text, or is not UTF-8.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--unlabelled-texts must be a UTF-8 text file, one text per line; got {path}")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"--unlabelled-texts must be a UTF-8 text file; {path} is not ({err})") from err
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"--unlabelled-texts must hold at least one text (one per line); {path} holds none")
    return texts


def check_per_batch(per_batch: int, num_unlabelled: int) -> int:
    """Checks ``--unlabelled-per-batch``: in ``[1, num_unlabelled]``.

    Raises:
        ValueError: ``per_batch`` below 1 or above the number of unlabelled texts.
    """
    if not 1 <= per_batch <= num_unlabelled:
        raise ValueError(
            f"--unlabelled-per-batch must be in [1, {num_unlabelled}] (the number of unlabelled texts); got {per_batch}"
        )
    return per_batch


class MixUnlabelledCollate:
    """A batch collate that appends ``per_batch`` unlabelled rows (label -1) to each labelled batch.

    Shapes: B labelled items -> ``collate(items)`` (``B * views`` rows), then ``collate`` of the k drawn
    unlabelled rows with label -1 (``k * views`` rows), concatenated in that order.

    Args:
        collate: the labelled batch's collate, e.g. :class:`~pml_relaxed_bench.data.ViewCollate`.
        rows: ``(U, ...)`` unlabelled inputs (for text: packed rows whose column 0 indexes the teacher table).
        per_batch: k, unlabelled rows per batch, >= 1 (at most U).

    Raises:
        ValueError: ``per_batch`` below 1 or above U.
    """

    def __init__(self, collate: Callable, rows: torch.Tensor, per_batch: int) -> None:
        check_per_batch(per_batch, len(rows))
        self.collate, self.rows, self.per_batch = collate, rows, per_batch
        self._order: Optional[torch.Tensor] = None
        self._position = 0

    def draw(self) -> torch.Tensor:
        """The indices of the next k unlabelled rows: a random order over all U, renewed when used up."""
        picks, count = [], 0
        while count < self.per_batch:
            if self._order is None or self._position == len(self._order):
                self._order, self._position = torch.randperm(len(self.rows)), 0
            take = min(self.per_batch - count, len(self._order) - self._position)
            picks.append(self._order[self._position : self._position + take])
            self._position, count = self._position + take, count + take
        return torch.cat(picks)

    def __call__(self, batch):
        inputs, labels = self.collate(batch)
        extra_inputs, extra_labels = self.collate([(self.rows[i], UNLABELLED) for i in self.draw().tolist()])
        return torch.cat([inputs, extra_inputs]), torch.cat([labels, extra_labels])


class LabelledRowsOnly(torch.nn.Module):
    """A PML label loss on the labelled rows of a mixed batch: rows with label -1 are left out.

    ``forward(embeddings, labels)`` = ``loss(embeddings[keep], labels[keep])`` with ``keep = labels >= 0``;
    with ``labels=None`` (an unlabelled batch) the loss is called as it is. The wrapped loss's parameters
    (e.g. ProxyAnchor's proxies) are this module's, so its optimizer trains them.

    Args:
        loss: a PML loss taking ``(embeddings, labels)``.

    Raises:
        ValueError: in ``forward``, an ``indices_tuple`` or ``ref_emb`` (their indices would refer to the
            dropped rows).
    """

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        if indices_tuple is not None or ref_emb is not None:
            raise ValueError(
                f"LabelledRowsOnly({type(self.loss).__name__}) drops the unlabelled rows, so it takes no "
                "indices_tuple or ref_emb; got " + ("indices_tuple" if indices_tuple is not None else "ref_emb")
            )
        if labels is None:
            return self.loss(embeddings, labels)
        keep = labels >= 0
        return self.loss(embeddings[keep], labels[keep])


def reads_labels(module: object) -> bool:
    """Whether a transfer loss or miner reads class labels: DarkRank with its triplet term, or a similarity
    with ``requires_labels`` (e.g. ``LabelSimilarity`` inside ``MixedSimilarity``)."""
    if not isinstance(module, torch.nn.Module):
        return False
    for part in module.modules():
        if isinstance(part, DarkRankLoss) and part.triplet_weight != 0:
            return True
        if getattr(part, "requires_labels", False) is True:
            return True
    return False


def check_label_free_transfer(method_name: str, loss_funcs: dict, mining_funcs: dict) -> None:
    """Refuses ``--unlabelled-texts`` for a method whose transfer loss or miner reads labels.

    Raises:
        ValueError: the transfer loss or the tuple miner reads labels (it would take -1 for a class).
    """
    parts = (("transfer loss", loss_funcs.get("transfer_loss")), ("miner", mining_funcs.get("tuple_miner")))
    for slot, module in parts:
        if reads_labels(module):
            raise ValueError(
                f"--unlabelled-texts feeds unlabelled rows (label -1) to the transfer loss, but method "
                f"{method_name!r}'s {slot} {type(module).__name__} reads labels; use a label-free transfer method "
                "(e.g. relaxed_contrastive, relaxed_contrastive+proxy_anchor, fitnet) or drop --unlabelled-texts"
            )
