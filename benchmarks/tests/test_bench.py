"""Tiny end-to-end runs of ``pml-relaxed bench``: every dataset kind, every method, every output file."""

import json
import math

import pytest

from pml_relaxed import cli
from pml_relaxed.evaluation import DEFAULT_METRICS
from pml_relaxed.similarities import MixedSimilarity
from pml_relaxed_bench.cli import main
from pml_relaxed_bench.config import BenchConfig
from pml_relaxed_bench.data import digits_data
from pml_relaxed_bench.methods import METHODS, MethodContext
from tests.helpers.banking77_fixture import make_banking77
from tests.helpers.paper_fixtures import make_cub

TINY = ["--epochs", "1", "--teacher-epochs", "1", "--no-progress"]


def run(tmp_path, *argv):
    argv = list(argv) + TINY + ["--output-dir", str(tmp_path)]
    return main(BenchConfig.from_args(argv), argv)


def read_runs(tmp_path):
    return [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]


def test_digits_writes_every_output_and_resumes(tmp_path, capsys):
    paths = run(
        tmp_path,
        "--dataset",
        "digits",
        "--methods",
        "relaxed_contrastive",
        "proxy_anchor",
        "--settings",
        "dim_reduction",
        "compression",
        "--seeds",
        "2",
    )
    names = {p.name for p in paths}
    assert {"results.json", "results.csv", "results.md"} <= names
    assert any(n.endswith(".png") for n in names)
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
    runs = read_runs(tmp_path)
    assert sum(r["kind"] == "teacher" for r in runs) == 1
    students = [r for r in runs if r["kind"] != "teacher"]
    assert len(students) == 2 * 2 * 2
    assert {(r["setting"], r["method"], r["seed"]) for r in students} == {
        (s, m, seed)
        for s in ("dim_reduction", "compression")
        for m in ("relaxed_contrastive", "proxy_anchor")
        for seed in (0, 1)
    }
    for r in runs:
        assert set(r["metrics"]) == set(DEFAULT_METRICS)  # the library's, not a copy
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert r["metrics"]["recall_at_1"] <= r["metrics"]["recall_at_8"]
        assert r["throughput"] > 0 and r["eval_split"] == "test"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metadata"]["command"].startswith("pml-relaxed bench --dataset digits")
    assert "cores" in results["metadata"]["machine"]
    # evaluation follows --device (cpu here): each run and the metadata say which FAISS backend scored it
    assert {r["hparams"]["faiss_backend"] for r in runs} == {"cpu"} and results["metadata"]["faiss_backend"] == "cpu"
    assert "R@1" in capsys.readouterr().out
    run(
        tmp_path,
        "--dataset",
        "digits",
        "--methods",
        "relaxed_contrastive",
        "proxy_anchor",
        "--settings",
        "dim_reduction",
        "compression",
        "--seeds",
        "2",
    )
    assert len(read_runs(tmp_path)) == len(runs), "a second run with the same output dir resumes, trains nothing"


def test_every_method_trains_a_student(tmp_path):
    run(tmp_path, "--dataset", "digits", "--methods", *METHODS, "--settings", "dim_reduction", "--seeds", "1")
    students = [r for r in read_runs(tmp_path) if r["kind"] != "teacher"]
    assert {r["method"] for r in students} == set(METHODS)
    kinds = {r["method"]: r["kind"] for r in students}
    assert kinds["relaxed_contrastive"] == "transfer" and kinds["proxy_anchor"] == "scratch"
    assert kinds["relaxed_contrastive+proxy_anchor"] == "combined"
    for r in students:
        assert all(math.isfinite(v) for v in r["metrics"].values()), r["method"]


def test_methods_follow_the_relaxed_options():
    ctx = MethodContext(
        student_dim=8, teacher_dim=16, num_classes=3, sigma=0.5, delta=1.5, normalize_student=True, label_weight=0.25
    )
    for name in ("relaxed_contrastive", "relaxed_ms", "relaxed_contrastive+proxy_anchor", "relaxed_contrastive+labels"):
        loss = METHODS[name].build(ctx)[0]["transfer_loss"]
        assert loss.delta == 1.5 and loss.distance.normalize_embeddings, name
    mixed = METHODS["relaxed_contrastive+labels"].build(ctx)[0]["transfer_loss"].similarity
    assert isinstance(mixed, MixedSimilarity) and mixed.label_weight == 0.25 and mixed.first.sigma == 0.5
    plain = METHODS["relaxed_contrastive"].build(MethodContext(student_dim=8, teacher_dim=16, num_classes=3))[0]
    assert not plain["transfer_loss"].distance.normalize_embeddings, "default: the paper's unnormalised student"
    assert METHODS["darkrank"].build(ctx)[0]["transfer_loss"].normalize_embeddings


