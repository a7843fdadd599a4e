"""EmbeddingTransfer under DDP (2 gloo processes) trains the same weights as one process on the global batches.

Each rank's student (trunk and embedder) is wrapped in DistributedDataParallel, the teacher is not, the
losses and miner are wrapped in pml_relaxed.distributed's wrappers and the data comes from
DistributedMPerClassSampler. One process with the bare losses, batch size 2 x 6 and the sampler's
global list must reach the same weights after 3 SGD steps (float64).
"""

from __future__ import annotations

import logging

import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, MultiSimilarityLoss
from pytorch_metric_learning.utils import distributed as pml_distributed
from torch.utils.data import TensorDataset

from pml_relaxed.distributed import (
    DistributedTransferLossWrapper,
    DistributedTransferMinerWrapper,
)
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.samplers import DistributedMPerClassSampler
from pml_relaxed.trainers import EmbeddingTransfer
from pml_relaxed.trainers.embedding_transfer import takes_teacher
from tests.distributed.dist_harness import run_world

WORLD, LOCAL_BATCH, STEPS, M = 2, 6, 3, 3


def dataset():
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(40) % 5
    return TensorDataset(torch.randn(40, 5, generator=gen, dtype=torch.float64), labels)


def models():
    torch.manual_seed(11)
    trunk = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh()).double()
    embedder = torch.nn.Linear(8, 4).double()
    teacher = torch.nn.Linear(5, 6).double()
    return trunk, embedder, teacher


def losses_and_miners(config, distributed):
    def wrap_loss(loss, efficient):
        return DistributedTransferLossWrapper(loss, efficient=efficient) if distributed else loss

    def wrap_miner(miner, efficient):
        return DistributedTransferMinerWrapper(miner, efficient=efficient) if distributed else miner

    if config == "relaxed+metric":
        return {
            "transfer_loss": wrap_loss(RelaxedContrastiveLoss(), False),
            "metric_loss": wrap_loss(MultiSimilarityLoss(), True),
        }, {}
    return (
        {"transfer_loss": wrap_loss(ContrastiveLoss(), True)},
        {"tuple_miner": wrap_miner(TeacherSimilarityMiner(pos_topk=2), True)},
    )


def train(config, rank=None):
    """3 SGD steps; on ``rank`` of a DDP group, or on one process with the global batches when rank is None."""
    logging.getLogger("PML").setLevel(logging.WARNING)
    distributed = rank is not None
    trunk, embedder, teacher = models()
    data = dataset()
    if distributed:
        sampler = DistributedMPerClassSampler(data.tensors[1], M, LOCAL_BATCH, 36, num_replicas=WORLD, rank=rank)
        batch_size = LOCAL_BATCH
        student = {
            "trunk": torch.nn.parallel.DistributedDataParallel(trunk),
            "embedder": torch.nn.parallel.DistributedDataParallel(embedder),
        }
    else:
        sampler = DistributedMPerClassSampler(data.tensors[1], M, LOCAL_BATCH * WORLD, 36, num_replicas=1, rank=0)
        batch_size = LOCAL_BATCH * WORLD
        student = {"trunk": trunk, "embedder": embedder}
    loss_funcs, mining_funcs = losses_and_miners(config, distributed)
    recorded = []
    trainer = EmbeddingTransfer(
        models={**student, "teacher": teacher},
        optimizers={
            "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.2),
            "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.2),
        },
        batch_size=batch_size,
        loss_funcs=loss_funcs,
        mining_funcs=mining_funcs,
        dataset=data,
        sampler=sampler,
        iterations_per_epoch=STEPS,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
        dtype=torch.float64,
        end_of_iteration_hook=lambda t: recorded.append(float(t.losses["total_loss"].detach())),
    )
    trainer.train(num_epochs=1)
    weights = [p.detach().clone() for p in list(trunk.parameters()) + list(embedder.parameters())]
    return {"weights": weights, "losses": recorded, "initial": [p.detach().clone() for p in models()[0].parameters()]}


CONFIGS = ["relaxed+metric", "contrastive+miner-efficient"]


def run_configs(rank, world_size):
    return {config: train(config, rank) for config in CONFIGS}


@pytest.fixture(scope="module")
def results():
    return run_world(__name__, "run_configs", WORLD)


@pytest.mark.parametrize("config", CONFIGS)
def test_same_weights_as_one_process(results, config):
    expected = train(config)
    assert len(expected["losses"]) == STEPS and all(x > 0 for x in expected["losses"])
    moved = sum(float((w - w0).abs().sum()) for w, w0 in zip(expected["weights"], expected["initial"]))
    assert moved > 1e-3, "the student did not train"
    for rank in range(WORLD):
        got = results[rank][config]
        torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(expected["losses"]), rtol=1e-9, atol=0)
        for w, e in zip(got["weights"], expected["weights"]):
            torch.testing.assert_close(w, e, rtol=1e-9, atol=1e-12)


def test_takes_teacher_looks_through_the_wrappers():
    assert takes_teacher(DistributedTransferLossWrapper(RelaxedContrastiveLoss()))
    assert not takes_teacher(DistributedTransferLossWrapper(ContrastiveLoss()))
    assert takes_teacher(DistributedTransferMinerWrapper(TeacherSimilarityMiner()))


def test_pml_wrappers_around_teacher_losses_are_refused():
    trunk, _, teacher = models()
    common = {"models": {"trunk": trunk, "teacher": teacher}, "optimizers": {}, "batch_size": 4, "dataset": dataset()}
    pml_loss_wrapper = pml_distributed.DistributedLossWrapper(RelaxedContrastiveLoss())
    with pytest.raises(
        ValueError,
        match="PML's DistributedLossWrapper neither gathers nor passes teacher_emb; wrap "
        "RelaxedContrastiveLoss in pml_relaxed.distributed.DistributedTransferLossWrapper",
    ):
        EmbeddingTransfer(loss_funcs={"transfer_loss": pml_loss_wrapper}, **common)
    pml_miner_wrapper = pml_distributed.DistributedMinerWrapper(TeacherSimilarityMiner())
    with pytest.raises(ValueError, match="wrap TeacherSimilarityMiner in pml_relaxed.distributed.DistributedTransfer"):
        EmbeddingTransfer(
            loss_funcs={"transfer_loss": ContrastiveLoss()}, mining_funcs={"tuple_miner": pml_miner_wrapper}, **common
        )
    with pytest.raises(ValueError, match="takes no teacher_emb, so it needs a teacher-based tuple_miner"):
        EmbeddingTransfer(loss_funcs={"transfer_loss": DistributedTransferLossWrapper(ContrastiveLoss())}, **common)
