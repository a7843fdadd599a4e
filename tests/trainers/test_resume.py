"""A run SIGKILLed right after an epoch's checkpoint and resumed with PML's hooks ends with the weights of an
uninterrupted run, to the bit: plain transfer, STML (EMA teacher), a cross-batch memory, and DDP on 2 gloo
processes. Plus the helpers of pml_relaxed.trainers.resume on their own.

Each run is tests/trainers/resume_run.py's ``main`` in a new process: a child of a forkserver that has imported
torch, PML and pml_relaxed once and trained nothing (a fresh interpreter per run would spend most of the test
importing torch); the killed run and the resumed one share nothing but the checkpoint folder.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils import logging_presets

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.samplers import NearestNeighbourBatchSampler
from pml_relaxed.trainers import EmbeddingTransfer, RandomState, register_training_state
from tests.trainers import resume_run

EPOCHS, KILL_AFTER = 3, 1
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def forkserver():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([resume_run.__name__])
    warm_up = context.Process(target=int)  # starts the server (its imports take seconds) outside the timed runs
    warm_up.start()
    warm_up.join()
    return context


def run(forkserver, case: str, folder: Path, kill_after=None) -> int:
    """Exit code of one run of ``case`` (-9 when it was SIGKILLed); its output is in ``folder``.log."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = f"{folder}.{'killed' if kill_after else 'run'}.log"
    process = forkserver.Process(
        target=resume_run.main_in_own_process_group, args=(case, str(folder), EPOCHS, kill_after, log)
    )
    process.start()
    process.join(TIMEOUT_S)
    if process.exitcode is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.join()
        pytest.fail(f"{case} did not finish in {TIMEOUT_S} s:\n{Path(log).read_text()}")
    if process.exitcode not in (0, -signal.SIGKILL):
        pytest.fail(f"{case} failed with exit code {process.exitcode}:\n{Path(log).read_text()}")
    return process.exitcode


def assert_same(a, b, where: str) -> None:
    """Equal to the bit: every tensor torch.equal (same dtype and shape), everything else ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def checkpoint(folder: Path, epoch: int) -> dict:
    return {path.name: torch.load(path, weights_only=True) for path in sorted(folder.glob(f"*_{epoch}.pth"))}


@pytest.mark.parametrize("case", resume_run.CASES)
def test_a_killed_and_resumed_run_ends_with_the_uninterrupted_weights(forkserver, tmp_path, case):
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    assert run(forkserver, case, uninterrupted) == 0
    assert run(forkserver, case, resumed, kill_after=KILL_AFTER) == -signal.SIGKILL
    folders = [resumed / f"rank{r}" for r in range(resume_run.WORLD)] if case == "ddp" else [resumed]
    for folder in folders:
        assert (folder / f"trunk_{KILL_AFTER}.pth").exists() and not (folder / "final.pth").exists()
    assert run(forkserver, case, resumed) == 0
    for folder in folders:
        expected_folder = uninterrupted / folder.relative_to(resumed)
        expected, got = (torch.load(f / "final.pth", weights_only=True) for f in (expected_folder, folder))
        assert (expected.pop("start_epoch"), got.pop("start_epoch")) == (1, KILL_AFTER + 1), "it resumed"
        assert_same(got, expected, f"{case}: final student in {folder.name}")
        saved, expected_saved = checkpoint(folder, EPOCHS), checkpoint(expected_folder, EPOCHS)
        assert "random_state_3.pth" in saved and "trunk_optimizer_3.pth" in saved
        assert ("teacher_3.pth" in saved) == (case == "ema") and ("sampler_3.pth" in saved) == (case != "plain")
        assert_same(saved, expected_saved, f"{case}: epoch {EPOCHS}'s checkpoint in {folder.name}")


def test_random_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.save(RandomState().state_dict(), tmp_path / "random_state.pth")
    expected = (torch.rand(4), np.random.rand(4), random.random())
    np.random.randn()  # a cached Gaussian is part of NumPy's state
    RandomState().load_state_dict(torch.load(tmp_path / "random_state.pth", weights_only=True))
    got = (torch.rand(4), np.random.rand(4), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def make_trainer(iterations_per_epoch=None, sampler=None):
    student = torch.nn.Linear(4, 2)
    return EmbeddingTransfer(
        models={"trunk": student, "teacher": torch.nn.Linear(4, 3)},
        optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.1)},
        batch_size=8,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        dataset=torch.utils.data.TensorDataset(torch.randn(32, 4)),
        sampler=sampler,
        iterations_per_epoch=iterations_per_epoch,
        data_and_label_getter=lambda batch: (batch[0], None),
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
    )


def test_register_training_state_adds_the_state_to_what_pml_saves(tmp_path):
    sampler = NearestNeighbourBatchSampler(torch.randn(32, 2), batch_size=8, neighbours_per_query=2, seed=0)
    trainer = make_trainer(sampler=sampler)
    hooks = logging_presets.HookContainer(record_keeper=None)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizers["trunk_optimizer"], 1)
    state = register_training_state(hooks, trainer, extra=scheduler)
    assert state is trainer.training_state and list(state) == ["random_state", "sampler", "extra"]
    assert state["sampler"] is sampler
    register_training_state(hooks, trainer)
    assert hooks.saveable_trainer_objects.count("training_state") == 1
    hooks.save_models(trainer, str(tmp_path), 1)
    assert {"random_state_1.pth", "sampler_1.pth", "trunk_1.pth"} <= {p.name for p in tmp_path.iterdir()}
    with pytest.raises(TypeError, match="extra must have state_dict\\(\\) and load_state_dict\\(\\); got int"):
        register_training_state(hooks, trainer, extra=3)
    with pytest.raises(TypeError, match="hooks must be PML's logging_presets.HookContainer"):
        register_training_state(object(), trainer)


@pytest.mark.parametrize("iterations, warns", [(None, False), (8, False), (4, False), (3, True)])
def test_epochs_that_are_not_whole_passes_warn(iterations, warns):
    trainer = make_trainer(iterations_per_epoch=iterations)  # 4 batches per pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_training_state(logging_presets.HookContainer(record_keeper=None), trainer)
    messages = [str(w.message) for w in caught if "batches per pass" in str(w.message)]
    assert len(messages) == warns
    if warns:
        assert messages[0].startswith("iterations_per_epoch=3 is not a multiple of the DataLoader's 4 batches")
