"""static_student_data: the bench's Banking77 rows rebuilt with Model2Vec token ids."""

import numpy as np
import pytest
import torch

model2vec = pytest.importorskip("model2vec")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

from pml_relaxed.models import CachedTeacher, StaticEmbedder  # noqa: E402
from pml_relaxed_bench.data import BenchData, TensorDataset  # noqa: E402
from pml_relaxed_bench.static_text_data import static_student_data  # noqa: E402

VOCAB = {"[UNK]": 0, "my": 1, "card": 2, "lost": 3, "is": 4, "where": 5}


def static_model(dim: int):
    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    vectors = np.random.default_rng(dim).normal(size=(len(VOCAB), dim)).astype(np.float32)
    return model2vec.StaticModel(vectors=vectors, tokenizer=tokenizer)


def test_rows_hold_the_teacher_index_then_model2vec_token_rows():
    train_texts, eval_texts = ["my card", "lost card", "where is my card"], ["card lost", "my my"]
    data = BenchData(
        name="banking77",
        train=TensorDataset(torch.zeros(3, 4, dtype=torch.long), torch.tensor([0, 0, 1])),
        evaluation=TensorDataset(torch.zeros(2, 4, dtype=torch.long), torch.tensor([0, 1])),
        eval_split="test",
        teacher_arch="t",
        teacher_dim=4,
        settings={"dim8": ("ngram", 8)},
        make_model=None,
        augment=None,
        teacher=CachedTeacher(torch.randn(5, 4)),
    )
    static = static_student_data(data, {8: static_model(8)}, train_texts, eval_texts)
    assert static.settings == {"static8": ("static", 8)}
    reference = StaticEmbedder.from_model2vec(static_model(8))
    assert static.train.inputs[:, 0].tolist() == [0, 1, 2] and static.evaluation.inputs[:, 0].tolist() == [3, 4]
    ids = reference.encode_batch(eval_texts)
    assert torch.equal(static.evaluation.inputs[:, 1 : 1 + ids.shape[1]], ids)
    student = static.make_model("static", 8)
    torch.testing.assert_close(student(static.evaluation.inputs), reference(eval_texts))
    assert static.throughput_fn(student) > 0
    with pytest.raises(ValueError, match=r"static students are \('static', one of \[8\]\); got \('static', 16\)"):
        static.make_model("static", 16)
    with pytest.raises(ValueError, match="must match the data"):
        static_student_data(data, {8: static_model(8)}, train_texts[:2], eval_texts)
