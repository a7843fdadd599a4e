"""Nothing silent (issue 27, part 3): the same bad inputs through every public loss, miner, wrapper and similarity.

Every misuse raises an error whose message names the argument, what was expected and what was got (and the
pml_relaxed class to use, where there is one), or, for a batch a relaxed loss cannot learn from, warns once
per process. Where PML has the same idiom (an indices_tuple past the end), the table records what PML's own
loss does with the same input and checks that we refuse at least that.
"""

from __future__ import annotations

import logging
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_metric_learning import trainers as pml_trainers
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import (
    ContrastiveLoss,
    CrossBatchMemory,
    MultipleLosses,
    SelfSupervisedLoss,
    TripletMarginLoss,
)

import pml_relaxed.distributed as distributed
import pml_relaxed.losses as losses
import pml_relaxed.miners as miners
import pml_relaxed.similarities as similarities
from pml_relaxed import _validation as v
from pml_relaxed import functional as fn
from pml_relaxed.distributed import DistributedTransferLossWrapper, DistributedTransferMinerWrapper
from pml_relaxed.losses import (
    DarkRankLoss,
    FitNetLoss,
    PKTLoss,
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    RKDLoss,
    TransferCrossBatchMemory,
    TransferMultipleLosses,
    TransferSelfSupervisedLoss,
)
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import ContextualSimilarity, GaussianKernel, LabelSimilarity, PrecomputedSimilarity
from pml_relaxed.trainers import EmbeddingTransfer
from tests.distributed.dist_harness import run_world

N, D_STUDENT, D_TEACHER = 8, 4, 6


def batch():
    return torch.randn(N, D_STUDENT, requires_grad=True), torch.randn(N, D_TEACHER)


def t(*values):
    return torch.tensor(values, dtype=torch.long)


EMPTY = t()

# ---------------------------------------------------------------------------------------------------------------
# 1. indices_tuple: out of range, negative, malformed, through every consumer
# ---------------------------------------------------------------------------------------------------------------

#: name -> (tuple on N rows, error, message pattern, does PML's ContrastiveLoss refuse it too)
BAD_TUPLES = {
    "positive past the end": (
        (t(0, 1), t(N, 2), EMPTY, EMPTY),
        IndexError,
        rf"indices_tuple\[1\] \(positives\) must index the {N} rows of .*: expected values in \[0, {N}\); got {N}",
        True,
    ),
    "negative index": (
        (t(0, 1), t(-1, 2), EMPTY, EMPTY),
        IndexError,
        rf"indices_tuple\[1\] \(positives\) must index the {N} rows .*\[0, {N}\); got -1",
        False,  # PML wraps it around to the last row, which is the silent remap we refuse
    ),
    "negative past the start": (
        (t(0, 1), t(-9, 2), EMPTY, EMPTY),
        IndexError,
        r"indices_tuple\[1\] \(positives\) .*got -9",
        True,
    ),
    "anchor past the end": (
        (t(N, 1), t(0, 2), EMPTY, EMPTY),
        IndexError,
        rf"indices_tuple\[0\] \(positive-pair anchors\) must index the {N} rows of embeddings: .*got {N}",
        True,
    ),
    "negative pair past the end": (
        (t(0, 1), t(2, 3), t(0, 1), t(N + 3, 4)),
        IndexError,
        rf"indices_tuple\[3\] \(negatives\) must index the {N} rows .*got {N + 3}",
        True,
    ),
    "anchor and partner of different lengths": (
        (t(0, 1), t(2, 3, 4), EMPTY, EMPTY),
        ValueError,
        r"indices_tuple\[0\], indices_tuple\[1\] must have the same length \(one entry per pair\); got lengths "
        r"\[2, 3\]",
        True,
    ),
    "float indices": (
        (torch.tensor([0.0, 1.0]), t(2, 3), EMPTY, EMPTY),
        TypeError,
        r"indices_tuple\[0\] must be a 1D integer tensor; got a 1D tensor of shape \(2,\) and dtype torch.float32",
        True,
    ),
    "bool indices": (
        (torch.tensor([True, False]), t(2, 3), EMPTY, EMPTY),
        TypeError,
        r"indices_tuple\[0\] must be a 1D integer tensor; got .*torch.bool",
        True,
    ),
    "two tensors": (
        (t(0, 1), t(2, 3)),
        TypeError,
        r"indices_tuple must be PML pairs \(a1, p, a2, n\) or triplets \(a, p, n\) of index tensors; got a tuple of "
        r"length 2",
        True,
    ),
}
#: a triplet tuple past the end, separately: pair-only consumers convert triplets to pairs
BAD_TRIPLETS = (
    (t(0, 1), t(1, 2), t(N, 3)),
    IndexError,
    rf"indices_tuple\[2\] \(negatives\) must index the {N} rows .*got {N}",
)


class BuggyMiner(TeacherSimilarityMiner):
    """A subclass whose rule returns a partner past the end of the reference set."""

    def mine_from_weights(self, weights, self_reference, query_offset=None):
        a1, p, a2, n = super().mine_from_weights(weights, self_reference, query_offset)
        return a1, torch.full_like(p, weights.shape[1]), a2, n


