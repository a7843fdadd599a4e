"""EmbeddingTransfer's EMA teacher mode: a momentum copy of the student, updated before every optimizer step."""

import copy
import logging

import pytest
import torch
from pytorch_metric_learning.utils import logging_presets

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.similarities import ContextualSimilarity
from pml_relaxed.trainers import EmbeddingTransfer
from pml_relaxed.trainers.embedding_transfer import ema_update_

CPU = torch.device("cpu")


def student_parts():
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU()).double()
    embedder = torch.nn.Linear(8, 4).double()
    return trunk, embedder


def state(*modules):
    """Every parameter and buffer of the modules, in registration order, as float64 copies."""
    return [t.detach().clone().double() for m in modules for t in list(m.parameters()) + list(m.buffers())]


def make_trainer(trunk, embedder, momentum, hook=None, iterations=3, **kwargs):
    data = torch.utils.data.TensorDataset(torch.randn(40, 6, dtype=torch.float64))
    params = list(trunk.parameters()) + list(embedder.parameters())
    return EmbeddingTransfer(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={"trunk_optimizer": torch.optim.SGD(params, lr=0.5)},
        batch_size=10,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(similarity=ContextualSimilarity(k=3), block_size=0)},
        dataset=data,
        data_and_label_getter=lambda batch: (batch[0], None),
        iterations_per_epoch=iterations,
        dataloader_num_workers=0,
        data_device=CPU,
        dtype=torch.float64,
        ema_momentum=momentum,
        end_of_iteration_hook=hook,
        **kwargs,
    )


@pytest.mark.parametrize("momentum", [0.0, 0.9, 0.999, 1.0])
def test_ema_teacher_follows_the_explicit_formula_after_every_step(momentum):
    torch.manual_seed(0)
    trunk, embedder = student_parts()
    snapshots = []
    trainer = make_trainer(
        trunk,
        embedder,
        momentum,
        hook=lambda t: snapshots.append((state(t.models["trunk"], t.models["embedder"]), state(*t.teacher))),
    )
    assert trainer.teacher is not trunk and trainer.models["teacher"] is trainer.teacher
    expected = state(trunk, embedder)  # the teacher starts as a copy of the student
    assert all(torch.equal(a, b) for a, b in zip(state(*trainer.teacher), expected))
    trainer.train(num_epochs=1)
    assert len(snapshots) == 3
    tensors = [t for m in (trunk, embedder) for t in list(m.parameters()) + list(m.buffers())]
    num_tracked = [i for i, t in enumerate(tensors) if not t.is_floating_point()]
    assert len(num_tracked) == 1  # BatchNorm's num_batches_tracked: copied, not averaged
    is_parameter = [
        p for m in (trunk, embedder) for p in [True] * len(list(m.parameters())) + [False] * len(list(m.buffers()))
    ]
    initial_parameters = [t.clone() for t, p in zip(expected, is_parameter) if p]
    before_step = [t.clone() for t in expected]  # the student's parameters before the optimizer step
    for step, (student_after_step, teacher_after_step) in enumerate(snapshots, start=1):
        assert student_after_step[num_tracked[0]].item() == step
        # STML's order: the teacher moves towards the student after the backward pass, before the optimizer step,
        # so it sees this step's buffers (BatchNorm statistics of this forward pass) and last step's parameters
        source = [b if p else s for b, s, p in zip(before_step, student_after_step, is_parameter)]
        for i, (t, s) in enumerate(zip(expected, source)):
            expected[i] = s.clone() if i in num_tracked else momentum * t + (1 - momentum) * s
        for t, e in zip(teacher_after_step, expected):
            torch.testing.assert_close(t, e, rtol=1e-12, atol=1e-12)
        before_step = [s.clone() for s in student_after_step]
    first_teacher = [t for t, p in zip(snapshots[0][1], is_parameter) if p]
    assert all(
        torch.equal(t, s) for t, s in zip(first_teacher, initial_parameters)
    )  # after step 1: the initial student


