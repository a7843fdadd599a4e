"""Tiny end-to-end runs of the tasks beyond labelled metric learning, and their helpers."""

import json

import pytest
import torch

from pml_relaxed import cli
from pml_relaxed_bench.tasks import TaskConfig, get_task_parser, run_task
from pml_relaxed_bench.tasks.common import (
    choose_on_validation,
    knn_accuracy,
    network,
    unseen_classes,
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
    assert [p.name for p in paths] == ["results.json", "results.csv", "results.md"]  # the metric benchmark's files
    assert "| val | compression | relaxed_contrastive | sigma=0.5 teacher_temperature=0.1 | 1 |" in paths[2].read_text()
    assert "compression,relaxed_contrastive,sigma=0.5 teacher_temperature=0.1,1," in paths[1].read_text()
    assert json.loads(paths[0].read_text())["runs"] == runs
    teacher_file = tmp_path / "teacher_ssl_val_t0.1_e1_s0.pt"
    assert teacher_file.exists()
    saved = torch.load(teacher_file, weights_only=True)
    run_task(
        TaskConfig(task="ssl", output_dir=str(tmp_path), sigmas=[0.5, 1.0], settings=["compression"], **TINY)
    )  # resumes: nothing new, the cached teacher is loaded, not retrained
    assert len(read_runs(tmp_path)) == 4
    assert all(torch.equal(saved[k], v) for k, v in torch.load(teacher_file, weights_only=True).items())


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
    with pytest.raises(
        ValueError, match=r"stml_neighbours must be 0 \(random batches\) or divide batch_size \(64\).*\[5, -1\]"
    ):
        run_task(TaskConfig(task="self-taught", stml_neighbours=[0, 4, 5, -1]))
    with pytest.raises(
        ValueError, match=r"stml_centers must hold 0 \(STML's labels\) or 1 \(centred labels\); got \[2, True\]"
    ):
        run_task(TaskConfig(task="self-taught", stml_centers=[0, 2, True]))


def test_knn_accuracy_and_ties():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.15, 0.85], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # k=2: item 4's two nearest are 3 (class 1), then 1 (class 0): one vote each, the nearer one (3) wins the tie
    assert knn_accuracy(emb, labels, k=2) == 1.0
    assert knn_accuracy(emb, torch.tensor([0, 1, 0, 1, 0]), k=1) == 0.0
    assert verdict(0.80, 0.01, 0.795, 0.01) == "tie" and verdict(0.9, 0.01, 0.8, 0.02) == "win"


def test_within_class_split():
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


# ------------------------------------------------------------------------------------------------ Omniglot

OMNIGLOT_ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


@pytest.fixture(scope="module")
def omniglot_data():
    from pml_relaxed.datasets import default_root

    root = default_root("omniglot", "PML_RELAXED_OMNIGLOT")
    if not all((root / name).is_file() for name in OMNIGLOT_ZIPS):
        pytest.skip(f"the Omniglot zips {OMNIGLOT_ZIPS} are not in {str(root)!r} (set PML_RELAXED_DATA)")
    return root