def _memory(loss):
    return TransferCrossBatchMemory(loss, D_STUDENT, D_TEACHER, memory_size=4 * N)


#: every consumer of an indices_tuple: name -> call(embeddings, teacher_emb, indices_tuple)
CONSUMERS = {
    "RelaxedContrastiveLoss": lambda e, te, it: RelaxedContrastiveLoss()(e, indices_tuple=it, teacher_emb=te),
    "RelaxedContrastiveLoss blockwise": lambda e, te, it: RelaxedContrastiveLoss(block_size=3)(
        e, indices_tuple=it, teacher_emb=te
    ),
    "RelaxedMultiSimilarityLoss": lambda e, te, it: RelaxedMultiSimilarityLoss()(e, indices_tuple=it, teacher_emb=te),
    "RelaxedContrastiveLoss with ref_emb": lambda e, te, it: RelaxedContrastiveLoss()(
        e[:N], indices_tuple=it, ref_emb=e.detach().clone(), teacher_emb=te, teacher_ref_emb=te
    ),
    "DarkRankLoss": lambda e, te, it: DarkRankLoss()(e, indices_tuple=it, teacher_emb=te),
    "STMLLoss with two heads": lambda e, te, it: losses.STMLLoss(GaussianKernel())(
        e, e.detach() * 2, indices_tuple=it, teacher_emb=te
    ),
    "functional.pair_mask": lambda e, te, it: fn.pair_mask(N, N, it),
    "TransferMultipleLosses of a relaxed loss": lambda e, te, it: TransferMultipleLosses([RelaxedContrastiveLoss()])(
        e, indices_tuple=it, teacher_emb=te
    ),
    "TransferMultipleLosses of a PML loss": lambda e, te, it: TransferMultipleLosses([ContrastiveLoss()])(
        e, indices_tuple=it
    ),
    "TransferCrossBatchMemory": lambda e, te, it: _memory(RelaxedContrastiveLoss())(
        e, indices_tuple=it, teacher_emb=te
    ),
    "DistributedTransferLossWrapper": lambda e, te, it: DistributedTransferLossWrapper(RelaxedContrastiveLoss())(
        e, indices_tuple=it, teacher_emb=te
    ),
    "DistributedTransferLossWrapper efficient": lambda e, te, it: DistributedTransferLossWrapper(
        RelaxedContrastiveLoss(), efficient=True
    )(e, indices_tuple=it, teacher_emb=te),
    "DistributedTransferLossWrapper of a memory": lambda e, te, it: DistributedTransferLossWrapper(
        _memory(RelaxedContrastiveLoss())
    )(e, indices_tuple=it, teacher_emb=te),
}
#: the consumers that read triplets as given (the others are tested with pairs only)
TRIPLET_CONSUMERS = [name for name in CONSUMERS if name != "functional.pair_mask"]


@pytest.mark.parametrize("bad", list(BAD_TUPLES))
def test_pml_contrastive_loss_on_the_same_tuple(bad):
    """The table's last column is what PML's own loss does with the tuple, so "at least what PML refuses" holds."""
    indices_tuple, error, _, pml_refuses = BAD_TUPLES[bad]
    embeddings = torch.randn(N, D_STUDENT)
    if pml_refuses:
        with pytest.raises((IndexError, TypeError, ValueError, RuntimeError)):
            ContrastiveLoss()(embeddings, None, indices_tuple)
    else:
        ContrastiveLoss()(embeddings, None, indices_tuple)  # PML lets it through: we refuse more


@pytest.mark.parametrize("consumer", list(CONSUMERS))
@pytest.mark.parametrize("bad", list(BAD_TUPLES))
def test_every_consumer_refuses_a_bad_indices_tuple(consumer, bad):
    indices_tuple, error, pattern, _ = BAD_TUPLES[bad]
    embeddings, teacher = batch()
    with pytest.raises(error, match=pattern):
        CONSUMERS[consumer](embeddings, teacher, indices_tuple)


@pytest.mark.parametrize("consumer", TRIPLET_CONSUMERS)
def test_every_consumer_refuses_a_triplet_past_the_end(consumer):
    indices_tuple, error, pattern = BAD_TRIPLETS
    embeddings, teacher = batch()
    with pytest.raises(IndexError):  # PML's triplet loss refuses it too
        TripletMarginLoss()(embeddings, None, indices_tuple)
    with pytest.raises(error, match=pattern):
        CONSUMERS[consumer](embeddings, teacher, indices_tuple)


def test_the_old_silent_remaps_are_gone():
    """On main, pairs (0, 8) on 8 rows gave the loss of pair (1, 0), and (0, -1) a loss of 0."""
    embeddings, teacher = batch()
    loss_fn = RelaxedContrastiveLoss()
    for partner in (N, -1):
        with pytest.raises(IndexError, match=f"got {partner}"):
            loss_fn(embeddings, indices_tuple=(t(0), t(partner), EMPTY, EMPTY), teacher_emb=teacher)
    # the in-range pair still works, and differs from its neighbours
    in_range = loss_fn(embeddings, indices_tuple=(t(0), t(N - 1), EMPTY, EMPTY), teacher_emb=teacher)
    assert in_range > 0


