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
        accuracy_calculator=AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count"),
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
        teacher, trunk, embedder,
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
        trained_teacher, trunk, torch.nn.Identity(),
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
        make_trainer(trained_teacher, mlp(8), torch.nn.Identity(), loss_funcs={"transfer_loss": losses.ContrastiveLoss()})


def test_teacher_is_required():
    trunk = mlp(8)
    with pytest.raises(AssertionError, match='models must contain "teacher"'):
        EmbeddingTransfer(
            models={"trunk": trunk}, optimizers={}, batch_size=8,
            loss_funcs={"transfer_loss": RelaxedContrastiveLoss()}, dataset=Digits("train"),
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
        trained_teacher, trunk, torch.nn.Identity(),
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
