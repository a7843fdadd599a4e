"""``--teacher``: the bench trains and scores from a teacher the user brings, for texts and images."""

import json
import sys
import types

import numpy as np
import pytest
import torch

from tests.helpers.banking77_fixture import make_banking77
from tests.helpers.sentence_transformer_fixture import WORDS, make_sentence_transformer

COMMON = ["--seeds", "1", "--epochs", "1", "--no-progress"]


def _main(argv):
    from pml_relaxed_bench import BenchConfig, main

    main(BenchConfig.from_args(argv), argv)


def _runs(out):
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


def test_banking77_students_and_peers_follow_a_sentence_transformers_teacher_named_on_the_command_line(
    tmp_path, monkeypatch
):
    pytest.importorskip("sentence_transformers")
    model2vec = pytest.importorskip("model2vec")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pml_relaxed.models import SentenceTransformerTeacher
    from pml_relaxed_bench import BenchConfig, banking77_data

    folder = make_sentence_transformer(tmp_path / "tiny-bert-24d", dim=24)
    distilled = []

    def distill(model_name, pca_dims, **kwargs):  # model2vec's distill extra is not installed here: record the call
        distilled.append(model_name)
        tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}, "[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        vectors = np.random.default_rng(0).normal(size=(len(WORDS) + 1, pca_dims)).astype(np.float32)
        return model2vec.StaticModel(vectors=vectors, tokenizer=tokenizer)

    monkeypatch.setitem(sys.modules, "model2vec.distill", types.SimpleNamespace(distill=distill))
    root, out = make_banking77(tmp_path), tmp_path / "out"
    argv = ["--dataset", "banking77", "--data-root", str(root), "--output-dir", str(out), "--teacher", str(folder)]
    argv += ["--settings", "dim16", "--methods", "relaxed_contrastive", "--batch-size", "8", "--m", "2", *COMMON]
    _main([*argv, "--peers", "model2vec", "pca", "--model2vec-dims", "8", "--pca-dims", "4"])

    expected_sha = SentenceTransformerTeacher(folder).content_fingerprint()["sha256"]
    runs = _runs(out)
    assert {r["kind"] for r in runs} == {"teacher", "transfer", "peer"}
    assert all(
        (r["teacher_arch"], r["teacher_dim"], r["teacher_sha256"]) == ("tiny-bert-24d", 24, expected_sha) for r in runs
    )
    assert [r["method"] for r in runs if r["kind"] == "teacher"] == ["teacher:tiny-bert-24d"]
    assert sorted((r["method"], r["student_dim"]) for r in runs if r["kind"] == "peer") == [
        ("peer:model2vec", 8),
        ("peer:pca", 4),
    ]
    assert distilled == [str(folder.resolve())], "the model2vec peer distils the chosen teacher, not MiniLM"
    metadata = json.loads((out / "results.json").read_text())["metadata"]
    assert metadata["teacher"] == {"option": str(folder), "arch": "tiny-bert-24d", "dim": 24, "sha256": expected_sha}
    report = (out / "results.md").read_text()
    assert "teacher:tiny-bert-24d" in report and "MiniLM" not in report

    # the teacher table is that model's embeddings, cached in the TeacherCache format
    config = BenchConfig.from_args([*argv[:8], "--no-progress"])
    data = banking77_data(config)
    from sentence_transformers import SentenceTransformer

    direct = SentenceTransformer(str(folder), device="cpu").encode(
        data.texts[0] + data.texts[1], convert_to_tensor=True, normalize_embeddings=True
    )
    torch.testing.assert_close(data.teacher.embeddings, direct, atol=1e-5, rtol=1e-4)
    (cache,) = (out / "teacher_cache").iterdir()
    assert (cache / "manifest.json").is_file()
    # a second teacher's distillations never mix with the first's: each lives in its teacher's folder
    assert (out / "model2vec" / f"tiny-bert-24d-{expected_sha[:12]}" / "model2vec_8" / "config.json").is_file()


def _digits_teacher(tmp_path, dim=64):
    from safetensors.torch import save_file

    from pml_relaxed.models.mlp import MLP

    torch.manual_seed(3)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [256], dim, batch_norm=True))
    path = tmp_path / "my_teacher.safetensors"
    save_file(teacher.state_dict(), str(path))
    return teacher.eval(), path


def test_an_image_teacher_from_a_safetensors_state_dict_is_used_and_never_trained(tmp_path):
    from pml_relaxed.models.teacher_cache import teacher_fingerprint
    from pml_relaxed_bench import BenchConfig
    from pml_relaxed_bench.registry import DATASETS
    from pml_relaxed_bench.runner import evaluate

    teacher, path = _digits_teacher(tmp_path)
    out = tmp_path / "out"
    argv = ["--dataset", "digits", "--teacher", str(path), "--output-dir", str(out), *COMMON]
    _main([*argv, "--settings", "dim_reduction", "--methods", "relaxed_contrastive", "--no-throughput"])
    runs = _runs(out)
    (record,) = [r for r in runs if r["kind"] == "teacher"]
    assert record["method"] == "teacher:mlp256:my_teacher" and record["train_seconds"] == 0.0
    assert record["teacher_sha256"] == teacher_fingerprint(teacher)["sha256"]
    assert not list(out.glob("teacher_*.pt")), "no teacher trained"
    config = BenchConfig.from_args(argv)
    assert record["metrics"] == pytest.approx(evaluate(teacher, DATASETS["digits"](config), config), abs=1e-6)


def test_an_image_teacher_of_another_architecture_is_refused_naming_what_differs(tmp_path):
    _, path = _digits_teacher(tmp_path, dim=32)
    argv = ["--dataset", "digits", "--teacher", str(path), "--output-dir", str(tmp_path / "out"), *COMMON]
    with pytest.raises(ValueError, match=r"expected a state_dict of the bench's teacher .* other shapes \["):
        _main(argv)


@pytest.mark.parametrize(
    "argv, error, match",
    [
        (["--dataset", "cub", "--teacher", "torchvision:resnet18"], ImportError, r"pml-relaxed\[vision\]"),
        (["--dataset", "sop", "--teacher", "timm:vit_small_patch16_224"], ImportError, r"needs the timm package"),
        (["--dataset", "digits", "--teacher", "torchvision:resnet18"], ValueError, "has grey images"),
        (["--dataset", "omniglot", "--teacher", "teacher.pt"], ValueError, r"must be a \.safetensors file"),
        (["--dataset", "digits", "--teacher", "/nonexistent/t.safetensors"], FileNotFoundError, "existing"),
        (
            ["--dataset", "digits", "--teacher", "t.safetensors", "--teacher-checkpoint", "t.pt"],
            ValueError,
            "--teacher and --teacher-checkpoint both name the teacher",
        ),
    ],
)
def test_teacher_option_errors_come_before_anything_loads(tmp_path, monkeypatch, argv, error, match):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # the vision extra is missing (it is, here)
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(error, match=match):
        _main([*argv, "--output-dir", str(tmp_path / "out"), *COMMON])
    assert not (tmp_path / "out").exists()
