"""Banking77 with static students that start from Model2Vec.

The rows are those of :func:`~pml_relaxed_bench.text_data.banking77_data` (column 0 indexes the cached
teacher table) with Model2Vec token ids instead of hashed n-gram ids, so the same teacher, split,
trainer, evaluation and timing apply. Each setting's student is a
:class:`~pml_relaxed.models.StaticEmbedder` initialised from the Model2Vec distillation of the teacher
at that setting's dimension, which training then refines (e.g. with the relaxed contrastive loss).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List

import torch

from pml_relaxed.models import IndexedTextStudent, pack_text_rows
from pml_relaxed.models.static_embedder import StaticEmbedder

from .data import BenchData, TensorDataset
from .text_data import sentences_per_second


def static_student_data(
    data: BenchData, model2vec_by_dim: Dict[int, object], train_texts: List[str], eval_texts: List[str]
) -> BenchData:
    """``data`` (from ``banking77_data``) with Model2Vec-initialised static students.

    Args:
        data: the bench's Banking77 data; its teacher table must hold ``train_texts`` then ``eval_texts``.
        model2vec_by_dim: a ``model2vec.StaticModel`` per student dimension (one tokenizer for all).
        train_texts: the training texts, in the order of ``data.train``.
        eval_texts: the evaluation texts, in the order of ``data.evaluation``.

    Returns:
        The data with settings ``static<dim>`` (kept only for the dims of ``model2vec_by_dim``), static
        students, rows of their token ids, and throughput on the first 1,024 evaluation texts.

    Raises:
        ValueError: the texts do not match the data's sizes, or ``model2vec_by_dim`` is empty.
    """
    if len(train_texts) != len(data.train) or len(eval_texts) != len(data.evaluation):
        raise ValueError(
            f"train_texts / eval_texts must match the data ({len(data.train)} / {len(data.evaluation)} items); "
            f"got {len(train_texts)} / {len(eval_texts)}"
        )
    if not model2vec_by_dim:
        raise ValueError("model2vec_by_dim must hold at least one Model2Vec model")
    reference = StaticEmbedder.from_model2vec(next(iter(model2vec_by_dim.values())))
    width = int(reference.encode_batch(train_texts + eval_texts).shape[1])
    train_rows = pack_text_rows(reference, train_texts, 0, width)
    eval_rows = pack_text_rows(reference, eval_texts, len(train_texts), width)
    timed_texts = eval_texts[:1024]

    def make_model(arch: str, dim: int) -> torch.nn.Module:
        if arch != "static" or dim not in model2vec_by_dim:
            raise ValueError(f"static students are ('static', one of {sorted(model2vec_by_dim)}); got {(arch, dim)}")
        return IndexedTextStudent(StaticEmbedder.from_model2vec(model2vec_by_dim[dim]))

    return dataclasses.replace(
        data,
        train=TensorDataset(train_rows, data.train.labels),
        evaluation=TensorDataset(eval_rows, data.evaluation.labels),
        settings={f"static{dim}": ("static", dim) for dim in sorted(model2vec_by_dim)},
        make_model=make_model,
        augment=None,
        student_options={"student": "StaticEmbedder from Model2Vec"},
        throughput_fn=lambda model: sentences_per_second(model.model, timed_texts),
    )
