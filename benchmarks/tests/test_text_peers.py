"""The PCA peer of pml_relaxed_bench.text_peers against a float64 SVD reference."""

import argparse
import json

import numpy as np
import pytest
import torch

from pml_relaxed_bench.text_peers import pca_peers, peer_setting


def test_pca_peer_is_fitted_on_training_rows_only_and_encodes_like_its_table():
    rng = np.random.default_rng(0)
    embeddings = torch.from_numpy(rng.normal(size=(40, 6))).float()
    num_train = 30
    lookup = {f"text {i}": embeddings[i] for i in range(40)}
    (peer,) = pca_peers([3], embeddings, num_train, lambda texts: torch.stack([lookup[t] for t in texts]))
    assert peer.method == "peer:pca" and peer.dim == 3 and peer.embeddings.shape == (40, 3)

    train = embeddings[:num_train].double().numpy()
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    reference = (embeddings.double().numpy() - mean) @ vt[:3].T
    signs = np.sign((reference * peer.embeddings.double().numpy()).sum(axis=0))  # a component's sign is free
    np.testing.assert_allclose(peer.embeddings.double().numpy(), reference * signs, rtol=1e-4, atol=1e-5)

    # The test rows never enter the fit: changing them changes only their own projections.
    moved = embeddings.clone()
    moved[num_train:] += 5.0
    (other,) = pca_peers([3], moved, num_train, lambda texts: None)
    torch.testing.assert_close(other.embeddings[:num_train], peer.embeddings[:num_train])

    torch.testing.assert_close(peer.encode(["text 3", "text 35"]), peer.embeddings[[3, 35]])


def test_peer_setting_is_the_setting_of_the_same_dimension():
    data = argparse.Namespace(settings={"dim16": ("ngram", 16), "dim32": ("ngram", 32), "dim64": ("ngram", 64)})
    args = argparse.Namespace(settings=["dim16", "dim32"])
    assert peer_setting(data, args, 32) == "dim32"
    assert peer_setting(data, args, 64) == "peers"  # not among the settings run
    assert peer_setting(data, args, 256) == "peers"


def test_distilled_model2vec_reuses_the_cached_folder_and_casts_to_float16(tmp_path):
    model2vec = pytest.importorskip("model2vec")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from pml_relaxed_bench.text_peers import distilled_model2vec, model2vec_peers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "card": 1, "lost": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    model2vec.StaticModel(vectors=vectors, tokenizer=tokenizer).save_pretrained(str(tmp_path / "model2vec_8"))
    # A cached folder is loaded, never distilled again (there is no teacher at this path).
    model = distilled_model2vec(tmp_path / "no-teacher", 8, tmp_path)
    np.testing.assert_array_equal(model.embedding, vectors)
    half = distilled_model2vec(tmp_path / "no-teacher", 8, tmp_path, dtype="float16")
    assert half.embedding.dtype == np.float16
    np.testing.assert_array_equal(half.embedding, vectors.astype(np.float16))
    (peer,) = model2vec_peers([8], ["lost card", "card"], tmp_path)
    assert peer.method == "peer:model2vec" and peer.dim == 8 and peer.embeddings.shape == (2, 8)
    torch.testing.assert_close(torch.from_numpy(peer.encode(["card"])), peer.embeddings[1:])


def _bench(tmp_path, root, *extra):
    from pml_relaxed_bench.cli import main
    from pml_relaxed_bench.config import BenchConfig

    argv = ["--dataset", "banking77", "--data-root", str(root), "--settings", "dim16", "--methods", "proxy_anchor"]
    argv += ["--seeds", "1", "--epochs", "1", "--batch-size", "8", "--m", "2", "--no-progress"]
    argv += ["--output-dir", str(tmp_path / "out"), *extra]
    main(BenchConfig.from_args(argv), argv)
    return [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]


