"""The PCA peer of pml_relaxed.bench.text_peers against a float64 SVD reference."""

import argparse

import numpy as np
import pytest
import torch

from pml_relaxed.bench.text_peers import pca_peers, peer_setting


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

    from pml_relaxed.bench.text_peers import distilled_model2vec, model2vec_peers

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