def test_rkd_follows_its_angle_weight():
    ctx = MethodContext(student_dim=8, teacher_dim=16, num_classes=3)
    paper = METHODS["rkd"].build(ctx)[0]["transfer_loss"]
    assert (paper.distance_weight, paper.angle_weight) == (1.0, 2.0), "default: Park et al.'s weights"
    ctx.rkd_angle_weight = 0.0
    distance_only = METHODS["rkd"].build(ctx)[0]["transfer_loss"]
    assert (distance_only.distance_weight, distance_only.angle_weight) == (1.0, 0.0)


def test_validation_classes_are_held_out_of_training():
    args = BenchConfig.from_args(["--dataset", "digits", "--val-classes", "2"])
    data = digits_data(args)
    assert data.eval_split == "val"
    assert len(set(data.train.labels.tolist())) == 3 and len(set(data.evaluation.labels.tolist())) == 2
    train_images = {tuple(x.flatten().tolist()) for x in data.train.inputs}
    assert not any(tuple(x.flatten().tolist()) in train_images for x in data.evaluation.inputs)


def test_cub_fixture_with_conv4(tmp_path):
    root = tmp_path / "cub"
    make_cub(root, [1, 2, 3, 4, 101, 102, 103])
    out = tmp_path / "out"
    run(
        out,
        "--dataset",
        "cub",
        "--data-root",
        str(root),
        "--backbone",
        "conv4",
        "--image-size",
        "32",
        "--methods",
        "relaxed_contrastive",
        "--settings",
        "dim_reduction",
        "--seeds",
        "1",
        "--batch-size",
        "8",
        "--m",
        "2",
    )
    runs = read_runs(out)
    assert [r["kind"] for r in runs] == ["teacher", "transfer"]
    assert runs[1]["student_arch"] == "conv4-w64" and runs[1]["student_dim"] == 16


def test_banking77_fixture_with_real_teacher(tmp_path):
    root = make_banking77(tmp_path)
    out = tmp_path / "out"
    run(
        out,
        "--dataset",
        "banking77",
        "--data-root",
        str(root),
        "--methods",
        "relaxed_contrastive",
        "proxy_anchor",
        "--settings",
        "dim16",
        "--seeds",
        "1",
        "--batch-size",
        "8",
        "--m",
        "2",
    )
    runs = read_runs(out)
    teacher = [r for r in runs if r["kind"] == "teacher"]
    assert len(teacher) == 1 and teacher[0]["teacher_dim"] == 384 and teacher[0]["throughput"] > 0
    assert {r["method"] for r in runs if r["kind"] != "teacher"} == {"relaxed_contrastive", "proxy_anchor"}
    assert any((p / "manifest.json").is_file() for p in (out / "teacher_cache").iterdir()), "embeddings are cached"
    assert all(r["teacher_arch"] == "all-MiniLM-L6-v2" and r["teacher_sha256"] for r in runs), "the default teacher"
    assert all(
        r["hparams"]["student_options"] == {"hidden_dim": 64, "mlp_hidden_dims": [256], "init_std": 0.1} for r in runs
    )


def test_banking77_text_student_options_build_and_are_recorded(tmp_path):
    import torch

    from pml_relaxed_bench.text_data import banking77_data

    root = make_banking77(tmp_path)
    options = ["--text-hidden-dim", "24", "--text-mlp", "--text-init-std", "0.5"]  # --text-mlp alone: linear head
    args = BenchConfig.from_args(
        [
            "--dataset",
            "banking77",
            "--data-root",
            str(root),
            "--output-dir",
            str(tmp_path / "out"),
            "--no-progress",
            *options,
        ]
    )
    student = banking77_data(args).make_model("ngram", 16).model
    assert student.bag.embedding_dim == 24 and student.embedding_dim == 16
    assert [type(m) for m in student.head.modules() if isinstance(m, torch.nn.Linear)] == [torch.nn.Linear]
    assert 0.45 < float(student.bag.weight[1:].std()) < 0.55
    run(
        tmp_path / "out",
        "--dataset",
        "banking77",
        "--data-root",
        str(root),
        "--methods",
        "relaxed_contrastive",
        "--settings",
        "dim16",
        "--seeds",
        "1",
        "--batch-size",
        "8",
        "--m",
        "2",
        *options,
    )
    students = [r for r in read_runs(tmp_path / "out") if r["kind"] != "teacher"]
    assert [r["hparams"]["student_options"] for r in students] == [
        {"hidden_dim": 24, "mlp_hidden_dims": [], "init_std": 0.5}
    ]
    assert [r["hparams"]["text_ngram_dropout"] for r in students] == [0.0]


