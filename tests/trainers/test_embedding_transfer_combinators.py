"""TransferCrossBatchMemory and TransferMultipleLosses as EmbeddingTransfer's transfer_loss."""

import logging

import torch
from pytorch_metric_learning import losses, samplers

from pml_relaxed.datasets import Digits
from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory, TransferMultipleLosses
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.trainers import EmbeddingTransfer

CPU = torch.device("cpu")
BATCH = 32


def mlp(out_dim):
    layers = [torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, out_dim)]
    return torch.nn.Sequential(*layers)


def make_trainer(transfer_loss, teacher, trunk, hook, iterations):
    logging.getLogger("PML").setLevel(logging.WARNING)
    train = Digits("train")
    return EmbeddingTransfer(
        models={"trunk": trunk, "teacher": teacher},
        optimizers={"trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=1e-2)},
        batch_size=BATCH,
        loss_funcs={"transfer_loss": transfer_loss},
        dataset=train,
        sampler=samplers.MPerClassSampler(train.labels, m=4, length_before_new_iter=len(train)),
        dataloader_num_workers=0,
        data_device=CPU,
        iterations_per_epoch=iterations,
        end_of_iteration_hook=hook,
    )


def frozen_copy(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_cross_batch_memory_as_transfer_loss():
    torch.manual_seed(0)
    teacher, trunk = mlp(16), mlp(8)
    teacher_before, trunk_before = frozen_copy(teacher), frozen_copy(trunk)
    xbm = TransferCrossBatchMemory(
        RelaxedContrastiveLoss(), embedding_size=8, teacher_embedding_size=16, memory_size=80
    )
    seen = []

    def hook(trainer):
        seen.append((trainer.losses["transfer_loss"].item(), xbm.queue_idx, xbm.has_been_filled, xbm.num_filled))

    make_trainer(xbm, teacher, trunk, hook, iterations=4).train(num_epochs=1)
    assert [s[1:] for s in seen] == [(32, False, 32), (64, False, 64), (16, True, 80), (48, True, 80)]
    assert all(torch.isfinite(torch.tensor(s[0])) and s[0] > 0 for s in seen)
    assert xbm.memory_has_labels, "the trainer's labels fill the label memory"
    with torch.no_grad():  # the memory holds the teacher's embeddings of the batches (teacher frozen)
        assert torch.isfinite(xbm.teacher_memory).all() and xbm.teacher_memory.abs().sum(1).gt(0).all()
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(v, trunk_before[k]) for k, v in trunk.state_dict().items())


def test_multiple_losses_as_transfer_loss_gets_the_teacher_per_member():
    torch.manual_seed(1)
    teacher, trunk = mlp(16), mlp(8)
    miner = TeacherSimilarityMiner(pos_topk=2)
    relaxed, pairs = RelaxedContrastiveLoss(), losses.ContrastiveLoss()
    combined = TransferMultipleLosses(
        {"relaxed": relaxed, "pairs": pairs}, miners={"pairs": miner}, weights={"relaxed": 1.0, "pairs": 0.5}
    )
    seen = []
    make_trainer(combined, teacher, trunk, lambda t: seen.append(t.losses["transfer_loss"].item()), 3).train(1)
    assert len(seen) == 3 and all(loss > 0 for loss in seen)
    assert miner.num_pos_pairs == BATCH * 2, "the teacher miner ran on the trainer's teacher embeddings"
