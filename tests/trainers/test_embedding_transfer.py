import logging
import math

import pytest
import torch
from pytorch_metric_learning import losses, samplers, testers, trainers
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from pml_relaxed.datasets import Digits, MultiViewDataset, multi_view_collate
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.trainers import EmbeddingTransfer

CPU = torch.device("cpu")


def mlp(out_dim, hidden=64, batchnorm=False):
    layers = [torch.nn.Flatten(), torch.nn.Linear(64, hidden)]
    if batchnorm:
        layers.append(torch.nn.BatchNorm1d(hidden))
    layers += [torch.nn.ReLU(), torch.nn.Linear(hidden, out_dim)]
    return torch.nn.Sequential(*layers)


def noise(x):
    return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


@pytest.fixture(scope="module")
def trained_teacher():
    torch.manual_seed(0)
    teacher = mlp(32, hidden=128, batchnorm=True)
    train = Digits("train")
    trainer = trainers.MetricLossOnly(
        models={"trunk": teacher},
        optimizers={"trunk_optimizer": torch.optim.Adam(teacher.parameters(), lr=1e-2)},
        batch_size=64,
        loss_funcs={"metric_loss": losses.MultiSimilarityLoss()},
        dataset=train,
        sampler=samplers.MPerClassSampler(train.labels, m=8, length_before_new_iter=len(train)),
        dataloader_num_workers=0,
        data_device=CPU,
    )
    logging.getLogger("PML").setLevel(logging.WARNING)
    trainer.train(num_epochs=5)
    teacher.eval()
    return teacher


def r_at_1(trunk, embedder=None):
    tester = testers.GlobalEmbeddingSpaceTester(
        accuracy_calculator=AccuracyCalculator(
            include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count"
        ),
        dataloader_num_workers=0,
        data_device=CPU,
    )
    accuracies = tester.test({"test": Digits("test")}, 1, trunk, embedder or torch.nn.Identity())
    return accuracies["test"]["precision_at_1_level0"]


def distance_correlation(student, teacher):
    """Pearson correlation of student and (normalised) teacher pairwise distances on the unseen classes."""
    x = Digits("test").images
    with torch.no_grad():
        s = torch.pdist(student(x))
        t = torch.pdist(torch.nn.functional.normalize(teacher(x), dim=1))
    return torch.corrcoef(torch.stack([s, t]))[0, 1].item()


def make_trainer(teacher, student_trunk, student_embedder, **overrides):
    train = Digits("train")
    dataset = MultiViewDataset(train, transform=noise, num_views=2)
    optimizers = {
        f"{name}_optimizer": torch.optim.Adam(module.parameters(), lr=3e-3)
        for name, module in (("trunk", student_trunk), ("embedder", student_embedder))
        if any(True for _ in module.parameters())
    }
    kwargs = dict(
        models={"trunk": student_trunk, "embedder": student_embedder, "teacher": teacher},
        optimizers=optimizers,
        batch_size=32,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        dataset=dataset,
        sampler=samplers.MPerClassSampler(dataset.labels, m=4, length_before_new_iter=len(train)),
        collate_fn=multi_view_collate,
        dataloader_num_workers=0,
        data_device=CPU,
    )
    kwargs.update(overrides)
    return EmbeddingTransfer(**kwargs)


def state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_trains_student_with_sampler_tester_hooks_and_frozen_teacher(trained_teacher):
    teacher = trained_teacher
    teacher_before = state(teacher)
    teacher_r1 = r_at_1(teacher)
    torch.manual_seed(1)
    trunk = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU())
    embedder = torch.nn.Linear(64, 8)
    untrained_corr = distance_correlation(torch.nn.Sequential(trunk, embedder), teacher)
    batches, epochs = [], []
    trainer = make_trainer(
        teacher,
        trunk,
        embedder,
        lr_schedulers={"trunk_scheduler_by_epoch": None},
        end_of_iteration_hook=lambda t: batches.append(t.losses["transfer_loss"].item()),
        end_of_epoch_hook=lambda t: epochs.append(r_at_1(t.models["trunk"], t.models["embedder"])),
    )
    trainer.lr_schedulers["trunk_scheduler_by_epoch"] = torch.optim.lr_scheduler.StepLR(
        trainer.optimizers["trunk_optimizer"], step_size=1, gamma=0.5
    )
    trainer.train(num_epochs=4)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"teacher {k} changed"
    assert all(p.grad is None or not p.grad.any() for p in teacher.parameters())
    assert "teacher" in trainer.freeze_these and not teacher.training
    assert len(epochs) == 4 and len(batches) == 4 * trainer.iterations_per_epoch
    assert trainer.optimizers["trunk_optimizer"].param_groups[0]["lr"] == pytest.approx(3e-3 / 16)
    assert sum(batches[-10:]) / 10 < sum(batches[:10]) / 10, "transfer loss did not go down"
    # The student learns the teacher's geometry on unseen classes, and its R@1 follows the teacher's.
    trained_corr = distance_correlation(torch.nn.Sequential(trunk, embedder), teacher)
    assert trained_corr > untrained_corr + 0.1, (untrained_corr, trained_corr)
    assert abs(epochs[-1] - teacher_r1) < 0.1, (epochs, teacher_r1)