def test_banking77_ngram_dropout_makes_two_different_views(tmp_path):
    import torch

    from pml_relaxed.models import NgramDropout
    from pml_relaxed_bench.text_data import banking77_data

    root = make_banking77(tmp_path)
    argv = ["--dataset", "banking77", "--data-root", str(root), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert banking77_data(BenchConfig.from_args(argv)).augment is None, "no dropout: identical copies"
    data = banking77_data(BenchConfig.from_args([*argv, "--text-ngram-dropout", "0.3"]))
    assert isinstance(data.augment, NgramDropout) and data.augment.p == 0.3 and data.augment.skip_columns == 1
    dataset, collate = data.training_set(2)
    rows, labels = collate([dataset[i] for i in range(4)])
    assert torch.equal(rows[0::2, 0], rows[1::2, 0]), "both views index the same cached teacher embedding"
    assert not torch.equal(rows[0::2, 1:], rows[1::2, 1:]), "the two views of a text differ"
    run(
        tmp_path / "out",
        *argv[:4],
        "--methods",
        "relaxed_contrastive",
        "--settings",
        "dim16",
        "--seeds",
        "1",
        "--batch-size",
        "8",
        "--m",
        "2",
        "--text-ngram-dropout",
        "0.3",
    )
    students = [r for r in read_runs(tmp_path / "out") if r["kind"] != "teacher"]
    assert [r["hparams"]["text_ngram_dropout"] for r in students] == [0.3]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--dataset", "mnist"], r"--dataset must be one of .* got 'mnist'"),
        (["--methods", "nope"], r"--methods has unknown name\(s\) \['nope'\]"),
        (["--settings", "tiny"], r"--settings has unknown name\(s\) \['tiny'\]"),
        (["--seeds", "0"], r"--seeds must be >= 1; got 0"),
        (["--val-classes", "5"], r"--val-classes must be in \[0, 4\] for this dataset; got 5"),
        (
            ["--methods", "relaxed_contrastive+labels", "--label-weight", "1.5"],
            r"label_weight must be in \[0, 1\]; got 1.5",
        ),
        (["--methods", "rkd", "--rkd-angle-weight", "-1"], r"angle_weight must be >= 0; got -1.0"),
        (
            ["--val-alphabets", "1"],
            r"--val-alphabets needs classes grouped in alphabets \(--dataset omniglot\); got "
            r"--dataset digits",
        ),
        (["--val-alphabets", "1", "--val-classes", "2"], r"--val-alphabets and --val-classes exclude each other"),
        (
            ["--text-hidden-dim", "32", "--text-mlp", "128"],
            r"--text-hidden-dim, --text-mlp shape the text student "
            r"\(--dataset banking77\); got --dataset digits",
        ),
        (
            ["--dataset", "banking77", "--data-root", "/nonexistent", "--text-hidden-dim", "0"],
            r"--text-hidden-dim must be >= 1; got 0",
        ),
        (
            ["--dataset", "banking77", "--data-root", "/nonexistent", "--text-mlp", "64", "0"],
            r"--text-mlp widths must be >= 1 \(none for a linear head\); got \[64, 0\]",
        ),
        (
            ["--dataset", "banking77", "--data-root", "/nonexistent", "--text-init-std", "0"],
            r"--text-init-std must be > 0; got 0.0",
        ),
        (
            ["--dataset", "banking77", "--data-root", "/nonexistent", "--text-ngram-dropout", "1"],
            r"--text-ngram-dropout must be in \[0, 1\); got 1.0",
        ),
        (
            ["--text-ngram-dropout", "0.2"],
            r"--text-ngram-dropout shape the text student \(--dataset banking77\); got "
            r"--dataset digits",
        ),
    ],
)
def test_bad_arguments(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, *argv)


def test_missing_data_root_says_where_the_bench_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("PML_RELAXED_DATA", str(tmp_path / "data"))
    with pytest.raises(
        FileNotFoundError,
        match=r"CUB200 root .*data/cub200' \(from \$PML_RELAXED_DATA/cub200\) "
        r"does not exist",
    ):
        run(tmp_path, "--dataset", "cub", "--backbone", "conv4")


def test_command_line_entry_point(capsys):
    assert cli.main([]) == 2
    assert cli.main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "--val-classes" in capsys.readouterr().out


def test_teacher_checkpoint_is_loaded_not_trained(tmp_path):
    first = tmp_path / "first"
    run(first, "--dataset", "digits", "--methods", "pkt", "--settings", "compression", "--seeds", "1")
    checkpoint = next(first.glob("teacher_*.pt"))
    second = tmp_path / "second"
    run(
        second,
        "--dataset",
        "digits",
        "--methods",
        "pkt",
        "--settings",
        "compression",
        "--seeds",
        "1",
        "--teacher-checkpoint",
        str(checkpoint),
    )
    assert [r["kind"] for r in read_runs(second)] == ["transfer"], "a loaded teacher is not retrained"
    with pytest.raises(FileNotFoundError, match="--teacher-checkpoint must be a state_dict file"):
        run(tmp_path / "third", "--dataset", "digits", "--teacher-checkpoint", str(tmp_path / "missing.pt"))