def test_bench_peers_pca_are_scored_and_timed_in_the_students_run_and_resume(tmp_path):
    from pml_relaxed_bench.text_data import banking77_data
    from tests.helpers.banking77_fixture import make_banking77

    root = make_banking77(tmp_path)
    runs = _bench(tmp_path, root, "--peers", "pca", "--pca-dims", "4", "16")
    peers = [r for r in runs if r["kind"] == "peer"]
    assert [(r["method"], r["student_dim"], r["setting"]) for r in peers] == [
        ("peer:pca", 4, "peers"),  # no bench setting has 4 dimensions
        ("peer:pca", 16, "dim16"),  # in the table of the 16-d students
    ]
    assert all(r["throughput"] > 0 and r["seed"] == 0 for r in peers)
    assert {r["kind"] for r in runs} == {"teacher", "scratch", "peer"}, "students and peers in one runs.jsonl"

    # The recorded scores are those of the PCA of the teacher's table, fitted on the training texts.
    from pml_relaxed.models import CachedTeacher
    from pml_relaxed_bench.config import BenchConfig
    from pml_relaxed_bench.runner import evaluate

    config = BenchConfig.from_args(
        ["--dataset", "banking77", "--data-root", str(root), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    )
    data = banking77_data(config)
    (peer,) = pca_peers([16], data.teacher.embeddings, len(data.texts[0]), data.teacher_encoder)
    expected = evaluate(CachedTeacher(peer.embeddings), data, config)
    for metric in ("recall_at_1", "mean_average_precision_at_r"):
        assert peers[1]["metrics"][metric] == pytest.approx(expected[metric], abs=1e-6)

    assert _bench(tmp_path, root, "--peers", "pca", "--pca-dims", "4", "16") == runs, "a rerun adds nothing"


def test_bench_peers_model2vec_uses_the_cached_distillation(tmp_path):
    model2vec = pytest.importorskip("model2vec")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from tests.helpers.banking77_fixture import make_banking77

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "card": 1, "refund": 2, "atm": 3}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    vectors = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    cached = tmp_path / "out" / "model2vec" / "model2vec_8"
    model2vec.StaticModel(vectors=vectors, tokenizer=tokenizer).save_pretrained(str(cached))
    runs = _bench(tmp_path, make_banking77(tmp_path), "--peers", "model2vec", "--model2vec-dims", "8")
    (peer,) = [r for r in runs if r["kind"] == "peer"]
    assert (peer["method"], peer["student_dim"], peer["setting"]) == ("peer:model2vec", 8, "peers")
    assert peer["throughput"] > 0


@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["--dataset", "digits", "--peers", "pca"], ValueError, r"--peers needs a pretrained text teacher"),
        (["--dataset", "banking77", "--pca-dims", "8"], ValueError, r"--pca-dims sets the pca peer's dimensions"),
        (["--dataset", "banking77", "--peers", "pca", "--pca-dims", "0"], ValueError, r"--pca-dims must be >= 1"),
        (
            ["--dataset", "banking77", "--peers", "model2vec", "--model2vec-dims", "-2"],
            ValueError,
            r"--model2vec-dims must be >= 1; got \[-2\]",
        ),
    ],
)
def test_bench_peer_options_are_checked_before_anything_runs(tmp_path, argv, error, message):
    from pml_relaxed_bench.cli import main
    from pml_relaxed_bench.config import BenchConfig

    argv = [*argv, "--data-root", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(error, match=message):
        main(BenchConfig.from_args(argv), argv)
    assert not (tmp_path / "out").exists(), "nothing ran"


def test_bench_pca_dims_are_bounded_by_the_training_texts(tmp_path):
    from tests.helpers.banking77_fixture import make_banking77

    with pytest.raises(ValueError, match=r"--pca-dims must be <= 24 \(the training texts"):
        _bench(tmp_path, make_banking77(tmp_path), "--peers", "pca", "--pca-dims", "25")


def test_bench_peers_model2vec_names_the_extra_when_missing(tmp_path, monkeypatch):
    import sys

    from pml_relaxed_bench.cli import main
    from pml_relaxed_bench.config import BenchConfig
    from pml_relaxed_bench.text_peers import distilled_model2vec

    monkeypatch.setitem(sys.modules, "model2vec.distill", None)  # model2vec without its distill extra
    with pytest.raises(ImportError, match=r'pip install "pml-relaxed\[model2vec\]"'):
        distilled_model2vec(tmp_path / "teacher", 8, tmp_path / "empty-cache")
    monkeypatch.setitem(sys.modules, "model2vec", None)  # no model2vec at all: refused before anything runs
    argv = ["--dataset", "banking77", "--peers", "model2vec", "--output-dir", str(tmp_path / "out")]
    with pytest.raises(ImportError, match=r'pip install "pml-relaxed\[model2vec\]"'):
        main(BenchConfig.from_args(argv), argv)
    assert not (tmp_path / "out").exists()
