"""A PML wrapper that drops the teacher gets an error naming it and pml_relaxed's equivalent."""

import warnings

import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, CrossBatchMemory, MultipleLosses, SelfSupervisedLoss
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.miners import TeacherSimilarityMiner

EMB, LABELS = torch.randn(8, 4), torch.arange(4).repeat(2)


def run_quietly(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the distributed wrappers warn that no process group is initialised
        return call()


@pytest.mark.parametrize(
    "call,wrapper,equivalent",
    [
        (
            lambda: MultipleLosses([RelaxedContrastiveLoss()])(EMB, LABELS),
            "MultipleLosses called RelaxedContrastiveLoss",
            "pml_relaxed.losses.TransferMultipleLosses",
        ),
        (
            lambda: MultipleLosses([ContrastiveLoss()], miners=[TeacherSimilarityMiner()])(EMB, LABELS),
            "MultipleLosses called TeacherSimilarityMiner",
            "pml_relaxed.losses.TransferMultipleLosses",
        ),
        (
            lambda: CrossBatchMemory(ContrastiveLoss(), 4, 16, miner=TeacherSimilarityMiner())(EMB, LABELS),
            "CrossBatchMemory called TeacherSimilarityMiner",
            "pml_relaxed.losses.TransferCrossBatchMemory",
        ),
        (
            lambda: DistributedLossWrapper(RelaxedContrastiveLoss())(EMB, LABELS),
            "DistributedLossWrapper called RelaxedContrastiveLoss",
            "pml_relaxed.distributed.DistributedTransferLossWrapper",
        ),
    ],
)
def test_pml_wrappers_dropping_the_teacher_are_named(call, wrapper, equivalent):
    with pytest.raises(ValueError, match=f"teacher_emb is required: PML's {wrapper} without it .*use {equivalent}"):
        run_quietly(call)


def test_pml_distributed_miner_wrapper_is_named(tmp_path):
    """PML's miner wrapper needs a process group: a single-process gloo group is enough."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        with pytest.raises(
            ValueError,
            match="PML's DistributedMinerWrapper called TeacherSimilarityMiner without it .*"
            "use pml_relaxed.distributed.DistributedTransferMinerWrapper",
        ):
            DistributedMinerWrapper(TeacherSimilarityMiner())(EMB, LABELS)
    finally:
        torch.distributed.destroy_process_group()


def test_a_direct_call_keeps_the_plain_message():
    for call in (lambda: RelaxedContrastiveLoss()(EMB), lambda: TeacherSimilarityMiner()(EMB)):
        with pytest.raises(ValueError, match="teacher_emb is required: pass the frozen teacher's embeddings") as error:
            call()
        assert "PML's" not in str(error.value)


def test_pml_refuses_our_losses_at_construction_by_name():
    """PML's own check (by class name), which pml_relaxed cannot reword: docs/scale_memory.md names the equivalents."""
    with pytest.raises(Exception, match="CrossBatchMemory not supported for RelaxedContrastiveLoss"):
        CrossBatchMemory(RelaxedContrastiveLoss(), 4)
    with pytest.raises(Exception, match="SelfSupervisedLoss not supported for RelaxedContrastiveLoss"):
        SelfSupervisedLoss(RelaxedContrastiveLoss())
