"""StaticEmbedder against a float64 mean of token vectors, and its Model2Vec round trip."""

import numpy as np
import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

from pml_relaxed.models.static_embedder import StaticEmbedder  # noqa: E402

VOCAB = {"[UNK]": 0, "my": 1, "card": 2, "lost": 3, "is": 4, "where": 5, "?": 6}
TEXTS = ["where is my card?", "lost card", "", "zzz unknown words", "card card card lost"]


def word_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def reference(vectors: np.ndarray, text: str) -> np.ndarray:
    words = text.replace("?", " ?").split()
    ids = [VOCAB[w] for w in words if w in VOCAB]
    return vectors[ids].mean(axis=0) if ids else np.zeros(vectors.shape[1])


def test_texts_embed_as_the_mean_of_their_known_tokens():
    vectors = np.random.default_rng(0).normal(size=(len(VOCAB), 5))
    model = StaticEmbedder(word_tokenizer(), torch.from_numpy(vectors).float(), unk_token_id=0)
    expected = torch.from_numpy(np.stack([reference(vectors, t) for t in TEXTS])).float()
    torch.testing.assert_close(model(TEXTS), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(model.encode_batch(TEXTS)), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.encode(TEXTS, batch_size=2), expected, rtol=1e-5, atol=1e-6)
    assert model.encode_batch(TEXTS)[2].tolist() == [0] * model.encode_batch(TEXTS).shape[1]
    # Gradients reach the vectors of the tokens used, and only those (row 0 is padding).
    model(TEXTS[:2]).sum().backward()
    used = {VOCAB[w] + 1 for w in ("where", "is", "my", "card", "?", "lost")}
    touched = set(torch.nonzero(model.bag.weight.grad.abs().sum(dim=1)).flatten().tolist())
    assert touched == used


def test_max_length_truncates_tokens():
    vectors = torch.randn(len(VOCAB), 3)
    model = StaticEmbedder(word_tokenizer(), vectors, unk_token_id=0, max_length=2)
    torch.testing.assert_close(model(["lost card where is"]), vectors[[3, 2]].mean(0, keepdim=True))


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="tokenizer must be a tokenizers.Tokenizer; got str"):
        StaticEmbedder("bert", torch.randn(3, 2))
    with pytest.raises(TypeError, match="embeddings must be a 2D float tensor"):
        StaticEmbedder(word_tokenizer(), torch.ones(7, dtype=torch.long))
    with pytest.raises(ValueError, match="a row for each of the tokenizer's 7 ids; got 3 rows"):
        StaticEmbedder(word_tokenizer(), torch.randn(3, 2))
    model = StaticEmbedder(word_tokenizer(), torch.randn(7, 2))
    with pytest.raises(ValueError, match=r"inputs ids must be in \[0, 8\)"):
        model(torch.tensor([[9]]))
    with pytest.raises(TypeError, match=r"inputs must be a list of str or a \(batch, length\) id tensor; got str"):
        model("card")
    with pytest.raises(TypeError, match="texts must be a list of str; got str"):
        model.encode("card")