def test_teacher_depends_on_its_seed_only(tmp_path):
    import torch

    for name in ("first", "second"):
        torch.rand(7)  # whatever ran before must not change the teacher's initial weights
        run(
            tmp_path / name,
            "--dataset",
            "digits",
            "--methods",
            "pkt",
            "--settings",
            "compression",
            "--seeds",
            "1",
            "--no-report",
        )
    first, second = (
        torch.load(next((tmp_path / n).glob("teacher_*.pt")), weights_only=True) for n in ("first", "second")
    )
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)
    metrics = [[r["metrics"] for r in read_runs(tmp_path / n)] for n in ("first", "second")]
    assert metrics[0] == metrics[1], "same teacher, same student seed: same results"


def test_teacher_budget_is_its_own_and_names_its_checkpoint(tmp_path):
    """--lr is the students'; the teacher trains at --teacher-lr and its cache is keyed by its budget."""
    import torch

    common = ["--dataset", "digits", "--methods", "pkt", "--settings", "compression", "--seeds", "1", "--no-report"]
    run(tmp_path / "a", *common, "--lr", "3e-3")
    run(tmp_path / "b", *common, "--lr", "1e-2")
    checkpoints = [list((tmp_path / n).glob("teacher_*.pt")) for n in ("a", "b")]
    assert [p.name for p in checkpoints[0]] == ["teacher_digits_test_ProxyAnchorLoss_e1_lr0.001_0.pt"]
    first, second = (torch.load(c[0], weights_only=True) for c in checkpoints)
    for key in first:  # the students' --lr does not reach the teacher
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=key)
    runs = read_runs(tmp_path / "a")
    assert [(r["kind"], r["hparams"]["epochs"], r["hparams"]["lr"]) for r in runs] == [
        ("teacher", 1, 1e-3),
        ("transfer", 1, 3e-3),
    ]
    # a teacher of another budget in the same folder is trained, not loaded from the first one's file
    run(tmp_path / "a", *common, "--teacher-lr", "1e-2", "--seeds", "2")
    assert sorted(p.name for p in (tmp_path / "a").glob("teacher_*.pt")) == [
        "teacher_digits_test_ProxyAnchorLoss_e1_lr0.001_0.pt",
        "teacher_digits_test_ProxyAnchorLoss_e1_lr0.01_0.pt",
    ]


def test_omniglot_validation_alphabets_are_held_out_whole():
    from pml_relaxed.datasets import DEFAULT_OMNIGLOT_ROOT, Omniglot
    from pml_relaxed_bench.data import _split_alphabets, omniglot_data

    names = Omniglot(DEFAULT_OMNIGLOT_ROOT, split="train").class_names
    train_classes, val_classes, held_out = _split_alphabets(names, 2, seed=0)
    assert len(held_out) == 2 and sorted(train_classes + val_classes) == list(range(len(names)))
    train_alphabets = {names[c].split("/")[0] for c in train_classes}
    assert {names[c].split("/")[0] for c in val_classes} == set(held_out) and not train_alphabets & set(held_out)
    assert _split_alphabets(names, 2, seed=0) == (train_classes, val_classes, held_out), "seeded"
    assert _split_alphabets(names, 2, seed=1)[2] != held_out or _split_alphabets(names, 2, seed=2)[2] != held_out

    data = omniglot_data(BenchConfig.from_args(["--dataset", "omniglot", "--val-alphabets", "2"]))
    assert data.eval_split == "val-alphabets"
    assert len(data.train) == 20 * len(train_classes) and len(data.evaluation) == 20 * len(val_classes)
    assert data.num_train_classes == len(train_classes)
    with pytest.raises(
        ValueError,
        match=r"--val-alphabets must be in \[1, 4\] for this dataset \(5 training "
        r"alphabets\); got 5",
    ):
        _split_alphabets(names, 5, seed=0)


@pytest.mark.parametrize("method", ["proxy_anchor", "relaxed_contrastive+proxy_anchor"])
def test_a_run_depends_on_its_seed_not_on_what_ran_before(tmp_path, method):
    import torch

    from pml_relaxed_bench.cli import resolve
    from pml_relaxed_bench.runner import get_teacher, run_student

    config = BenchConfig.from_args(["--dataset", "digits", *TINY, "--output-dir", str(tmp_path)])
    data = digits_data(config)
    config = resolve(config, data.defaults, list(data.settings))
    teacher = get_teacher(data, config, [])
    first = run_student(data, config, "compression", method, 0, teacher)
    torch.rand(1000)  # another run's draws (e.g. a proxy loss built before this one) move the global generator
    second = run_student(data, config, "compression", method, 0, teacher)
    assert first["metrics"] == second["metrics"]