def test_multi_view_batches_reach_teacher_and_student_identically(trained_teacher):
    seen = {}

    class Spy(torch.nn.Module):
        def __init__(self, name, inner):
            super().__init__()
            self.name, self.inner = name, inner

        def forward(self, x):
            seen[self.name] = x.clone()
            return self.inner(x)

    trunk = Spy("student", mlp(8))
    trainer = make_trainer(Spy("teacher", trained_teacher), trunk, torch.nn.Identity(), iterations_per_epoch=1)
    trainer.train(num_epochs=1)
    assert seen["student"].shape == (64, 1, 8, 8)
    assert torch.equal(seen["student"], seen["teacher"])
    assert not torch.equal(seen["student"][0], seen["student"][1]), "two views should differ"


class RecordingMultiSimilarityLoss(losses.MultiSimilarityLoss):
    def forward(self, *args, **kwargs):
        loss = super().forward(*args, **kwargs)
        self.last = loss.detach().clone()  # PML's LossTracker weights the returned tensor in place
        return loss


def test_metric_loss_combined_with_weights_and_miner_with_pml_pair_loss(trained_teacher):
    trunk = mlp(8)
    metric_loss = RecordingMultiSimilarityLoss()
    trainer = make_trainer(
        trained_teacher,
        trunk,
        torch.nn.Identity(),
        loss_funcs={"transfer_loss": losses.ContrastiveLoss(), "metric_loss": metric_loss},
        mining_funcs={"tuple_miner": TeacherSimilarityMiner(pos_topk=2)},
        loss_weights={"transfer_loss": 1.0, "metric_loss": 0.5},
        iterations_per_epoch=3,
        end_of_iteration_hook=lambda t: seen.append(
            {**{k: v.detach().clone() for k, v in t.losses.items()}, "raw_metric": metric_loss.last}
        ),
    )
    seen = []
    trainer.train(num_epochs=1)
    assert len(seen) == 3
    assert trainer.mining_funcs["tuple_miner"].num_pos_pairs == 64 * 2
    for losses_at_step in seen:
        assert losses_at_step["metric_loss"] > 0 and losses_at_step["transfer_loss"] > 0
        torch.testing.assert_close(losses_at_step["metric_loss"], 0.5 * losses_at_step["raw_metric"])
        expected_total = losses_at_step["transfer_loss"] + losses_at_step["metric_loss"]
        torch.testing.assert_close(losses_at_step["total_loss"], expected_total)


def test_transfer_loss_without_teacher_needs_teacher_miner(trained_teacher):
    with pytest.raises(ValueError, match="takes no teacher_emb, so it needs a teacher-based tuple_miner"):
        make_trainer(
            trained_teacher, mlp(8), torch.nn.Identity(), loss_funcs={"transfer_loss": losses.ContrastiveLoss()}
        )


def test_teacher_is_required():
    trunk = mlp(8)
    with pytest.raises(AssertionError, match='models must contain "teacher"'):
        EmbeddingTransfer(
            models={"trunk": trunk},
            optimizers={},
            batch_size=8,
            loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
            dataset=Digits("train"),
        )


