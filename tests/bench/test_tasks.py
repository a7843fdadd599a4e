"""Tiny end-to-end runs of the tasks beyond labelled metric learning (issue 19), and their helpers."""

import json

import pytest
import torch

from pml_relaxed import cli
from pml_relaxed.bench.tasks import TaskConfig, run_task
from pml_relaxed.bench.tasks.classification import HintonKDLoss
from pml_relaxed.bench.tasks.common import (
    TwoViewCollate,
    choose_on_validation,
    knn_accuracy,
    verdict,
    within_class_split,
)

TINY = dict(seeds=1, epochs=1, teacher_epochs=1, batch_size=32)


def read_runs(folder):
    return [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]


def test_ssl_task_runs_end_to_end_and_resumes(tmp_path):
    paths = run_task(
        TaskConfig(task="ssl", output_dir=str(tmp_path), sigmas=[0.5, 1.0], settings=["compression"], **TINY)
    )
    runs = read_runs(tmp_path)
    assert sorted((r["setting"], r["method"]) for r in runs) == [
        ("compression", "ntxent"),
        ("compression", "relaxed_contrastive"),
        ("compression", "relaxed_contrastive"),
        ("teacher", "ntxent"),
    ]
    assert all(set(r["metrics"]) == {"recall_at_1", "mean_average_precision_at_r", "knn5_accuracy"} for r in runs)
    assert "| val | compression | relaxed_contrastive | sigma=0.5 teacher_temperature=0.1 | 1 |" in paths[1].read_text()
    teacher_file = tmp_path / "teacher_ssl_val_t0.1_e1_s0.pt"
    assert teacher_file.exists()
    saved = torch.load(teacher_file)
    run_task(
        TaskConfig(task="ssl", output_dir=str(tmp_path), sigmas=[0.5, 1.0], settings=["compression"], **TINY)
    )  # resumes: nothing new, the cached teacher is loaded, not retrained
    assert len(read_runs(tmp_path)) == 4
    assert all(torch.equal(saved[k], v) for k, v in torch.load(teacher_file).items())


def test_self_taught_task_from_the_cli(tmp_path):
    cli.main(
        [
            "bench",
            "--task",
            "self-taught",
            "--output-dir",
            str(tmp_path),
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--ks",
            "3",
            "--ema-momenta",
            "0.9",
        ]
    )
    runs = read_runs(tmp_path)
    assert [(r["method"], r["options"]) for r in runs] == [
        ("ntxent", {"temperature": 0.1}),
        ("stml", {"k": 3, "ema_momentum": 0.9, "sigma": 1.0}),
    ]
    assert "pml-relaxed bench --task self-taught" in (tmp_path / "results.md").read_text()


def test_classification_task_runs_every_method(tmp_path):
    run_task(TaskConfig(task="classification", output_dir=str(tmp_path), weights=[0.5], **TINY))
    runs = read_runs(tmp_path)
    assert [r["method"] for r in runs] == ["ce", "ce", "ce+relaxed_contrastive", "ce+kd", "ce+rkd"]
    assert (tmp_path / "teacher_classification_e1_s0.pt").exists()
    assert all(0 <= r["metrics"]["top1_accuracy"] <= 1 for r in runs)


def test_task_metric_is_the_metric_learning_benchmark(tmp_path):
    with pytest.raises(FileNotFoundError, match="--report-only needs the runs of an earlier call"):
        cli.main(["bench", "--task", "metric", "--report-only", "--output-dir", str(tmp_path)])


def test_bad_task_options():
    with pytest.raises(ValueError, match="methods has unknown name\\(s\\) \\['kd'\\] for task ssl"):
        run_task(TaskConfig(task="ssl", methods=["kd"]))
    with pytest.raises(ValueError, match="settings must be some of \\['self_transfer', 'compression'\\]"):
        run_task(TaskConfig(task="ssl", settings=["tiny"]))
    with pytest.raises(ValueError, match="task must be one of"):
        run_task(TaskConfig(task="nope"))


def test_hinton_kd_loss_matches_the_formula():
    head = torch.nn.Linear(4, 3).double()
    emb, teacher_logits = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = 2.0
    p = torch.softmax(teacher_logits / t, 1)
    q = torch.softmax(head(emb) / t, 1)
    expected = t * t * (p * (p.log() - q.log())).sum(1).mean()
    torch.testing.assert_close(HintonKDLoss(head, temperature=t)(emb, teacher_emb=teacher_logits), expected)
    assert list(HintonKDLoss(head).parameters()) == []


def test_knn_accuracy_and_ties():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.15, 0.85], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # k=2: item 4's two nearest are 3 (class 1), then 1 (class 0): one vote each, the nearer one (3) wins the tie
    assert knn_accuracy(emb, labels, k=2) == 1.0
    assert knn_accuracy(emb, torch.tensor([0, 1, 0, 1, 0]), k=1) == 0.0
    assert verdict(0.80, 0.01, 0.795, 0.01) == "tie" and verdict(0.9, 0.01, 0.8, 0.02) == "win"


def test_two_views_and_within_class_split():
    views, ids = TwoViewCollate(lambda x: x + 1)([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    assert views.shape == (4, 1, 2, 2) and ids.tolist() == [0, 0, 1, 1] and float(views[2].mean()) == 2.0
    tr_x, tr_y, val_x, val_y = within_class_split("val")
    _, _, te_x, te_y = within_class_split("test")
    assert set(tr_y.tolist()) == set(val_y.tolist()) == set(te_y.tolist()) == set(range(10))
    flat = lambda x: {tuple(r.flatten().tolist()) for r in x}  # noqa: E731
    assert not flat(val_x) & flat(te_x) and len(tr_x) + len(val_x) + len(te_x) == 1797


def test_choose_on_validation_takes_the_best_mean_and_the_first_on_equal_means():
    def run(method, options, seed, value, split="val"):
        return {
            "split": split,
            "setting": "s",
            "method": method,
            "seed": seed,
            "options": options,
            "metrics": {"m": value},
        }

    records = [
        run("a", {"x": 1}, 0, 0.25),
        run("a", {"x": 1}, 1, 0.75),
        run("a", {"x": 2}, 0, 0.5),
        run("a", {"x": 2}, 1, 0.5),
        run("a", {"x": 3}, 0, 0.9),
        run("a", {"x": 9}, 0, 1.0, split="test"),
        run("a", {"x": 9}, 1, 1.0, split="test"),
    ]
    # equal means: the first; x=3 has one seed only; test runs never count
    assert choose_on_validation(records, "m", seeds=2) == {("s", "a"): {"x": 1}}
    records[2]["metrics"]["m"] = 0.625
    assert choose_on_validation(records, "m", seeds=2) == {("s", "a"): {"x": 2}}