def test_a_memory_checks_partners_against_the_filled_memory():
    memory = _memory(RelaxedContrastiveLoss())
    embeddings, teacher = batch()
    memory(embeddings, teacher_emb=teacher)  # N rows filled; the next batch brings 2N
    ok = (t(0), t(2 * N - 1), EMPTY, EMPTY)
    memory(torch.randn(N, D_STUDENT), indices_tuple=ok, teacher_emb=torch.randn(N, D_TEACHER))
    with pytest.raises(IndexError, match=rf"must index the {3 * N} rows of the filled memory .*got {3 * N}"):
        memory(torch.randn(N, D_STUDENT), indices_tuple=(t(0), t(3 * N), EMPTY, EMPTY), teacher_emb=teacher)
    assert memory.queue_idx == 2 * N  # the failed call left the memory as it was


def test_miner_output_is_checked():
    with pytest.raises(IndexError, match=rf"indices_tuple\[1\] \(positives\) must index the {N} rows .*got {N}"):
        BuggyMiner(pos_topk=2)(torch.randn(N, D_STUDENT), teacher_emb=torch.randn(N, D_TEACHER))


@pytest.mark.parametrize("loss_class", [RKDLoss, PKTLoss, FitNetLoss])
def test_baselines_without_pairs_refuse_any_indices_tuple(loss_class):
    embeddings, teacher = batch()
    loss_fn = loss_class(student_dim=D_STUDENT, teacher_dim=D_TEACHER) if loss_class is FitNetLoss else loss_class()
    with pytest.raises(ValueError, match=f"{loss_class.__name__} does not work on mined pairs .*indices_tuple=None"):
        loss_fn(embeddings, indices_tuple=(t(0), t(1), EMPTY, EMPTY), teacher_emb=teacher)


def efficient_wrapper_scenario(rank, world_size):
    """Efficient mode keeps only the anchors of this rank's rows: an anchor past the global batch was dropped."""
    torch.manual_seed(rank)
    embeddings, teacher = torch.randn(4, D_STUDENT, requires_grad=True), torch.randn(4, D_TEACHER)
    loss_fn = DistributedTransferLossWrapper(RelaxedContrastiveLoss(), efficient=True)
    try:
        loss_fn(embeddings, indices_tuple=(t(0, 4 * world_size), t(1, 2), EMPTY, EMPTY), teacher_emb=teacher)
    except IndexError as err:
        return {"error": str(err)}
    return {"error": ""}


def test_efficient_distributed_wrapper_checks_the_global_bounds():
    for result in run_world("tests.test_misuse", "efficient_wrapper_scenario", world_size=2):
        assert re.search(
            r"indices_tuple\[0\] \(positive-pair anchors\) must index the 8 rows of embeddings: .*got 8",
            result["error"],
        ), result["error"]


# ---------------------------------------------------------------------------------------------------------------
# 2 and 7. EmbeddingTransfer: construction-time refusals naming what to use instead
# ---------------------------------------------------------------------------------------------------------------


def tiny_trainer(**overrides):
    kwargs = dict(
        models={"trunk": torch.nn.Linear(4, 2), "teacher": torch.nn.Linear(4, 3)},
        optimizers={},
        batch_size=4,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        dataset=torch.utils.data.TensorDataset(torch.randn(8, 4), torch.arange(8) % 2),
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
    )
    kwargs.update(overrides)
    return EmbeddingTransfer(**kwargs)


def _xbm(loss=None, miner=None):
    return TransferCrossBatchMemory(loss or RelaxedContrastiveLoss(), 2, 3, memory_size=16, miner=miner)