def test_pml_logging_presets_record_losses_and_run_the_tester(trained_teacher, tmp_path):
    from pytorch_metric_learning.utils import logging_presets

    record_keeper, _, _ = logging_presets.get_record_keeper(str(tmp_path / "logs"), str(tmp_path / "tensorboard"))
    assert record_keeper is not None, "record-keeper and tensorboard come with the [test] extra"
    hooks = logging_presets.get_hook_container(record_keeper, primary_metric="precision_at_1")
    tester = testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=hooks.end_of_testing_hook,
        accuracy_calculator=AccuracyCalculator(include=("precision_at_1",), k="max_bin_count"),
        dataloader_num_workers=0,
        data_device=CPU,
    )
    end_of_epoch = hooks.end_of_epoch_hook(tester, {"val": Digits("test")}, str(tmp_path / "models"), test_interval=1)
    trunk = mlp(8)
    trainer = make_trainer(
        trained_teacher,
        trunk,
        torch.nn.Identity(),
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(collect_stats=True)},
        end_of_iteration_hook=hooks.end_of_iteration_hook,
        end_of_epoch_hook=end_of_epoch,
        iterations_per_epoch=2,
    )
    trainer.train(num_epochs=2)
    assert hooks.get_best_epoch_and_accuracy(tester, "val")[0] in (1, 2)
    loss_history = hooks.get_loss_history()
    assert len(loss_history["transfer_loss"]) == len(loss_history["total_loss"]) >= 2
    assert all(math.isfinite(v) and v > 0 for v in loss_history["transfer_loss"])
    csv_files = {p.name for p in (tmp_path / "logs").rglob("*.csv")}
    assert any("transfer_loss" in name or "loss_histories" in name for name in csv_files), csv_files


# ---- issue 16: unlabeled data, teacher checkpoints, teacher dtype/device, weight 0, no warning ----


class RecordingRelaxedContrastiveLoss(RelaxedContrastiveLoss):
    """Records what the trainer hands the transfer loss (the keyword teacher_emb keeps it teacher-fed)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def forward(
        self,
        embeddings,
        labels=None,
        indices_tuple=None,
        ref_emb=None,
        ref_labels=None,
        *,
        teacher_emb,
        teacher_ref_emb=None,
    ):
        self.calls.append(
            {"embeddings": embeddings.detach().clone(), "labels": labels, "teacher_emb": teacher_emb.detach().clone()}
        )
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels, teacher_emb=teacher_emb)


class RecordingMiner(TeacherSimilarityMiner):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.labels_seen = []

    def forward(
        self, embeddings, labels=None, ref_emb=None, ref_labels=None, *, teacher_emb=None, teacher_ref_emb=None
    ):
        self.labels_seen.append(labels)
        return super().forward(embeddings, labels, ref_emb, ref_labels, teacher_emb=teacher_emb)


class CountingModule(torch.nn.Module):
    """Counts its forward calls and keeps the last input."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.last_input = inner, 0, None

    def forward(self, x):
        self.calls += 1
        self.last_input = x.detach().clone()
        return self.inner(x)


def unlabeled_images():
    return torch.utils.data.TensorDataset(Digits("train").images)  # batches are [images]: no labels


def small_trainer(teacher, trunk, labeled=True, **overrides):
    """A few-iteration trainer on digits (no sampler, no views); ``labeled=False`` drops the labels."""
    kwargs = dict(
        models={"trunk": trunk, "teacher": teacher},
        optimizers={"trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1)},
        batch_size=16,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        dataset=Digits("train") if labeled else unlabeled_images(),
        iterations_per_epoch=2,
        dataloader_num_workers=0,
        data_device=CPU,
    )
    if not labeled:
        kwargs["data_and_label_getter"] = lambda batch: (batch[0], None)
    kwargs.update(overrides)
    return EmbeddingTransfer(**kwargs)


def test_unlabeled_dataset_trains_and_the_transfer_loss_gets_labels_none():
    teacher, trunk = CountingModule(mlp(16)), CountingModule(mlp(8))
    transfer_loss = RecordingRelaxedContrastiveLoss()
    trainer = small_trainer(teacher, trunk, labeled=False, loss_funcs={"transfer_loss": transfer_loss})
    before = state(trunk)
    trainer.train(num_epochs=1)
    assert len(transfer_loss.calls) == 2 and all(call["labels"] is None for call in transfer_loss.calls)
    # the teacher saw the student's batch and its embeddings are what the loss got
    assert torch.equal(teacher.last_input, trunk.last_input)
    with torch.no_grad():
        torch.testing.assert_close(transfer_loss.calls[-1]["teacher_emb"], teacher.inner(trunk.last_input))
    assert any(not torch.equal(v, before[k]) for k, v in trunk.state_dict().items()), "the student did not train"


def test_unlabeled_dataset_with_a_teacher_miner_and_a_pml_pair_loss():
    miner = RecordingMiner(pos_topk=2)
    trainer = small_trainer(
        mlp(16),
        mlp(8),
        labeled=False,
        loss_funcs={"transfer_loss": losses.ContrastiveLoss()},
        mining_funcs={"tuple_miner": miner},
    )
    trainer.train(num_epochs=1)
    assert miner.labels_seen == [None, None]
    assert miner.num_pos_pairs == 16 * 2
    assert math.isfinite(float(trainer.losses["total_loss"]))


def test_unlabeled_batch_with_a_label_metric_loss_raises_a_clear_error():
    trainer = small_trainer(
        mlp(16),
        mlp(8),
        labeled=False,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(), "metric_loss": losses.MultiSimilarityLoss()},
    )
    with pytest.raises(
        ValueError, match="metric_loss MultiSimilarityLoss needs labels, but data_and_label_getter returned labels None"
    ):
        trainer.train(num_epochs=1)


