import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner

from pml_relaxed._teacher import takes_keyword, takes_teacher
from pml_relaxed.losses import (
    RelaxedContrastiveLoss,
    TransferCrossBatchMemory,
    TransferMultipleLosses,
    TransferSelfSupervisedLoss,
)
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.trainers import embedding_transfer


class CatchAll(torch.nn.Module):
    def forward(self, *args, **kwargs):
        return args, kwargs


def positional_only(embeddings, teacher_emb, /):
    return embeddings


OBJECTS = {
    "relaxed": (RelaxedContrastiveLoss(), True),
    "memory": (TransferCrossBatchMemory(RelaxedContrastiveLoss(), 4, 8), True),
    "multiple": (TransferMultipleLosses([ContrastiveLoss()]), True),
    "self_supervised": (TransferSelfSupervisedLoss(RelaxedContrastiveLoss()), True),
    "teacher_miner": (TeacherSimilarityMiner(), True),
    "pml_loss": (ContrastiveLoss(), False),
    "pml_miner": (MultiSimilarityMiner(), False),
    "catch_all": (CatchAll(), False),
    "positional_only": (positional_only, False),
    "lambda": (lambda embeddings, *, teacher_emb: embeddings, True),
    "builtin": (len, False),
    "not_callable": (3, False),
}


@pytest.mark.parametrize("name", list(OBJECTS))
def test_takes_teacher_reads_the_forward_signature_like_the_trainer(name):
    obj, expected = OBJECTS[name]
    assert takes_teacher(obj) is expected
    assert embedding_transfer.takes_teacher(obj) is expected or name == "positional_only"


def test_takes_keyword():
    assert takes_keyword(ContrastiveLoss(), "ref_emb") and takes_keyword(RelaxedContrastiveLoss(), "teacher_ref_emb")
    assert not takes_keyword(TransferCrossBatchMemory(RelaxedContrastiveLoss(), 4, 8), "ref_emb")
    assert not takes_keyword(CatchAll(), "kwargs") and not takes_keyword(CatchAll(), "args")