TRAINER_MISUSES = {
    "a memory with a batch tuple_miner": (
        {"transfer_loss": _xbm()},
        {"tuple_miner": TeacherSimilarityMiner()},
        r"mining_funcs\['tuple_miner'\] TeacherSimilarityMiner mines the batch, but TransferCrossBatchMemory is a "
        r"cross-batch memory.*give the miner to the memory instead, TransferCrossBatchMemory\(loss, \.\.\., "
        r"miner=TeacherSimilarityMiner\(\.\.\.\)\).*drop mining_funcs\['tuple_miner'\]",
    ),
    "a memory of a PML loss with its miner and a batch tuple_miner": (
        {"transfer_loss": _xbm(ContrastiveLoss(), miner=TeacherSimilarityMiner())},
        {"tuple_miner": TeacherSimilarityMiner()},
        r"TeacherSimilarityMiner mines the batch, but TransferCrossBatchMemory is a cross-batch memory",
    ),
    "a distributed memory with a batch tuple_miner": (
        {"transfer_loss": DistributedTransferLossWrapper(_xbm())},
        {"tuple_miner": DistributedTransferMinerWrapper(TeacherSimilarityMiner())},
        r"DistributedTransferMinerWrapper mines the batch, but TransferCrossBatchMemory is a cross-batch memory",
    ),
    "PML's CrossBatchMemory": (
        {"transfer_loss": CrossBatchMemory(ContrastiveLoss(), 2, memory_size=16)},
        {"tuple_miner": TeacherSimilarityMiner()},
        r"loss_funcs\['transfer_loss'\] is PML's CrossBatchMemory, which keeps no teacher memory .*use "
        r"pml_relaxed.losses.TransferCrossBatchMemory\(loss, embedding_size, teacher_embedding_size",
    ),
    "PML's CrossBatchMemory inside our distributed wrapper": (
        {"transfer_loss": DistributedTransferLossWrapper(CrossBatchMemory(ContrastiveLoss(), 2, memory_size=16))},
        {"tuple_miner": TeacherSimilarityMiner()},
        r"is PML's CrossBatchMemory.*pml_relaxed.losses.TransferCrossBatchMemory",
    ),
    "PML's MultipleLosses of a relaxed loss": (
        {"transfer_loss": MultipleLosses([RelaxedContrastiveLoss(), ContrastiveLoss()])},
        {},
        r"loss_funcs\['transfer_loss'\] is PML's MultipleLosses, which passes no teacher_emb to "
        r"RelaxedContrastiveLoss; use pml_relaxed.losses.TransferMultipleLosses instead",
    ),
    "PML's MultipleLosses with a teacher miner inside": (
        {"transfer_loss": MultipleLosses([ContrastiveLoss()], miners=[TeacherSimilarityMiner()])},
        {"tuple_miner": TeacherSimilarityMiner()},
        r"PML's MultipleLosses, which passes no teacher_emb to TeacherSimilarityMiner; use "
        r"pml_relaxed.losses.TransferMultipleLosses",
    ),
    "PML's SelfSupervisedLoss": (
        {"transfer_loss": SelfSupervisedLoss(ContrastiveLoss())},
        {"tuple_miner": TeacherSimilarityMiner()},
        r"is PML's SelfSupervisedLoss, which takes two views .*use pml_relaxed.losses.TransferSelfSupervisedLoss",
    ),
    "a relaxed loss as metric_loss": (
        {"transfer_loss": RelaxedContrastiveLoss(), "metric_loss": RelaxedMultiSimilarityLoss()},
        {},
        r"loss_funcs\['metric_loss'\] RelaxedMultiSimilarityLoss reads the teacher .*make it the transfer_loss, or "
        r"combine both in pml_relaxed.losses.TransferMultipleLosses",
    ),
}


@pytest.mark.parametrize("misuse", list(TRAINER_MISUSES))
def test_embedding_transfer_refuses_at_construction(misuse):
    loss_funcs, mining_funcs, pattern = TRAINER_MISUSES[misuse]
    with pytest.raises(ValueError, match=pattern):
        tiny_trainer(loss_funcs=loss_funcs, mining_funcs=mining_funcs)


def test_what_still_works_in_embedding_transfer():
    """PML's MultipleLosses of PML losses learns from a teacher miner's pairs; a memory mines with its own miner."""
    tiny_trainer(
        loss_funcs={"transfer_loss": MultipleLosses([ContrastiveLoss()])},
        mining_funcs={"tuple_miner": TeacherSimilarityMiner()},
    )
    memory = TransferCrossBatchMemory(ContrastiveLoss(), 2, 3, memory_size=16, miner=TeacherSimilarityMiner(pos_topk=2))
    trainer = tiny_trainer(loss_funcs={"transfer_loss": memory}, iterations_per_epoch=2)
    trainer.train(num_epochs=1)
    assert memory.num_filled == 8


@pytest.mark.parametrize(
    "trainer_class, receiver, loss_funcs, mining_funcs, extra_models",
    [
        (pml_trainers.MetricLossOnly, "RelaxedContrastiveLoss", {"metric_loss": RelaxedContrastiveLoss()}, {}, {}),
        (
            pml_trainers.MetricLossOnly,
            "TeacherSimilarityMiner",
            {"metric_loss": ContrastiveLoss()},
            {"tuple_miner": TeacherSimilarityMiner()},
            {},
        ),
        (
            pml_trainers.TrainWithClassifier,
            "RelaxedContrastiveLoss",
            {"metric_loss": RelaxedContrastiveLoss(), "classifier_loss": torch.nn.CrossEntropyLoss()},
            {},
            {"classifier": torch.nn.Linear(2, 2)},
        ),
    ],
)
def test_pml_trainers_name_embedding_transfer(trainer_class, receiver, loss_funcs, mining_funcs, extra_models):
    logging.getLogger("PML").setLevel(logging.WARNING)
    trainer = trainer_class(
        models={"trunk": torch.nn.Linear(4, 2), **extra_models},
        optimizers={},
        batch_size=4,
        loss_funcs=loss_funcs,
        mining_funcs=mining_funcs,
        dataset=torch.utils.data.TensorDataset(torch.randn(8, 4), torch.arange(8) % 2),
        dataloader_num_workers=0,
        iterations_per_epoch=1,
        data_device=torch.device("cpu"),
    )
    with pytest.raises(
        ValueError,
        match=rf"teacher_emb is required: PML's trainer {trainer_class.__name__} called {receiver} without it .*use "
        r"pml_relaxed.trainers.EmbeddingTransfer, which runs the frozen teacher",
    ):
        trainer.train(num_epochs=1)


