"""Banking77 for the benchmark: a pretrained sentence-transformers teacher, hashed n-gram students.

Every text becomes one row of a LongTensor: column 0 is its index in a table of cached teacher
embeddings (computed once, no augmentation, so the cache is exact), the other columns its padded
hashed n-gram ids. PML's trainers move that tensor like any image batch; the student reads the
ids (:class:`IndexedTextStudent`), the teacher looks its embeddings up (:class:`CachedTeacher`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch

from pml_relaxed.datasets import Banking77
from pml_relaxed.models import IndexedTextStudent, pack_text_rows
from pml_relaxed.models.attention_pooled_ngram_embedder import AttentionPooledNgramEmbedder
from pml_relaxed.models.cached_teacher import CachedTeacher
from pml_relaxed.models.conv_ngram_embedder import ConvNgramEmbedder
from pml_relaxed.models.hashed_ngram_embedder import HashedNgramEmbedder
from pml_relaxed.models.ngram_dropout import NgramDropout
from pml_relaxed.models.sentence_transformer_teacher import SentenceTransformerTeacher

from .config import BenchConfig
from .data import BenchData, TensorDataset
from .teachers import text_teacher_label
from .throughput import sentences_per_second
from .unlabelled import check_per_batch, read_unlabelled_texts

#: the bench's text student; ``--text-hidden-dim``, ``--text-mlp`` and ``--text-init-std`` override it
TEXT_STUDENT_DEFAULTS = {"hidden_dim": 64, "mlp_hidden_dims": [256], "init_std": 0.1}
#: ``--text-student``: each family's class and its ``student_arch`` in the records (the bag keeps "ngram")
TEXT_STUDENT_FAMILIES: Dict[str, tuple] = {
    "hashed": (HashedNgramEmbedder, "ngram"),
    "attention": (AttentionPooledNgramEmbedder, "attention-ngram"),
    "conv": (ConvNgramEmbedder, "conv-ngram"),
}
#: ``--text-student conv``'s kernel size unless ``--text-kernel-size`` sets it
TEXT_KERNEL_SIZE_DEFAULT = 3


def text_student_options(config: BenchConfig) -> dict:
    """The constructor options of the bench's students: the defaults, then the ``--text-*`` options.

    The family (``--text-student``) is not an option but the class (:data:`TEXT_STUDENT_FAMILIES`); ``conv``
    adds its ``kernel_size`` (``--text-kernel-size``, default 3).

    Raises:
        ValueError: ``--text-hidden-dim`` or a ``--text-mlp`` width below 1, ``--text-init-std`` not > 0, an
            unknown ``--text-student``, an even or non-positive ``--text-kernel-size``, or one given without
            ``--text-student conv``.
    """
    options = dict(TEXT_STUDENT_DEFAULTS)
    if config.text_hidden_dim is not None:
        if config.text_hidden_dim < 1:
            raise ValueError(f"--text-hidden-dim must be >= 1; got {config.text_hidden_dim}")
        options["hidden_dim"] = config.text_hidden_dim
    if config.text_mlp is not None:
        if any(width < 1 for width in config.text_mlp):
            raise ValueError(f"--text-mlp widths must be >= 1 (none for a linear head); got {config.text_mlp}")
        options["mlp_hidden_dims"] = list(config.text_mlp)
    if config.text_init_std is not None:
        if not config.text_init_std > 0:
            raise ValueError(f"--text-init-std must be > 0; got {config.text_init_std}")
        options["init_std"] = config.text_init_std
    if config.text_student not in TEXT_STUDENT_FAMILIES:
        raise ValueError(f"--text-student must be one of {list(TEXT_STUDENT_FAMILIES)}; got {config.text_student!r}")
    if config.text_student == "conv":
        kernel_size = TEXT_KERNEL_SIZE_DEFAULT if config.text_kernel_size is None else config.text_kernel_size
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"--text-kernel-size must be odd and >= 1; got {kernel_size}")
        options["kernel_size"] = kernel_size
    elif config.text_kernel_size is not None:
        raise ValueError(
            f"--text-kernel-size shapes the convolution of --text-student conv; got it with --text-student "
            f"{config.text_student}"
        )
    return options


def banking77_data(config: BenchConfig) -> BenchData:
    """Banking77: first 39 intents train (train.csv), other 38 test (test.csv); the ``--teacher``
    sentence-transformers model (default: the packaged all-MiniLM-L6-v2), its embeddings cached in
    ``teacher_cache/`` of ``--teacher-dir`` (keyed by the model's and the texts' content)."""
    student_options = text_student_options(config)
    if not 0 <= config.text_ngram_dropout < 1:
        raise ValueError(f"--text-ngram-dropout must be in [0, 1); got {config.text_ngram_dropout}")
    augment = NgramDropout(config.text_ngram_dropout, skip_columns=1) if config.text_ngram_dropout > 0 else None
    root = config.data_root  # None: the dataset's default folder ($PML_RELAXED_BANKING77, $PML_RELAXED_DATA, cache)
    if config.val_classes:
        train = Banking77(root, split="train", num_val_classes=config.val_classes, seed=config.split_seed)
        evaluation = Banking77(root, split="val", num_val_classes=config.val_classes, seed=config.split_seed)
        split = "val"
    else:
        train, evaluation, split = Banking77(root, split="train"), Banking77(root, split="test"), "test"
    cache_dir = Path(config.teacher_dir or config.output_dir) / "teacher_cache"
    teacher_model = SentenceTransformerTeacher(config.teacher, cache_dir=cache_dir)
    all_texts = list(train.texts) + list(evaluation.texts)
    teacher_embeddings = teacher_model.encode(all_texts, show_progress_bar=config.progress)
    unlabelled_texts = read_unlabelled_texts(config.unlabelled_texts) if config.unlabelled_texts else []
    if unlabelled_texts:  # their own cache entry: the labelled table's stays valid
        check_per_batch(config.unlabelled_per_batch, len(unlabelled_texts))  # before the teacher's minutes
        unlabelled_embeddings = teacher_model.encode(unlabelled_texts, show_progress_bar=config.progress)
        teacher_embeddings = torch.cat([teacher_embeddings, unlabelled_embeddings.to(teacher_embeddings.dtype)])

    num_buckets = 2**17
    student_cls, student_arch = TEXT_STUDENT_FAMILIES[config.text_student]
    # The family's own ids (ConvNgramEmbedder: features_per_token columns per token), one width for every split.
    reference = student_cls(embedding_dim=8, num_buckets=num_buckets, **student_options)
    width = int(reference.encode_batch(all_texts + unlabelled_texts).shape[1])
    eval_texts = list(evaluation.texts)[:1024]
    train_rows = pack_text_rows(reference, train.texts, 0, width)
    eval_rows = pack_text_rows(reference, evaluation.texts, len(train.texts), width)
    unlabelled_rows = pack_text_rows(reference, unlabelled_texts, len(all_texts), width) if unlabelled_texts else None
    del reference

    def make_model(arch: str, dim: int) -> torch.nn.Module:
        if arch != student_arch:
            family = config.text_student
            raise ValueError(f"banking77 --text-student {family} students are {student_arch!r}; got {arch!r}")
        student = student_cls(embedding_dim=dim, num_buckets=num_buckets, **student_options)
        return IndexedTextStudent(student)

    return BenchData(
        name="banking77",
        train=TensorDataset(train_rows, train.labels),
        evaluation=TensorDataset(eval_rows, evaluation.labels),
        eval_split=split,
        teacher_arch=text_teacher_label(config.teacher),
        teacher_dim=int(teacher_embeddings.shape[1]),
        settings={f"dim{dim}": (student_arch, dim) for dim in (16, 32, 64)},
        make_model=make_model,
        augment=augment,
        defaults={"epochs": 10, "teacher_epochs": 0, "batch_size": 128, "m": 4, "lr": 3e-3},
        teacher=CachedTeacher(teacher_embeddings),
        student_options=student_options,
        # Sentences per second from raw strings, tokenisation included, as a user would serve them.
        throughput_fn=lambda model: sentences_per_second(_uncached(model.model), eval_texts),
        teacher_throughput_fn=lambda: sentences_per_second(teacher_model, eval_texts),
        texts=(list(train.texts), list(evaluation.texts)),
        teacher_encoder=teacher_model,
        unlabelled=unlabelled_rows,
        teacher_source=None if config.teacher is None else teacher_model.model_id,
        teacher_sha256=teacher_model.content_fingerprint()["sha256"],
    )


def _uncached(text_model: torch.nn.Module):
    """Encodes with an empty tokenisation cache, so throughput counts the hashing as well."""

    def encode(texts: List[str]) -> torch.Tensor:
        text_model.hasher.clear_cache()
        return text_model(texts)

    return encode
