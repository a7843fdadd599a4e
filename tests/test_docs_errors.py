"""The FAQ's "Common errors" table quotes messages the library really raises: each row's message (start) is
raised by the call in ``TRIGGERS``, and every row has one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, CrossBatchMemory
from pytorch_metric_learning.trainers import MetricLossOnly

from pml_relaxed.datasets import Omniglot
from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import GaussianKernel
from pml_relaxed.trainers import EmbeddingTransfer

EMPTY = torch.zeros(0, dtype=torch.long)
FAQ = Path(__file__).resolve().parents[1] / "docs" / "faq.md"


def table_messages():
    section = FAQ.read_text().split("## Common errors", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, re.M)]


def trainer_with_a_pair_loss_and_no_miner():
    models = {"trunk": torch.nn.Linear(4, 2), "teacher": torch.nn.Linear(4, 3)}
    dataset = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.arange(8) % 2)
    EmbeddingTransfer(
        models=models, optimizers={}, batch_size=4, loss_funcs={"transfer_loss": ContrastiveLoss()}, dataset=dataset
    )


def trainer_with_a_memory_and_a_tuple_miner():
    models = {"trunk": torch.nn.Linear(4, 2), "teacher": torch.nn.Linear(4, 3)}
    memory = TransferCrossBatchMemory(RelaxedContrastiveLoss(), 2, 3, memory_size=16)
    dataset = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.arange(8) % 2)
    EmbeddingTransfer(
        models=models,
        optimizers={},
        batch_size=4,
        loss_funcs={"transfer_loss": memory},
        mining_funcs={"tuple_miner": TeacherSimilarityMiner()},
        dataset=dataset,
    )


def pml_trainer_with_a_relaxed_loss():
    dataset = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.arange(8) % 2)
    trainer = MetricLossOnly(
        models={"trunk": torch.nn.Linear(4, 2)},
        optimizers={},
        batch_size=4,
        loss_funcs={"metric_loss": RelaxedContrastiveLoss()},
        dataset=dataset,
        dataloader_num_workers=0,
        iterations_per_epoch=1,
    )
    trainer.train(num_epochs=1)


def omniglot_without_data(monkeypatch, tmp_path):
    monkeypatch.delenv("PML_RELAXED_OMNIGLOT", raising=False)
    monkeypatch.setenv("PML_RELAXED_DATA", str(tmp_path / "nothing_here"))
    Omniglot()


TRIGGERS = {
    "teacher_emb is required": lambda: RelaxedContrastiveLoss()(torch.randn(4, 2)),
    "teacher_emb must have one row per row of embeddings": lambda: RelaxedContrastiveLoss()(
        torch.randn(8, 4), teacher_emb=torch.randn(6, 16)
    ),
    "transfer_loss ContrastiveLoss takes no teacher_emb": trainer_with_a_pair_loss_and_no_miner,
    "CrossBatchMemory not supported for RelaxedContrastiveLoss": lambda: CrossBatchMemory(
        RelaxedContrastiveLoss(), 2, memory_size=8
    )(torch.randn(4, 2), torch.arange(4)),
    "sigma and normalize_teacher configure the default GaussianKernel": lambda: RelaxedContrastiveLoss(
        sigma=2.0, similarity=GaussianKernel()
    ),
    "embeddings must be finite": lambda: RelaxedContrastiveLoss()(
        torch.full((4, 2), float("nan")), teacher_emb=torch.randn(4, 5)
    ),
    "FileNotFoundError: ... PML_RELAXED_OMNIGLOT": omniglot_without_data,
    "indices_tuple[1] (positives) must index the 8 rows": lambda: RelaxedContrastiveLoss()(
        torch.randn(8, 4),
        indices_tuple=(torch.tensor([0]), torch.tensor([8]), EMPTY, EMPTY),
        teacher_emb=torch.randn(8, 5),
    ),
    "mining_funcs['tuple_miner'] TeacherSimilarityMiner mines the batch, but TransferCrossBatchMemory is a "
    "cross-batch memory": trainer_with_a_memory_and_a_tuple_miner,
    "teacher_emb is required: PML's trainer MetricLossOnly": pml_trainer_with_a_relaxed_loss,
    "RelaxedContrastiveLoss got an unexpected keyword argument 'sigmaa' (did you mean 'sigma'?)": lambda: (
        RelaxedContrastiveLoss(sigmaa=1.0)
    ),
}


def test_every_row_of_the_table_has_a_trigger():
    assert table_messages() == list(TRIGGERS)


@pytest.mark.parametrize("shown", list(TRIGGERS))
def test_the_library_raises_the_message_the_faq_shows(shown, monkeypatch, tmp_path):
    trigger = TRIGGERS[shown]
    with pytest.raises(Exception) as info:
        if trigger is omniglot_without_data:
            trigger(monkeypatch, tmp_path)
        else:
            trigger()
    pattern = ".*".join(re.escape(part) for part in shown.split(" ... "))
    raised = f"{type(info.value).__name__}: {info.value}"
    assert re.match(pattern, str(info.value)) or re.match(pattern, raised), raised