# ---------------------------------------------------------------------------------------------------------------
# 3. One teacher-routing rule: a teacher_ref_emb that cannot be used raises in every wrapper
# ---------------------------------------------------------------------------------------------------------------


class TeacherOnlyLoss(torch.nn.Module):
    """Reads teacher_emb and a reference set, but not the teacher of the reference set."""

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None, *, teacher_emb=None):
        return embeddings.sum() * 0


UNUSABLE_TEACHER_REF = {
    "DistributedTransferLossWrapper(TransferCrossBatchMemory)": (
        lambda e, te: DistributedTransferLossWrapper(_memory(RelaxedContrastiveLoss()))(
            e, teacher_emb=te, teacher_ref_emb=te
        ),
        r"TransferCrossBatchMemory takes teacher_emb but no teacher_ref_emb: it is a cross-batch memory, whose "
        r"reference set is its queue .*leave teacher_ref_emb \(and ref_emb\) out; got teacher_ref_emb",
    ),
    "TransferMultipleLosses(loss without teacher_ref_emb)": (
        lambda e, te: TransferMultipleLosses([TeacherOnlyLoss()])(e, ref_emb=e, teacher_emb=te, teacher_ref_emb=te),
        r"TeacherOnlyLoss takes teacher_emb but no teacher_ref_emb: it has no reference set of its own",
    ),
    "DistributedTransferLossWrapper(loss without teacher_ref_emb)": (
        lambda e, te: DistributedTransferLossWrapper(TeacherOnlyLoss())(
            e, ref_emb=e, teacher_emb=te, teacher_ref_emb=te
        ),
        r"TeacherOnlyLoss takes teacher_emb but no teacher_ref_emb",
    ),
    "TransferSelfSupervisedLoss(loss without teacher_ref_emb, symmetric=False)": (
        lambda e, te: TransferSelfSupervisedLoss(TeacherOnlyLoss(), symmetric=False)(
            e, e.detach(), teacher_emb=te, teacher_ref_emb=te
        ),
        r"TeacherOnlyLoss takes teacher_emb but no teacher_ref_emb",
    ),
    "TransferCrossBatchMemory(loss without teacher_ref_emb)": (
        lambda e, te: _memory(TeacherOnlyLoss())(e, teacher_emb=te),
        r"TeacherOnlyLoss takes teacher_emb but no teacher_ref_emb",
    ),
    "DistributedTransferLossWrapper: teacher_ref_emb without ref_emb": (
        lambda e, te: DistributedTransferLossWrapper(RelaxedContrastiveLoss())(e, teacher_emb=te, teacher_ref_emb=te),
        r"teacher_ref_emb was given without ref_emb: pass both or neither; got ref_emb=None",
    ),
    "DistributedTransferMinerWrapper: teacher_ref_emb without ref_emb": (
        lambda e, te: DistributedTransferMinerWrapper(TeacherSimilarityMiner())(e, teacher_emb=te, teacher_ref_emb=te),
        r"teacher_ref_emb was given without ref_emb: pass both or neither; got ref_emb=None",
    ),
    "TransferMultipleLosses: teacher_ref_emb without ref_emb": (
        lambda e, te: TransferMultipleLosses([RelaxedContrastiveLoss()])(e, teacher_emb=te, teacher_ref_emb=te),
        r"teacher_ref_emb was given without ref_emb: pass both or neither; got ref_emb=None",
    ),
    "the loss itself: teacher_ref_emb without ref_emb": (
        lambda e, te: RelaxedContrastiveLoss()(e, teacher_emb=te, teacher_ref_emb=te),
        r"teacher_ref_emb was given without ref_emb: pass both or neither; got ref_emb=None",
    ),
}


@pytest.mark.parametrize("case", list(UNUSABLE_TEACHER_REF))
def test_an_unusable_teacher_ref_emb_raises_in_every_wrapper(case):
    call, pattern = UNUSABLE_TEACHER_REF[case]
    embeddings, teacher = batch()
    with pytest.raises(ValueError, match=pattern):
        call(embeddings, teacher)


def test_the_rule_lives_in_one_module():
    """The two helpers that behaved differently are gone, and so are the old modules that re-exported the rule."""
    from pathlib import Path

    from pml_relaxed import _teacher
    from pml_relaxed.distributed import _collectives

    assert not hasattr(_collectives, "teacher_kwargs") and not hasattr(TransferMultipleLosses, "_teacher_kwargs")
    assert callable(_teacher.takes_teacher) and callable(_teacher.check_teacher_reached)
    package = Path(_teacher.__file__).parent
    assert not (package / "_signature.py").exists() and not (package / "_teacher_hint.py").exists()


# ---------------------------------------------------------------------------------------------------------------
# 4. Degenerate batches warn once per process
# ---------------------------------------------------------------------------------------------------------------

