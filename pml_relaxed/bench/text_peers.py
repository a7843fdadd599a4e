"""What a user would pick instead of training a text student: Model2Vec and PCA of the teacher (issue 20).

Each peer is a table of embeddings for every text of the bench's teacher table (training texts
first, then evaluation texts, as :func:`~pml_relaxed.bench.text_data.banking77_data` orders them),
scored like the teacher through :class:`~pml_relaxed.models.CachedTeacher`, plus a function that
times it on raw strings the way the students are timed (the same texts, batches of 256, one thread):

- ``peer:model2vec``: ``model2vec.distill`` of the same teacher (the packaged all-MiniLM-L6-v2, no
  network, no training data: its vocabulary's token embeddings, PCA to ``dim``, SIF weighting);
  it embeds a text as the mean of its tokens' vectors. ``pip install "model2vec[distill]"``.
- ``peer:pca``: the teacher's own embeddings, reduced to ``dim`` by a PCA fitted on the
  training-intent texts only (the test intents never enter the fit): the teacher's quality at
  fewer dimensions, at the teacher's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np
import torch

_MODEL2VEC_HINT = 'Model2Vec peers need model2vec with distillation: pip install "model2vec[distill]"'


@dataclass
class Peer:
    """One peer: ``method`` and ``dim`` name its rows; ``embeddings`` covers the bench's whole text table;
    ``encode`` embeds raw strings (for timing)."""

    method: str
    dim: int
    embeddings: torch.Tensor
    encode: Callable[[List[str]], object]


def _import_model2vec():
    try:
        from model2vec import StaticModel
        from model2vec.distill import distill
    except ImportError as err:
        raise ImportError(_MODEL2VEC_HINT) from err
    return StaticModel, distill


def distilled_model2vec(teacher_path: Path, dim: int, cache_dir: Path, dtype: str = "float32"):
    """``model2vec.distill(teacher_path, pca_dims=dim)`` with float32 vectors, kept in ``cache_dir`` and reused.

    ``dtype="float16"`` (model2vec's own default) returns the same model with its vectors cast to float16,
    as ``distill(..., quantize_to="float16")`` does; its NumPy mean is slower than in float32.
    """
    static_model_cls, distill = _import_model2vec()
    folder = Path(cache_dir) / f"model2vec_{dim}"
    if (folder / "config.json").is_file():
        model = static_model_cls.from_pretrained(str(folder))
    else:
        model = distill(model_name=str(teacher_path), pca_dims=dim, device="cpu", quantize_to="float32")
        folder.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(folder))
    if dtype != "float32":
        model = static_model_cls(
            vectors=model.embedding.astype(dtype),
            tokenizer=model.tokenizer,
            config=model.config,
            normalize=model.normalize,
            base_model_name=model.base_model_name,
            weights=model.weights,
            token_mapping=model.token_mapping,
        )
    return model


def model2vec_peers(dims: Sequence[int], all_texts: List[str], cache_dir: Path, dtype: str = "float32") -> List[Peer]:
    """Model2Vec distillations of the packaged all-MiniLM-L6-v2 at each of ``dims`` (cached in ``cache_dir``),
    with ``dtype`` vectors (see :func:`distilled_model2vec`).

    Raises:
        ImportError: model2vec (with its distill extra) or the packaged teacher is missing.
    """
    from ..models.sentence_transformer_teacher import default_model_path

    teacher_path = default_model_path()
    peers = []
    for dim in dims:
        model = distilled_model2vec(teacher_path, dim, cache_dir, dtype)

        def encode(texts, model=model):
            return model.encode(list(texts), batch_size=256, use_multiprocessing=False)

        table = torch.from_numpy(np.asarray(encode(all_texts), dtype=np.float32))
        peers.append(Peer("peer:model2vec", int(table.shape[1]), table, encode))
    return peers


def pca_peers(
    dims: Sequence[int],
    teacher_embeddings: torch.Tensor,
    num_train: int,
    teacher_encode: Callable[[List[str]], torch.Tensor],
) -> List[Peer]:
    """PCA of the teacher's embeddings fitted on the first ``num_train`` rows (the training texts).

    Args:
        dims: output dimensions.
        teacher_embeddings: ``(N, D)`` teacher embeddings of the bench's text table.
        num_train: how many leading rows are training texts (the only ones the PCA sees).
        teacher_encode: the teacher on raw strings (``encode`` runs it, then projects).
    """
    from sklearn.decomposition import PCA

    train = teacher_embeddings[:num_train].double().numpy()
    peers = []
    for dim in dims:
        pca = PCA(n_components=dim, svd_solver="full").fit(train)
        mean = torch.from_numpy(pca.mean_).float()
        components = torch.from_numpy(pca.components_.T.copy()).float()

        def encode(texts, mean=mean, components=components):
            return (teacher_encode(list(texts)) - mean) @ components

        peers.append(Peer("peer:pca", dim, (teacher_embeddings.float() - mean) @ components, encode))
    return peers


def peer_records(data, args, peers: Sequence[Peer], speed: Callable[[Peer], float]) -> List[dict]:
    """Scores each peer like the teacher (the bench's ``evaluate`` on its table) and times it with ``speed``.

    A peer of dimension d goes in the table of the bench setting of that dimension among
    ``args.settings``, or in a table of its own, setting ``"peers"``. ``speed`` runs on one thread.

    Returns:
        One ``runs.jsonl`` record per peer, kind ``"peer"``, seed 0, no training time.
    """
    from ..models.cached_teacher import CachedTeacher
    from .runner import _record, evaluate, single_thread

    records = []
    for peer in peers:
        metrics = evaluate(CachedTeacher(peer.embeddings), data, args)
        items_per_second = None
        if args.throughput:
            with single_thread():
                items_per_second = speed(peer)
        records.append(
            _record(
                data,
                args,
                peer_setting(data, args, peer.dim),
                peer.method,
                "peer",
                0,
                peer.method.split(":", 1)[-1],
                peer.dim,
                metrics,
                0.0,
                items_per_second,
            )
        )
    return records


def peer_setting(data, args, dim: int) -> str:
    """The bench setting among ``args.settings`` whose student has ``dim`` dimensions, else ``"peers"``."""
    return next((name for name in args.settings if data.settings[name][1] == dim), "peers")