def test_ema_teacher_is_frozen_in_eval_mode_and_feeds_the_loss():
    torch.manual_seed(0)
    trunk, embedder = student_parts()
    seen = []
    trainer = make_trainer(trunk, embedder, 0.5)
    original = trainer.compute_teacher_embeddings

    def spy(data, student_emb=None):
        out = original(data, student_emb)
        seen.append((trainer.teacher.training, out.requires_grad))
        return out

    trainer.compute_teacher_embeddings = spy
    trainer.train(num_epochs=1)
    assert seen == [(False, False)] * 3
    assert all(not p.requires_grad for p in trainer.teacher.parameters())


def test_ema_update_casts_and_copies_integer_buffers():
    student = torch.nn.BatchNorm1d(3)
    student.running_mean.fill_(2.0)
    student.num_batches_tracked.fill_(7)
    teacher = copy.deepcopy(student).double()
    teacher.running_mean.fill_(1.0)
    ema_update_(teacher, student, 0.75)
    torch.testing.assert_close(teacher.running_mean, torch.full((3,), 0.75 * 1.0 + 0.25 * 2.0, dtype=torch.float64))
    assert int(teacher.num_batches_tracked) == 7 and teacher.running_mean.dtype == torch.float64


@pytest.mark.parametrize("save_teacher", [False, True])
def test_the_ema_teacher_is_always_in_models(save_teacher):
    trunk, embedder = student_parts()
    trainer = make_trainer(trunk, embedder, 0.9, save_teacher=save_teacher)
    assert trainer.models["teacher"] is trainer.teacher and trainer.keeps_teacher_in_models()


def test_the_ema_teacher_is_saved_and_loaded_by_pml_hooks_and_stays_frozen(tmp_path, caplog):
    """PML's HookContainer writes teacher_<epoch>.pth and loads it back; PML's trainer treats it as frozen."""
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="PML"):
        trainer = make_trainer(*student_parts(), 0.5)
    assert "teacher" in trainer.freeze_these and not any("teacher" in r.message for r in caplog.records)
    trainer.train(num_epochs=1)
    trainer.set_to_train()
    assert not trainer.teacher.training and not any(p.requires_grad for p in trainer.teacher.parameters())
    assert trainer.models["trunk"].training
    hooks = logging_presets.HookContainer(record_keeper=None)
    hooks.save_models(trainer, str(tmp_path), 1)
    assert (tmp_path / "teacher_1.pth").exists() and not (tmp_path / "teacher_optimizer_1.pth").exists()
    resumed = make_trainer(*student_parts(), 0.5)  # a new student, so a new initial teacher
    assert not all(torch.equal(a, b) for a, b in zip(state(*resumed.teacher), state(*trainer.teacher)))
    assert hooks.load_latest_saved_models(resumed, str(tmp_path), device=CPU) == 2
    assert all(torch.equal(a, b) for a, b in zip(state(*resumed.teacher), state(*trainer.teacher)))
    assert resumed.teacher is resumed.models["teacher"]


@pytest.mark.parametrize(
    "momentum, error, match",
    [
        (1.5, ValueError, "ema_momentum must be in \\[0, 1\\]; got 1.5"),
        ("0.9", TypeError, "ema_momentum must be a real number"),
    ],
)
def test_bad_momentum(momentum, error, match):
    trunk, embedder = student_parts()
    with pytest.raises(error, match=match):
        make_trainer(trunk, embedder, momentum)


def test_ema_with_a_given_teacher_is_refused():
    trunk, embedder = student_parts()
    models = {"trunk": trunk, "teacher": torch.nn.Linear(6, 3)}
    with pytest.raises(ValueError, match="models must not hold a 'teacher'; got models\\['teacher'\\] = Linear"):
        EmbeddingTransfer(
            models=models,
            optimizers={},
            batch_size=4,
            loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
            dataset=None,
            ema_momentum=0.9,
        )
    assert set(models) == {"trunk", "teacher"}