RELAXED = {
    "RelaxedContrastiveLoss": lambda e, te, validate=True: RelaxedContrastiveLoss(validate=validate)(e, teacher_emb=te),
    "RelaxedMultiSimilarityLoss": lambda e, te, validate=True: RelaxedMultiSimilarityLoss(validate=validate)(
        e, teacher_emb=te
    ),
    "RelaxedContrastiveLoss blockwise": lambda e, te, validate=True: RelaxedContrastiveLoss(
        block_size=2, validate=validate
    )(e, teacher_emb=te),
    "relaxed_contrastive_loss": lambda e, te, validate=True: fn.relaxed_contrastive_loss(e, te, validate=validate),
    "relaxed_multi_similarity_loss": lambda e, te, validate=True: fn.relaxed_multi_similarity_loss(
        e, te, validate=validate
    ),
}


@pytest.fixture
def fresh_warnings(monkeypatch):
    """The once-per-process registry, emptied for the test (and restored after)."""
    monkeypatch.setattr(v, "_WARNED_ONCE", set())


def _degenerate_warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = call()
    return loss, [w for w in caught if issubclass(w.category, v.DegenerateBatchWarning)]


@pytest.mark.parametrize("loss", list(RELAXED))
@pytest.mark.parametrize(
    "student, pattern",
    [
        (
            lambda: torch.randn(2, D_STUDENT),
            r"reference set \(the batch\) has 2 row\(s\); with fewer than 3 .*gradient 0",
        ),
        (lambda: torch.zeros(N, D_STUDENT), r"student embeddings are all equal \(a collapsed or zero-initialised"),
        (lambda: torch.ones(N, 1) * torch.randn(1, D_STUDENT), r"student embeddings are all equal"),
    ],
)
def test_degenerate_batches_warn_once_per_process(loss, student, pattern, fresh_warnings):
    embeddings = student().requires_grad_()
    teacher = torch.randn(embeddings.shape[0], D_TEACHER)
    with pytest.warns(v.DegenerateBatchWarning, match=pattern):
        value = RELAXED[loss](embeddings, teacher)
    (grad,) = torch.autograd.grad(value, embeddings)
    assert float(grad.abs().max()) < 1e-6, "the warning says the gradient is 0 (up to rounding)"
    moved = embeddings.detach() * 3 + torch.randn(1, D_STUDENT) if len(embeddings) == 2 else embeddings.detach() * 3
    torch.testing.assert_close(RELAXED[loss](moved, teacher), value.detach())  # the loss is constant
    _, again = _degenerate_warnings(lambda: RELAXED[loss](embeddings, teacher))
    assert again == []  # once per process


@pytest.mark.parametrize("loss", list(RELAXED))
def test_a_learnable_batch_does_not_warn_and_validate_false_skips_the_value_check(loss, fresh_warnings):
    embeddings, teacher = batch()
    value, caught = _degenerate_warnings(lambda: RELAXED[loss](embeddings, teacher))
    assert caught == [] and value > 0
    _, caught = _degenerate_warnings(lambda: RELAXED[loss](torch.zeros(N, D_STUDENT), teacher, validate=False))
    assert caught == []  # reading the values would cost a host synchronisation
    _, caught = _degenerate_warnings(lambda: RELAXED[loss](torch.randn(2, D_STUDENT), teacher[:2], validate=False))
    assert len(caught) == 1  # the row count is free to read


def test_a_small_reference_set_warns(fresh_warnings):
    embeddings, teacher = batch()
    with pytest.warns(v.DegenerateBatchWarning, match=r"reference set \(ref_emb\) has 1 row"):
        RelaxedContrastiveLoss()(
            embeddings, ref_emb=embeddings[:1].detach(), teacher_emb=teacher, teacher_ref_emb=teacher[:1]
        )


# ---------------------------------------------------------------------------------------------------------------
# 5. pml-relaxed bench --dataset banking77 --teacher-checkpoint
# ---------------------------------------------------------------------------------------------------------------


def test_bench_refuses_a_teacher_checkpoint_for_a_pretrained_teacher(tmp_path):
    from pml_relaxed import cli
    from pml_relaxed_bench.config import BenchConfig
    from pml_relaxed_bench.runner import get_teacher

    pattern = (
        r"--teacher-checkpoint loads the state_dict of a teacher the benchmark trains \(--dataset digits, omniglot, "
        r"cub, cars, sop\); --dataset banking77 has a given pretrained teacher instead.*got --teacher-checkpoint "
    )
    with pytest.raises(ValueError, match=pattern):  # before the teacher's embeddings are computed
        cli.main(
            ["bench", "--dataset", "banking77", "--teacher-checkpoint", str(tmp_path), "--output-dir", str(tmp_path)]
        )
    assert not any(tmp_path.iterdir())
    config = BenchConfig(dataset="banking77", teacher_checkpoint=str(tmp_path), output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=pattern):  # the runner's own check, for a dataset given a teacher
        get_teacher(SimpleNamespace(teacher=torch.nn.Identity()), config, [])


# ---------------------------------------------------------------------------------------------------------------
# 6. Arguments: distance on the miner, bools, numbers, unknown keywords
# ---------------------------------------------------------------------------------------------------------------