def test_dataset_option_errors(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of \\['digits', 'omniglot'\\]; got 'mnist'"):
        run_task(TaskConfig(task="ssl", dataset="mnist", output_dir=str(tmp_path)))
    with pytest.raises(SystemExit):
        get_task_parser().parse_args(["--task", "ssl", "--dataset", "mnist"])
    assert get_task_parser().parse_args(["--task", "ssl"]).dataset == "digits"
    with pytest.raises(ValueError, match="dataset must be one of"):
        within_class_split("val", dataset="cifar")
    with pytest.raises(ValueError, match="arch must be 'mlp<H>' or 'conv4-w<W>'; got 'resnet18'"):
        network("resnet18", 8)


def test_one_output_folder_per_task_and_dataset(tmp_path):
    run_task(TaskConfig(task="self-taught", output_dir=str(tmp_path), methods=["ntxent"], **TINY))
    with pytest.raises(ValueError, match="holds runs of \\(task, dataset\\) \\[\\('self-taught', 'digits'\\)\\]"):
        run_task(TaskConfig(task="self-taught", dataset="omniglot", output_dir=str(tmp_path), **TINY))


def test_omniglot_splits(omniglot_data):
    from pml_relaxed_bench.tasks.common import omniglot

    train = omniglot("train")
    alphabet = [name.split("/")[0] for name in train.class_names]
    tr_x, ev_x, ev_y = unseen_classes("val", "omniglot")
    assert (len(tr_x), len(ev_x)) == (1720, 1000)
    assert {alphabet[c] for c in ev_y.tolist()} == {"Balinese", "Latin"}
    held = {i for i, a in enumerate(alphabet) if a in ("Balinese", "Latin")}
    train_rows = {tuple(x.flatten().tolist()) for x in tr_x[:50]}
    assert not train_rows & {
        tuple(train.images[i].flatten().tolist()) for i in range(len(train)) if int(train.labels[i]) in held
    }
    tr_x, ev_x, ev_y = unseen_classes("test", "omniglot")
    assert (len(tr_x), len(ev_x), len(set(ev_y.tolist()))) == (2720, 2120, 106)
    tr_x, tr_y, val_x, val_y = within_class_split("val", dataset="omniglot")
    _, _, te_x, te_y = within_class_split("test", dataset="omniglot")
    assert (len(tr_x), len(val_x), len(te_x)) == (1632, 544, 544)
    assert all(torch.bincount(y, minlength=136).tolist() == [n] * 136 for y, n in ((tr_y, 12), (val_y, 4), (te_y, 4)))
    flat = lambda x: {tuple(r.flatten().tolist()) for r in x}  # noqa: E731
    assert not flat(val_x) & flat(te_x) and not flat(tr_x) & flat(te_x)


def test_omniglot_tasks_run_one_epoch(omniglot_data, tmp_path):
    tiny = dict(TINY, batch_size=256)
    run_task(
        TaskConfig(
            task="self-taught", dataset="omniglot", methods=["stml"], ks=[4], output_dir=str(tmp_path / "st"), **tiny
        )
    )
    (run,) = read_runs(tmp_path / "st")
    assert (run["setting"], run["config"]["dataset"]) == ("conv4-w64", "omniglot")
    assert 0 < run["metrics"]["recall_at_1"] <= 1
    run_task(
        TaskConfig(task="classification", dataset="omniglot", methods=["ce"], output_dir=str(tmp_path / "c"), **tiny)
    )
    assert [r["setting"] for r in read_runs(tmp_path / "c")] == ["teacher", "conv4-w64->conv4-w16"]
    assert (tmp_path / "c" / "teacher_classification_omniglot_e1_s0.pt").exists()
    assert "# classification (omniglot)" in (tmp_path / "c" / "results.md").read_text()


# ------------------------------------------------------------------------------- STML's self-distillation term


def test_stml_runs_stmls_objective_from_the_library(monkeypatch, tmp_path):
    from pml_relaxed.losses import STMLLoss
    from pml_relaxed_bench.tasks import self_taught

    built = []

    class Recording(STMLLoss):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(self_taught, "STMLLoss", Recording)
    run_task(
        TaskConfig(
            task="self-taught", methods=["stml"], ks=[3], stml_kl_weights=[0.0, 1.0], output_dir=str(tmp_path), **TINY
        )
    )
    assert [(loss.kl_weight, loss.embedding_size) for loss in built] == [(0.0, None), (1.0, 64)]


def test_stml_kl_option_runs_and_leaves_the_runs_without_it_unchanged(tmp_path):
    from pml_relaxed_bench.tasks.self_taught import two_head_network

    assert two_head_network("mlp256", 64)(torch.randn(3, 8, 8)).shape == (3, 64 + 4 * 64)
    run_task(
        TaskConfig(
            task="self-taught", methods=["stml"], ks=[3], stml_kl_weights=[0.0, 0.5], output_dir=str(tmp_path), **TINY
        )
    )
    runs = read_runs(tmp_path)
    assert [r["options"] for r in runs] == [
        {"k": 3, "ema_momentum": 0.99, "sigma": 1.0},
        {"k": 3, "ema_momentum": 0.99, "sigma": 1.0, "kl_weight": 0.5},
    ]
    assert runs[0]["metrics"] != runs[1]["metrics"]
    assert get_task_parser().parse_args(["--task", "self-taught"]).stml_kl_weights == [0.0]


def test_stml_neighbour_batches_option_and_resume_keys(tmp_path):
    run_task(
        TaskConfig(
            task="self-taught",
            methods=["stml"],
            ks=[4],
            stml_kl_weights=[0.0, 0.5],
            stml_neighbours=[0, 4],
            output_dir=str(tmp_path),
            **TINY,
        )
    )
    base = {"k": 4, "ema_momentum": 0.99, "sigma": 1.0}
    runs = read_runs(tmp_path)
    assert [r["options"] for r in runs] == [
        base,
        {**base, "neighbours": 4},
        {**base, "kl_weight": 0.5},
        {**base, "kl_weight": 0.5, "neighbours": 4},
    ]
    assert len({json.dumps(r["metrics"]) for r in runs}) == 4
    assert get_task_parser().parse_args(["--task", "self-taught"]).stml_neighbours == [0]
    parsed = get_task_parser().parse_args(["--task", "self-taught", "--stml-neighbours", "4", "8"])
    assert parsed.stml_neighbours == [4, 8]


def test_stml_centers_option_reaches_the_similarity_and_keeps_the_resume_keys(tmp_path, monkeypatch):
    from pml_relaxed_bench.tasks import self_taught

    built = []

    class Recording(self_taught.ContextualSimilarity):
        def __init__(self, **kwargs):
            built.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(self_taught, "ContextualSimilarity", Recording)
    run_task(
        TaskConfig(task="self-taught", methods=["stml"], ks=[3], stml_centers=[0, 1], output_dir=str(tmp_path), **TINY)
    )
    base = {"k": 3, "ema_momentum": 0.99, "sigma": 1.0}
    runs = read_runs(tmp_path)
    assert [r["options"] for r in runs] == [base, {**base, "center": 1}]
    assert [b["center"] for b in built] == [False, True]
    assert runs[0]["metrics"] != runs[1]["metrics"]
    assert get_task_parser().parse_args(["--task", "self-taught"]).stml_centers == [0]
    with pytest.raises(SystemExit):
        get_task_parser().parse_args(["--task", "self-taught", "--stml-centers", "2"])


def test_neighbour_batches_search_the_model_embedding_of_the_plain_images():
    from pml_relaxed.samplers import nearest_neighbour_table
    from pml_relaxed_bench.tasks.self_taught import Columns, neighbour_batches, two_head_network

    images = torch.randn(40, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg = TaskConfig(task="self-taught", batch_size=8)
    model = two_head_network("mlp256", 4)
    model.train()
    sampler = neighbour_batches(Columns(model, 4), images, cfg, neighbours=4)
    assert model.training and len(sampler) == 40 // 8  # the mode is restored
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert torch.equal(Columns(model, 4)(images), outputs[:, 4:]) and torch.equal(
        Columns(model, 0, 4)(images), outputs[:, :4]
    )
    torch.testing.assert_close(sampler.table, nearest_neighbour_table(outputs[:, 4:], 4))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        moved = model(images)[:, 4:]
    assert not torch.equal(nearest_neighbour_table(moved, 4), sampler.table)
    list(sampler)  # the first pass: the construction's table
    list(sampler)  # a later pass: rebuilt from the model as it is now
    torch.testing.assert_close(sampler.table, nearest_neighbour_table(moved, 4))


def test_quick_runs_each_task_as_a_smoke_run(tmp_path, capsys):
    argv = ["bench", "--task", "ssl", "--quick", "--sigmas", "0.5", "2", "--output-dir", str(tmp_path / "ssl")]
    assert cli.main(argv) == 0
    runs = read_runs(tmp_path / "ssl")
    assert runs and {r["seed"] for r in runs} == {0} and {r["epochs"] for r in runs} == {2}
    assert all(r["config"]["quick"] and r["config"]["sigmas"] == [0.5] for r in runs)  # the grid's first value
    assert "# ssl" in capsys.readouterr().out
    cfg = TaskConfig(task="self-taught", quick=True, ks=[4, 8], epochs=30, seeds=3)
    from pml_relaxed_bench.tasks.common import quick_config

    quick = quick_config(cfg, "results/task_self-taught")
    assert (quick.ks, quick.epochs, quick.seeds, quick.output_dir) == ([4], 2, 1, "results/task_self-taught_quick")
