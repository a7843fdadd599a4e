import pytest
import torch
from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

from pml_relaxed.losses import TwoViewLoss


def test_is_pmls_self_supervised_loss_on_the_interleaved_views():
    embeddings = torch.randn(10, 6, requires_grad=True)
    expected = SelfSupervisedLoss(NTXentLoss(temperature=0.2))(embeddings[0::2], embeddings[1::2])
    got = TwoViewLoss(NTXentLoss(temperature=0.2))(embeddings, labels=torch.arange(10))  # labels ignored
    torch.testing.assert_close(got, expected)
    swapped = embeddings.detach()[[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]  # the views of item 0 exchanged: symmetric
    torch.testing.assert_close(TwoViewLoss(NTXentLoss(temperature=0.2))(swapped), expected.detach())


def test_misuse_is_refused():
    with pytest.raises(ValueError, match="an even number of rows; got 5 rows"):
        TwoViewLoss(NTXentLoss())(torch.randn(5, 3))
    with pytest.raises(TypeError, match="loss must be a PML loss"):
        TwoViewLoss("ntxent")
    with pytest.raises(TypeError, match="symmetric must be a bool"):
        TwoViewLoss(NTXentLoss(), symmetric="yes")
