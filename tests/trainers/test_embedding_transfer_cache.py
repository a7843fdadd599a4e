"""EmbeddingTransfer with a TeacherCache in place of the teacher trains the same student as the live teacher."""

from __future__ import annotations

import copy
import logging
import os

import pytest
import torch

from pml_relaxed.datasets import SeededViewDataset, seeded_view_collate
from pml_relaxed.distributed import DistributedTransferLossWrapper
from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.models import TeacherCache
from pml_relaxed.trainers import EmbeddingTransfer
from tests.distributed.dist_harness import run_world

CPU = torch.device("cpu")
NUM_SAMPLES, IN_DIM, TEACHER_DIM, STUDENT_DIM = 48, 6, 5, 4
FOLDER_VARIABLE = "PML_RELAXED_TEST_TRAINER_CACHE_FOLDER"


def augment(x: torch.Tensor) -> torch.Tensor:
    return x * (1 + 0.2 * torch.rand(1)) + 0.1 * torch.randn_like(x)


def make_setting(folder):
    torch.manual_seed(0)
    points = torch.randn(NUM_SAMPLES, IN_DIM)
    labels = torch.arange(NUM_SAMPLES) % 4
    data = SeededViewDataset(torch.utils.data.TensorDataset(points, labels), augment, num_views=2, seed=3)
    teacher = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 16), torch.nn.Tanh(), torch.nn.Linear(16, TEACHER_DIM))
    teacher.double()
    build = {"views": 2, "batch_size": 7, "shard_size": 10, "dtype": torch.float64, "progress": False}
    return data, teacher, TeacherCache.build(teacher, data, folder, **build)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    return make_setting(tmp_path_factory.mktemp("cache"))


def train(data, teacher=None, cache=None, transfer_loss=None, miner=None, steps=4, sampler=None):
    torch.manual_seed(1)
    student = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 8), torch.nn.ReLU(), torch.nn.Linear(8, STUDENT_DIM)).double()
    models = {"trunk": student} if teacher is None else {"trunk": student, "teacher": teacher}
    logging.getLogger("PML").setLevel(logging.WARNING)
    trainer = EmbeddingTransfer(
        models=models,
        optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.5)},
        batch_size=8,
        loss_funcs={"transfer_loss": transfer_loss or RelaxedContrastiveLoss(sigma=1.0, delta=0.5)},
        mining_funcs={} if miner is None else {"tuple_miner": miner},
        dataset=data,
        sampler=sampler,
        collate_fn=seeded_view_collate,
        iterations_per_epoch=steps,
        dataloader_num_workers=0,
        data_device=CPU,
        dtype=torch.float64,
        teacher_cache=cache,
    )
    trainer.train(num_epochs=1)
    return student.state_dict()


def assert_same_student(first, second):
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=1e-12, atol=1e-12)


def test_lookup_equals_the_live_teacher_on_the_same_view(setting):
    data, teacher, cache = setting
    indices, views = torch.tensor([0, 9, 10, 31, 47, 47]), torch.tensor([1, 0, 1, 1, 0, 1])
    live = teacher(torch.stack([data.view(int(i), int(v)) for i, v in zip(indices, views)]).double()).detach()
    torch.testing.assert_close(cache.lookup(indices, views), live, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["plain", "cross_batch_memory", "miner"])
def test_the_cache_trains_the_same_student_as_the_live_teacher(setting, case):
    data, teacher, cache = setting

    def losses():
        if case == "cross_batch_memory":
            return {"transfer_loss": TransferCrossBatchMemory(RelaxedContrastiveLoss(), STUDENT_DIM, TEACHER_DIM, 24)}
        if case == "miner":
            return {"transfer_loss": RelaxedContrastiveLoss(), "miner": TeacherSimilarityMiner(pos_topk=3)}
        return {}

    live = train(data, teacher=copy.deepcopy(teacher), **losses())
    cached = train(data, cache=cache, **losses())
    assert_same_student(live, cached)
    torch.manual_seed(1)
    initial = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 8), torch.nn.ReLU(), torch.nn.Linear(8, STUDENT_DIM))
    assert not torch.allclose(initial.double().state_dict()["0.weight"], cached["0.weight"])  # it trained


def test_the_trainer_refuses_a_cache_of_another_dataset(setting):
    data, _, cache = setting
    other = SeededViewDataset(data.dataset, augment, num_views=2, seed=4)
    with pytest.raises(ValueError, match=r"dataset differs \(.*seed: expected 3, got 4"):
        train(other, cache=cache)
    more_views = SeededViewDataset(data.dataset, augment, num_views=2, seed=3, view_pool=4)
    with pytest.raises(ValueError, match="draws from 4 views .*the cache holds 2"):
        train(more_views, cache=cache)


def test_the_trainer_refuses_a_cache_beside_a_teacher(setting):
    data, teacher, cache = setting
    with pytest.raises(ValueError, match=r"cannot be given with models\['teacher'\]"):
        train(data, teacher=teacher, cache=cache)
    with pytest.raises(TypeError, match="teacher_cache must be a pml_relaxed.models.TeacherCache"):
        train(data, cache=object())


def trainer_with_cache(data, cache, **kwargs):
    student = torch.nn.Linear(IN_DIM, STUDENT_DIM)
    return EmbeddingTransfer(
        models={"trunk": student},
        optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.1)},
        batch_size=4,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        dataset=data,
        collate_fn=seeded_view_collate,
        dataloader_num_workers=0,
        data_device=CPU,
        teacher_cache=cache,
        **kwargs,
    )


def test_what_a_cache_cannot_serve_is_refused(setting):
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    data, _, cache = setting
    with pytest.raises(ValueError, match="cannot be given with ema_momentum"):
        trainer_with_cache(data, cache, ema_momentum=0.9)
    with pytest.raises(ValueError, match=r"cannot be given with mining_funcs\['subset_batch_miner'\]"):
        trainer_with_cache(data, cache, mining_funcs={"subset_batch_miner": MultiSimilarityMiner()})
    trainer = trainer_with_cache(data, cache, view_ids_getter=lambda batch: batch[2][:, :1], iterations_per_epoch=1)
    with pytest.raises(ValueError, match=r"expected a \(8, 2\) tensor, got shape \(8, 1\)"):
        trainer.train(num_epochs=1)


def train_on_rank(rank: int, world_size: int) -> dict:
    """On each gloo rank: build the cache together, then train with the live teacher and with the cache, the
    transfer loss in DistributedTransferLossWrapper (which gathers teacher_emb across the ranks)."""
    data, teacher, cache = make_setting(os.environ[FOLDER_VARIABLE])

    def run(**route):
        sampler = torch.utils.data.DistributedSampler(data, world_size, rank, shuffle=True, seed=2)
        loss = DistributedTransferLossWrapper(RelaxedContrastiveLoss(sigma=1.0, delta=0.5))
        return train(data, transfer_loss=loss, sampler=sampler, steps=3, **route)

    return {"live": run(teacher=copy.deepcopy(teacher)), "cached": run(cache=cache)}


def test_under_gloo_the_cache_trains_the_same_students_as_the_live_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path))
    results = run_world(__name__, "train_on_rank", world_size=2)
    for result in results:
        assert_same_student(result["live"], result["cached"])
    assert not torch.allclose(results[0]["cached"]["0.weight"], results[1]["cached"]["0.weight"])  # own batches