def test_model2vec_round_trip():
    model2vec = pytest.importorskip("model2vec")
    vectors = np.random.default_rng(1).normal(size=(len(VOCAB), 4)).astype(np.float32)
    static = model2vec.StaticModel(vectors=vectors, tokenizer=word_tokenizer(), normalize=False)
    model = StaticEmbedder.from_model2vec(static)
    texts = [t for t in TEXTS if t]  # model2vec's mean of no tokens is its own zero row
    torch.testing.assert_close(model(texts), torch.from_numpy(static.encode(texts)), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        model.bag.weight[1:] += 1.0  # "trained"
    back = model.to_model2vec(normalize=False)
    torch.testing.assert_close(torch.from_numpy(back.encode(texts)), model(texts), rtol=1e-5, atol=1e-6)


def test_sentence_transformer_export_loads_without_remote_code_and_encodes_the_same(tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    vectors = np.random.default_rng(3).normal(size=(len(VOCAB), 6))
    model = StaticEmbedder(word_tokenizer(), torch.from_numpy(vectors).float(), unk_token_id=0, max_length=3)
    model.to_sentence_transformer().save(str(tmp_path / "static"))
    served = sentence_transformers.SentenceTransformer(str(tmp_path / "static"), device="cpu")  # no flag
    known = ["where is my card?", "lost card", "card card card lost"]  # the last one is truncated to 3 tokens
    got = torch.from_numpy(served.encode(known)).double()
    expected = torch.from_numpy(
        np.stack([reference(vectors, " ".join(t.replace("?", " ?").split()[:3])) for t in known])
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.float(), model.encode(known), rtol=1e-5, atol=1e-6)
    # The documented difference: sentence-transformers averages the unknown token in, this model drops it.
    unknown = torch.from_numpy(served.encode(["zzz lost"])).double()[0]
    torch.testing.assert_close(unknown, torch.from_numpy(vectors[[0, 3]].mean(axis=0)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        model.encode(["zzz lost"])[0].double(), torch.from_numpy(vectors[3]), rtol=1e-5, atol=1e-6
    )


def test_save_pretrained_round_trips_tokenizer_options_and_vectors(tmp_path):
    vectors = np.random.default_rng(4).normal(size=(len(VOCAB), 6))
    model = StaticEmbedder(word_tokenizer(), torch.from_numpy(vectors).float(), unk_token_id=0, max_length=3)
    with torch.no_grad():
        model.bag.weight[1:] += 0.5  # "trained"
    model.save_pretrained(tmp_path / "static")
    assert sorted(p.name for p in (tmp_path / "static").iterdir()) == [
        "model.safetensors",
        "pml_relaxed_config.json",
        "tokenizer.json",
    ]
    loaded = StaticEmbedder.from_pretrained(tmp_path / "static")
    assert not loaded.training and (loaded.unk_token_id, loaded.max_length) == (0, 3)
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    assert torch.equal(loaded.bag.weight, model.bag.weight)
    # the same ids (unknown token dropped, "card card card lost" truncated to 3 tokens) and vectors
    assert torch.equal(loaded.encode_batch(TEXTS), model.encode_batch(TEXTS))
    assert torch.equal(loaded.encode(TEXTS), model.encode(TEXTS))
    unlimited = StaticEmbedder(word_tokenizer(), torch.from_numpy(vectors).float(), max_length=None)
    unlimited.save_pretrained(str(tmp_path / "unlimited"))
    again = StaticEmbedder.from_pretrained(str(tmp_path / "unlimited"))
    assert (again.unk_token_id, again.max_length) == (None, None)
    assert torch.equal(again.encode(TEXTS), unlimited.encode(TEXTS))


def test_from_pretrained_errors_name_the_missing_or_wrong_file(tmp_path):
    import json

    with pytest.raises(FileNotFoundError, match="pml_relaxed_config.json' does not exist"):
        StaticEmbedder.from_pretrained(tmp_path / "missing")
    with pytest.raises(TypeError, match="path must be a str or a path; got int"):
        StaticEmbedder.from_pretrained(3)
    model = StaticEmbedder(word_tokenizer(), torch.randn(len(VOCAB), 4), unk_token_id=0)
    model.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json' does not exist"):
        StaticEmbedder.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors' does not exist"):
        StaticEmbedder.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "pml_relaxed_config.json").read_text())
    (tmp_path / "pml_relaxed_config.json").write_text(json.dumps({**config, "class": "HashedNgramEmbedder"}))
    with pytest.raises(ValueError, match="must describe a StaticEmbedder"):
        StaticEmbedder.from_pretrained(tmp_path)
    (tmp_path / "pml_relaxed_config.json").write_text(json.dumps({"class": "StaticEmbedder", "config": {"dim": 3}}))
    with pytest.raises(ValueError, match=r"unknown StaticEmbedder arguments \['dim'\]"):
        StaticEmbedder.from_pretrained(tmp_path)
