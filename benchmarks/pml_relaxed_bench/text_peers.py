"""What a user would pick instead of training a text student: Model2Vec and PCA of the teacher.

Each peer is a table of embeddings for every text of the bench's teacher table (training texts
first, then evaluation texts, as :func:`~pml_relaxed_bench.text_data.banking77_data` orders them),
scored like the teacher through :class:`~pml_relaxed.models.CachedTeacher`, plus a function that
times it on raw strings the way the students are timed (the same texts, batches of 256, one thread):

- ``peer:model2vec``: ``model2vec.distill`` of the same teacher (``--teacher``'s sentence-transformers
  folder or name; default the packaged all-MiniLM-L6-v2, no network; no training data: its vocabulary's
  token embeddings, PCA to ``dim``, SIF weighting);
  it embeds a text as the mean of its tokens' vectors. ``pip install "model2vec[distill]"``.
- ``peer:pca``: the teacher's own embeddings, reduced to ``dim`` by a PCA fitted on the
  training-intent texts only (the test intents never enter the fit): the teacher's quality at
  fewer dimensions, at the teacher's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

_MODEL2VEC_HINT = 'Model2Vec peers need model2vec with its distill extra: pip install "pml-relaxed[model2vec]"'


@dataclass
class Peer:
    """One peer: ``method`` and ``dim`` name its rows; ``embeddings`` covers the bench's whole text table;
    ``encode`` embeds raw strings (for timing)."""

    method: str
    dim: int
    embeddings: torch.Tensor
    encode: Callable[[List[str]], object]


def _import_model2vec(distillation: bool = True):
    """model2vec's ``StaticModel`` and, with ``distillation``, its ``distill`` (the ``distill`` extra)."""
    try:
        from model2vec import StaticModel

        if not distillation:
            return StaticModel, None
        from model2vec.distill import distill
    except ImportError as err:
        raise ImportError(_MODEL2VEC_HINT) from err
    return StaticModel, distill


def distilled_model2vec(teacher_path: Path, dim: int, cache_dir: Path, dtype: str = "float32"):
    """``model2vec.distill(teacher_path, pca_dims=dim)`` with float32 vectors, kept in ``cache_dir`` and reused.

    ``dtype="float16"`` (model2vec's own default) returns the same model with its vectors cast to float16,
    as ``distill(..., quantize_to="float16")`` does; its NumPy mean is slower than in float32.
    """
    folder = Path(cache_dir) / f"model2vec_{dim}"
    cached = (folder / "config.json").is_file()
    static_model_cls, distill = _import_model2vec(distillation=not cached)
    if cached:
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


def model2vec_peers(
    dims: Sequence[int],
    all_texts: List[str],
    cache_dir: Path,
    dtype: str = "float32",
    teacher_path: Optional[str] = None,
) -> List[Peer]:
    """Model2Vec distillations of the teacher at each of ``dims`` (cached in ``cache_dir``), with ``dtype``
    vectors (see :func:`distilled_model2vec`).

    Args:
        teacher_path: the teacher's sentence-transformers folder or hub name (default: the packaged
            all-MiniLM-L6-v2).

    Raises:
        ImportError: model2vec (with its distill extra) or the packaged teacher is missing.
    """
    if teacher_path is None:
        from pml_relaxed.models.sentence_transformer_teacher import default_model_path

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
    from pml_relaxed.models.cached_teacher import CachedTeacher

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


#: the dimensions of each ``--peers`` entry when ``--model2vec-dims`` / ``--pca-dims`` are not given
DEFAULT_PEER_DIMS = {"model2vec": (32, 64, 256), "pca": (16, 32, 64)}


def _given_dims(config, name: str) -> Optional[List[int]]:
    return config.model2vec_dims if name == "model2vec" else config.pca_dims


def peer_dims(config, name: str) -> List[int]:
    """The dimensions of peer ``name`` (``"model2vec"`` or ``"pca"``) that ``config`` asks for."""
    given = _given_dims(config, name)
    return list(given) if given is not None else list(DEFAULT_PEER_DIMS[name])