def test_the_teacher_miner_refuses_a_distance():
    with pytest.raises(
        ValueError,
        match=r"TeacherSimilarityMiner mines on the teacher's similarities, not on student distances, so distance "
        r"cannot be set; to change how teacher embeddings are compared pass similarity= .*got distance=LpDistance",
    ):
        TeacherSimilarityMiner(distance=LpDistance())


#: name -> constructor taking the bool argument under test
BOOL_ARGUMENTS = {
    "RelaxedContrastiveLoss(normalize_teacher)": lambda b: RelaxedContrastiveLoss(normalize_teacher=b),
    "RelaxedContrastiveLoss(validate)": lambda b: RelaxedContrastiveLoss(validate=b),
    "RelaxedMultiSimilarityLoss(normalize_teacher)": lambda b: RelaxedMultiSimilarityLoss(normalize_teacher=b),
    "RKDLoss(validate)": lambda b: RKDLoss(validate=b),
    "DarkRankLoss(normalize_embeddings)": lambda b: DarkRankLoss(normalize_embeddings=b),
    "TeacherSimilarityMiner(normalize_teacher)": lambda b: TeacherSimilarityMiner(normalize_teacher=b),
    "GaussianKernel(normalize)": lambda b: GaussianKernel(normalize=b),
    "ContextualSimilarity(normalize)": lambda b: ContextualSimilarity(normalize=b),
    "ContextualSimilarity(center)": lambda b: ContextualSimilarity(center=b),
    "PrecomputedSimilarity(validate)": lambda b: PrecomputedSimilarity(torch.eye(2), validate=b),
    "TransferSelfSupervisedLoss(symmetric)": lambda b: TransferSelfSupervisedLoss(RelaxedContrastiveLoss(), b),
    "DistributedTransferLossWrapper(efficient)": lambda b: DistributedTransferLossWrapper(RelaxedContrastiveLoss(), b),
    "DistributedTransferMinerWrapper(efficient)": lambda b: DistributedTransferMinerWrapper(
        TeacherSimilarityMiner(), b
    ),
    "relaxed_contrastive_loss(normalize_teacher)": lambda b: fn.relaxed_contrastive_loss(
        torch.randn(4, 2), torch.randn(4, 3), normalize_teacher=b
    ),
    "relaxed_contrastive_loss(validate)": lambda b: fn.relaxed_contrastive_loss(
        torch.randn(4, 2), torch.randn(4, 3), validate=b
    ),
}


@pytest.mark.parametrize("argument", list(BOOL_ARGUMENTS))
@pytest.mark.parametrize("value", ["yes", "no", 1, None])
def test_bools_are_checked_the_same_way_everywhere(argument, value):
    name = re.search(r"\((\w+)\)", argument)[1]
    with pytest.raises(
        TypeError, match=rf"^{name} must be a bool; got {type(value).__name__} \({re.escape(repr(value))}\)"
    ):
        BOOL_ARGUMENTS[argument](value)
    BOOL_ARGUMENTS[argument](True)
    BOOL_ARGUMENTS[argument](np.bool_(False))


#: name -> (constructor taking sigma, how to read the sigma it kept)
SIGMA_ARGUMENTS = {
    "RelaxedContrastiveLoss": (lambda s: RelaxedContrastiveLoss(sigma=s), lambda obj: obj.sigma),
    "RelaxedMultiSimilarityLoss": (lambda s: RelaxedMultiSimilarityLoss(sigma=s), lambda obj: obj.sigma),
    "TeacherSimilarityMiner": (lambda s: TeacherSimilarityMiner(sigma=s), lambda obj: obj.similarity.sigma),
    "GaussianKernel": (lambda s: GaussianKernel(sigma=s), lambda obj: obj.sigma),
    "ContextualSimilarity": (lambda s: ContextualSimilarity(sigma=s), lambda obj: obj.sigma),
    "gaussian_kernel": (
        lambda s: fn.gaussian_kernel(torch.eye(3), sigma=s),
        lambda w: float(-2 / torch.log(w[0, 1])),  # w = exp(-2 / sigma) for orthogonal unit rows
    ),
}
REAL_SCALARS = [
    2,
    2.0,
    np.float32(2),
    np.float64(2),
    np.int64(2),
    torch.tensor(2.0),
    torch.tensor(2, dtype=torch.int32),
]
NOT_REAL = [True, np.bool_(True), torch.tensor(True), torch.tensor([2.0]), "2", torch.tensor(2 + 0j), None]


@pytest.mark.parametrize("owner", list(SIGMA_ARGUMENTS))
@pytest.mark.parametrize("value", REAL_SCALARS, ids=repr)
def test_every_real_scalar_is_a_number(owner, value):
    build, read = SIGMA_ARGUMENTS[owner]
    assert read(build(value)) == pytest.approx(2.0)


