import pytest
import torch
from torch import nn

from pml_relaxed.models import Conv4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "image_size, width, feature_dim",
    [(28, 64, 64), (28, 32, 32), (84, 64, 64 * 5 * 5), (16, 8, 8)],
)
def test_output_and_feature_shapes(image_size, width, feature_dim):
    model = Conv4(in_channels=3, width=width, embedding_dim=20, image_size=image_size)
    x = torch.randn(4, 3, image_size, image_size)
    assert model.feature_dim == feature_dim
    assert model.trunk(x).shape == (4, feature_dim)
    assert model(x).shape == (4, 20)


def test_architecture_is_four_conv_bn_relu_pool_blocks_and_a_linear_head():
    model = Conv4(in_channels=1, width=32, embedding_dim=16)
    convs = [m for m in model.trunk.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4
    assert [c.out_channels for c in convs] == [32] * 4
    assert convs[0].in_channels == 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    assert isinstance(model.embedder, nn.Linear)
    assert (model.embedder.in_features, model.embedder.out_features) == (32, 16)


def test_narrow_student_has_fewer_parameters():
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(Conv4(width=32)) < count(Conv4(width=64)) / 3


def test_trunk_and_embedder_share_parameters_and_compose_to_forward():
    model = Conv4(embedding_dim=8).eval()
    trunk, embedder = model.trunk_and_embedder()
    assert trunk is model.trunk and embedder is model.embedder
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(embedder(trunk(x)), model(x))


def test_output_is_not_normalised_and_gradients_reach_the_first_conv():
    model = Conv4(embedding_dim=8)
    out = model(torch.randn(6, 1, 28, 28))
    assert not torch.allclose(out.norm(dim=1), torch.ones(6))
    out.pow(2).sum().backward()
    first_conv = model.trunk[0][0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_no_head_returns_trunk_features():
    model = Conv4(width=16, embedding_dim=None, image_size=84)
    assert isinstance(model.embedder, nn.Identity)
    assert model.embedding_dim == 16 * 25
    assert model(torch.randn(2, 1, 84, 84)).shape == (2, 400)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"image_size": 8}, ValueError, "image_size must be >= 16; got 8"),
        ({"width": 0}, ValueError, "width must be >= 1; got 0"),
        ({"width": 1.5}, TypeError, "width must be an int"),
        ({"in_channels": True}, TypeError, "in_channels must be an int"),
        ({"embedding_dim": -2}, ValueError, "embedding_dim must be >= 1; got -2"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv4(**kwargs)


def test_forward_errors():
    model = Conv4(in_channels=1, image_size=28)
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 28, 28\); got \(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"got \(1, 28, 28\)"):
        model(torch.randn(1, 28, 28))
    with pytest.raises(TypeError, match="floating-point torch.Tensor; got torch.int64"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.long))


def test_channels_last_weights_give_the_same_embeddings():
    torch.manual_seed(0)
    model = Conv4(in_channels=1, width=8, embedding_dim=4, image_size=28)
    assert model.trunk[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    contiguous = Conv4(in_channels=1, width=8, embedding_dim=4, image_size=28)
    contiguous.load_state_dict(model.state_dict())
    contiguous.trunk.to(memory_format=torch.contiguous_format)
    images = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(model(images), contiguous(images), rtol=1e-5, atol=1e-6)