def test_unlabeled_batch_with_a_subset_batch_miner_raises_a_clear_error():
    class FirstPerClass(torch.nn.Module):  # PML 2.x ships no subset batch miner; this one needs labels
        def forward(self, embeddings, labels):
            return torch.unique(labels, return_inverse=True)[1].unique()

    trainer = small_trainer(mlp(16), mlp(8), labeled=False, mining_funcs={"subset_batch_miner": FirstPerClass()})
    with pytest.raises(ValueError, match="subset_batch_miner FirstPerClass needs labels"):
        trainer.train(num_epochs=1)


def test_metric_loss_with_weight_zero_is_allowed_without_labels():
    trainer = small_trainer(
        mlp(16),
        mlp(8),
        labeled=False,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(), "metric_loss": losses.MultiSimilarityLoss()},
        loss_weights={"transfer_loss": 1.0, "metric_loss": 0.0},
    )
    trainer.train(num_epochs=1)
    assert trainer.losses["metric_loss"] == 0


def saved_files(trainer, folder):
    """What PML's HookContainer writes for this trainer (models, optimizers, losses, ...), by name."""
    from pytorch_metric_learning.utils import logging_presets

    logging_presets.HookContainer(record_keeper=None).save_models(trainer, str(folder), 1)
    return sorted(p.name for p in folder.iterdir())


def test_teacher_is_not_saved_with_the_student_by_default(tmp_path):
    teacher, trunk = mlp(16), mlp(8)
    models = {"trunk": trunk, "teacher": teacher}
    trainer = small_trainer(teacher, trunk, models=models)
    trainer.train(num_epochs=1)
    files = saved_files(trainer, tmp_path)
    assert files == ["embedder_1.pth", "transfer_loss_1.pth", "trunk_1.pth", "trunk_optimizer_1.pth"]
    torch.testing.assert_close(torch.load(tmp_path / "trunk_1.pth"), trunk.state_dict())
    assert trainer.teacher is teacher and "teacher" not in trainer.models and models["teacher"] is teacher
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    # PML's loader restores the student from the folder and leaves the teacher alone
    from pytorch_metric_learning.utils import logging_presets

    teacher_before, trained = state(teacher), state(trunk)
    with torch.no_grad():
        for p in trunk.parameters():
            p.zero_()
    logging_presets.HookContainer(record_keeper=None).load_latest_saved_models(trainer, str(tmp_path), CPU)
    torch.testing.assert_close(trunk.state_dict(), trained)
    torch.testing.assert_close(teacher.state_dict(), teacher_before)


def test_save_teacher_true_writes_the_teacher_checkpoint(tmp_path):
    teacher = mlp(16)
    trainer = small_trainer(teacher, mlp(8), save_teacher=True)
    assert trainer.models["teacher"] is teacher is trainer.teacher
    assert "teacher_1.pth" in saved_files(trainer, tmp_path)
    torch.testing.assert_close(torch.load(tmp_path / "teacher_1.pth"), teacher.state_dict())


@pytest.mark.parametrize("teacher_dtype", [torch.float64, torch.bfloat16])
def test_teacher_in_another_dtype_beside_a_float32_student(teacher_dtype):
    teacher = CountingModule(mlp(16).to(teacher_dtype))
    trunk = CountingModule(mlp(8))
    transfer_loss = RecordingRelaxedContrastiveLoss()
    trainer = small_trainer(teacher, trunk, loss_funcs={"transfer_loss": transfer_loss})
    trainer.train(num_epochs=1)
    assert teacher.last_input.dtype == teacher_dtype and trunk.last_input.dtype == torch.float32
    call = transfer_loss.calls[-1]
    assert call["embeddings"].dtype == call["teacher_emb"].dtype == torch.float32
    with torch.no_grad():  # the reference: the teacher in its own dtype on the student's batch, then cast
        expected = teacher.inner(trunk.last_input.to(teacher_dtype)).float()
    torch.testing.assert_close(call["teacher_emb"], expected, rtol=0, atol=0)
    assert math.isfinite(float(trainer.losses["total_loss"]))


