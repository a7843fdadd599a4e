"""The PCA peer of pml_relaxed.bench.text_peers against a float64 SVD reference."""
import argparse

import numpy as np
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
