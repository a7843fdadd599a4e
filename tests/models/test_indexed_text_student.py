"""Packed text rows [index, ids...] and the student that reads them."""

import torch

from pml_relaxed.models import CachedTeacher, HashedNgramEmbedder, IndexedTextStudent, pack_text_rows

TEXTS = ["where is my card?", "top up", "my card has not arrived yet"]


def test_rows_hold_the_index_then_the_padded_ids():
    student = HashedNgramEmbedder(embedding_dim=4, num_buckets=2**10)
    ids = student.encode_batch(TEXTS)
    rows = pack_text_rows(student, TEXTS, first_index=5, width=ids.shape[1] + 3)
    assert rows.dtype == torch.long and rows.shape == (3, 1 + ids.shape[1] + 3)
    assert rows[:, 0].tolist() == [5, 6, 7]
    assert torch.equal(rows[:, 1 : 1 + ids.shape[1]], ids) and not rows[:, 1 + ids.shape[1] :].any()
    assert pack_text_rows(student, TEXTS).shape == (3, 1 + ids.shape[1]), "width 0: no extra padding"


def test_student_reads_the_ids_and_the_teacher_the_index():
    student = HashedNgramEmbedder(embedding_dim=4, num_buckets=2**10)
    rows = pack_text_rows(student, TEXTS, first_index=1)
    assert torch.equal(IndexedTextStudent(student)(rows), student(student.encode_batch(TEXTS)))
    table = torch.randn(4, 6)
    assert torch.equal(CachedTeacher(table)(rows), table[1:4])


def test_misuse_names_the_argument():
    import pytest

    student = HashedNgramEmbedder(embedding_dim=4, num_buckets=2**10)
    with pytest.raises(TypeError, match="texts must be a sequence of strings"):
        pack_text_rows(student, "top up")
    with pytest.raises(ValueError, match="width"):
        pack_text_rows(student, TEXTS, width=-1)
    with pytest.raises(TypeError, match="encode_batch"):
        pack_text_rows(torch.nn.Identity(), TEXTS)
    with pytest.raises(ValueError, match="rows must be a"):
        IndexedTextStudent(student)(torch.zeros(3, dtype=torch.long))