@pytest.mark.parametrize("owner", list(SIGMA_ARGUMENTS))
@pytest.mark.parametrize("value", NOT_REAL, ids=repr)
def test_bools_and_non_scalars_are_not_numbers(owner, value):
    build, _ = SIGMA_ARGUMENTS[owner]
    with pytest.raises(TypeError, match=r"^sigma must be a real number; got .*a bool is not\)"):
        build(value)


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda k: TeacherSimilarityMiner(pos_topk=k), "pos_topk"),
        (lambda k: RelaxedContrastiveLoss(block_size=k), "block_size"),
        (lambda k: ContextualSimilarity(k=k), "k"),
        (lambda k: TransferCrossBatchMemory(RelaxedContrastiveLoss(), 4, 8, memory_size=k), "memory_size"),
    ],
)
def test_ints_accept_numpy_and_0d_tensors_and_refuse_bools(build, name):
    for value in (2, np.int64(2), torch.tensor(2)):
        build(value)
    for value in (True, np.bool_(True), 2.0, torch.tensor(2.0)):
        with pytest.raises(TypeError, match=rf"^{name} must be "):
            build(value)


#: every public loss, miner, wrapper and similarity, built with extra keyword arguments
CONSTRUCTORS = {
    "BaseTransferLoss": lambda **kw: losses.BaseTransferLoss(**kw),
    "BaseRelaxedLoss": lambda **kw: losses.BaseRelaxedLoss(**kw),
    "RelaxedContrastiveLoss": lambda **kw: RelaxedContrastiveLoss(**kw),
    "RelaxedMultiSimilarityLoss": lambda **kw: RelaxedMultiSimilarityLoss(**kw),
    "RKDLoss": lambda **kw: RKDLoss(**kw),
    "PKTLoss": lambda **kw: PKTLoss(**kw),
    "DarkRankLoss": lambda **kw: DarkRankLoss(**kw),
    "FitNetLoss": lambda **kw: FitNetLoss(**kw),
    "HintonKDLoss": lambda **kw: losses.HintonKDLoss(torch.nn.Linear(4, 3), **kw),
    "STMLLoss": lambda **kw: losses.STMLLoss(**kw),
    "TwoViewLoss": lambda **kw: losses.TwoViewLoss(ContrastiveLoss(), **kw),
    "TransferCrossBatchMemory": lambda **kw: TransferCrossBatchMemory(RelaxedContrastiveLoss(), 4, 8, **kw),
    "TransferMultipleLosses": lambda **kw: TransferMultipleLosses([RelaxedContrastiveLoss()], **kw),
    "TransferSelfSupervisedLoss": lambda **kw: TransferSelfSupervisedLoss(RelaxedContrastiveLoss(), **kw),
    "TeacherSimilarityMiner": lambda **kw: TeacherSimilarityMiner(**kw),
    "DistributedTransferLossWrapper": lambda **kw: DistributedTransferLossWrapper(RelaxedContrastiveLoss(), **kw),
    "DistributedTransferMinerWrapper": lambda **kw: DistributedTransferMinerWrapper(TeacherSimilarityMiner(), **kw),
    "BaseSimilarity": lambda **kw: similarities.BaseSimilarity(**kw),
    "ContextualSimilarity": lambda **kw: ContextualSimilarity(**kw),
    "GaussianKernel": lambda **kw: GaussianKernel(**kw),
    "LabelSimilarity": lambda **kw: LabelSimilarity(**kw),
    "MixedSimilarity": lambda **kw: similarities.MixedSimilarity(GaussianKernel(), LabelSimilarity(), **kw),
    "PrecomputedSimilarity": lambda **kw: PrecomputedSimilarity(torch.eye(2), **kw),
}


def test_the_constructor_table_covers_every_public_class():
    public = {
        name
        for module in (losses, miners, distributed, similarities)
        for name in module.__all__
        # TransferBatch and TeacherInputs are containers of a call's inputs, not configurable modules
        if isinstance(getattr(module, name), type) and name not in ("TransferBatch", "TeacherInputs")
    }
    assert set(CONSTRUCTORS) == public


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_an_unknown_keyword_names_our_class(name):
    CONSTRUCTORS[name]()  # the table's call is right without the typo
    with pytest.raises(
        TypeError, match=rf"^{name}(\.__init__\(\))? got an unexpected keyword argument 'sigmaa'"
    ) as info:
        CONSTRUCTORS[name](sigmaa=1.0)
    assert "ModuleWithRecords" not in str(info.value)


def test_an_unknown_keyword_of_a_pml_based_class_says_what_it_takes():
    with pytest.raises(
        TypeError,
        match=r"^RelaxedContrastiveLoss got an unexpected keyword argument 'sigmaa' \(did you mean 'sigma'\?\); it "
        r"takes sigma, delta, normalize_teacher, similarity, block_size, validate and PML's embedding_regularizer, "
        r"embedding_reg_weight, reducer, distance, collect_stats$",
    ):
        RelaxedContrastiveLoss(sigmaa=1.0)
    with pytest.raises(TypeError, match=r"^TeacherSimilarityMiner got unexpected keyword arguments 'pos_top_k', 'x'"):
        TeacherSimilarityMiner(pos_top_k=2, x=1)
    RelaxedContrastiveLoss(reducer=None, collect_stats=True, embedding_reg_weight=0.5)  # PML's own are passed on