def test_teacher_dtype_and_device_options_move_the_teacher():
    teacher = mlp(16)
    trunk = CountingModule(mlp(8))
    transfer_loss = RecordingRelaxedContrastiveLoss()
    trainer = small_trainer(
        teacher, trunk, loss_funcs={"transfer_loss": transfer_loss}, teacher_dtype=torch.float64, teacher_device="cpu"
    )
    assert trainer.teacher_input_spec() == (CPU, torch.float64)
    assert all(p.dtype == torch.float64 for p in teacher.parameters())
    trainer.train(num_epochs=1)
    with torch.no_grad():
        expected = teacher(trunk.last_input.double()).float()
    torch.testing.assert_close(transfer_loss.calls[-1]["teacher_emb"], expected, rtol=0, atol=0)


def test_integer_teacher_inputs_are_not_cast_to_the_teacher_dtype():
    from pml_relaxed.models import CachedTeacher

    table = torch.randn(20, 4, dtype=torch.float64)
    rows = torch.arange(20).unsqueeze(1)  # column 0: the sample index
    teacher = CachedTeacher(table).double()
    trainer = small_trainer(teacher, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 3)))
    assert trainer.teacher_input_spec()[1] == torch.float64
    student_emb = torch.zeros(20, 3)
    torch.testing.assert_close(trainer.compute_teacher_embeddings(rows, student_emb), table.float())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"save_teacher": 1}, TypeError, "save_teacher must be a bool; got int"),
        ({"teacher_dtype": torch.int64}, TypeError, "teacher_dtype must be a floating-point torch.dtype"),
        ({"teacher_dtype": "float64"}, TypeError, "teacher_dtype must be a floating-point torch.dtype"),
        ({"teacher_device": 0}, TypeError, "teacher_device must be a torch.device"),
        ({"teacher_device": "gpu0"}, ValueError, "teacher_device must name a device such as 'cpu'"),
    ],
)
def test_bad_teacher_options_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_trainer(mlp(16), mlp(8), **kwargs)


def test_no_teacher_forward_when_the_transfer_loss_has_weight_zero():
    teacher, seen = CountingModule(mlp(16)), []
    trainer = small_trainer(
        teacher,
        mlp(8),
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(), "metric_loss": losses.MultiSimilarityLoss()},
        loss_weights={"transfer_loss": 0.0, "metric_loss": 1.0},
        end_of_iteration_hook=lambda t: seen.append((float(t.losses["transfer_loss"]), float(t.losses["metric_loss"]))),
    )
    trainer.train(num_epochs=1)
    assert teacher.calls == 0
    assert len(seen) == 2 and all(transfer == 0 and metric > 0 for transfer, metric in seen)


def test_teacher_still_runs_at_weight_zero_when_the_miner_takes_it():
    teacher = CountingModule(mlp(16))
    miner = RecordingMiner(pos_topk=1)
    trainer = small_trainer(
        teacher,
        mlp(8),
        loss_funcs={"transfer_loss": losses.ContrastiveLoss(), "metric_loss": losses.MultiSimilarityLoss()},
        mining_funcs={"tuple_miner": miner},
        loss_weights={"transfer_loss": 0.0, "metric_loss": 1.0},
    )
    trainer.train(num_epochs=1)
    assert teacher.calls == 2 and len(miner.labels_seen) == 2


def test_no_warning_for_the_optional_metric_loss(caplog):
    trunk, embedder = mlp(8), torch.nn.Linear(8, 4)
    optimizers = {
        "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1),
        "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.1),
    }
    models = {"trunk": trunk, "embedder": embedder}
    with caplog.at_level(logging.WARNING, logger="PML"):
        small_trainer(mlp(16), trunk, models={**models, "teacher": mlp(16)}, optimizers=optimizers)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    # PML's key checker still warns about what matters: a student model without an optimizer
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="PML"):
        small_trainer(
            mlp(16),
            trunk,
            models={**models, "teacher": mlp(16)},
            optimizers={"trunk_optimizer": optimizers["trunk_optimizer"]},
        )
    assert [r.getMessage() for r in caplog.records] == ['optimizers is missing "embedder_optimizer"']