def check_peer_options(config) -> None:
    """The ``--peers`` options' errors, before anything trains (:func:`run_peers` bounds the PCA by the data).

    Raises:
        ValueError: peers on a dataset other than banking77, dimensions without their peer, or a
            dimension below 1.
        ImportError: ``--peers model2vec`` without model2vec installed.
    """
    peers = config.peers or []
    if peers and config.dataset != "banking77":
        raise ValueError(
            f"--peers needs a pretrained text teacher (--dataset banking77); got --dataset {config.dataset}"
        )
    for name in ("model2vec", "pca"):
        if _given_dims(config, name) is not None and name not in peers:
            raise ValueError(f"--{name}-dims sets the {name} peer's dimensions; add {name} to --peers (got {peers})")
        if name in peers and min(peer_dims(config, name)) < 1:
            raise ValueError(f"--{name}-dims must be >= 1; got {peer_dims(config, name)}")
    if "model2vec" in peers:
        _import_model2vec(distillation=False)  # distilling (not loading a cached distillation) needs the extra


def model2vec_cache_dir(data, config) -> Path:
    """Where the Model2Vec distillations of the run's teacher are kept: ``model2vec/`` of ``--teacher-dir`` for
    the packaged default teacher, ``model2vec/<teacher>-<first 12 of its SHA-256>/`` for a ``--teacher``, so that
    a distillation of one teacher is never reused for another."""
    cache = Path(config.teacher_dir or config.output_dir) / "model2vec"
    if data.teacher_source is None:
        return cache
    return cache / f"{data.teacher_arch}-{(data.teacher_sha256 or 'unknown')[:12]}"


def peer_speed(peer: Peer, texts: List[str]) -> float:
    """Sentences per second of ``peer`` on ``texts`` (best of 3 passes; a PCA peer costs a teacher pass: one)."""
    from .throughput import sentences_per_second

    return sentences_per_second(peer.encode, texts, repeats=1 if peer.method == "peer:pca" else 3)


def run_peers(data, config, records: Sequence[dict]) -> List[dict]:
    """``pml-relaxed bench --peers ...``: scores and times the peers beside the students of the same run.

    Each peer is evaluated on the bench's evaluation texts like the teacher, and timed on the same
    raw strings as the students (the first 1,024 evaluation texts, batches of 256, one thread). A peer
    already in ``records`` (same method, dimension and split) is skipped, so a rerun resumes.

    Args:
        data: the bench's Banking77 data (:func:`~pml_relaxed_bench.text_data.banking77_data`).
        config: the resolved :class:`~pml_relaxed_bench.config.BenchConfig`.
        records: the runs already recorded.

    Returns:
        The new peer records (``kind="peer"``); the caller appends them to ``runs.jsonl``.

    Raises:
        ValueError: ``data`` has no raw texts and text teacher (not a text dataset).
    """
    if data.texts is None or data.teacher_encoder is None:
        raise ValueError(f"--peers needs a text dataset with a pretrained teacher; got --dataset {data.name}")
    train_texts, eval_texts = data.texts
    limit = min(len(train_texts), data.teacher_dim)
    if "pca" in config.peers and max(peer_dims(config, "pca")) > limit:
        raise ValueError(
            f"--pca-dims must be <= {limit} (the training texts and the teacher's dimension bound the PCA); "
            f"got {peer_dims(config, 'pca')}"
        )
    done = {
        (r["method"], r["student_dim"]) for r in records if r["kind"] == "peer" and r["eval_split"] == data.eval_split
    }
    todo = {name: [d for d in peer_dims(config, name) if (f"peer:{name}", d) not in done] for name in config.peers}
    peers: List[Peer] = []
    if todo.get("model2vec"):
        cache = model2vec_cache_dir(data, config)
        peers += model2vec_peers(todo["model2vec"], train_texts + eval_texts, cache, teacher_path=data.teacher_source)
    if todo.get("pca"):
        peers += pca_peers(todo["pca"], data.teacher.embeddings, len(train_texts), data.teacher_encoder)
    timed_texts = eval_texts[:1024]
    return peer_records(data, config, peers, lambda peer: peer_speed(peer, timed_texts))
