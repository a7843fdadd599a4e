import pytest
import torch
from torch import nn

from pml_relaxed.models import MLP


def test_shapes_and_layers():
    model = MLP(64, [128, 32], 16)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 128), (128, 32), (32, 16)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert model(torch.randn(5, 64)).shape == (5, 16)


def test_no_hidden_layer_is_a_single_linear_map():
    torch.manual_seed(0)
    model = MLP(4, [], 3)
    linear = model.net[0]
    x = torch.randn(7, 4)
    assert len(model.net) == 1
    torch.testing.assert_close(model(x), x @ linear.weight.T + linear.bias)


def test_final_layer_has_no_activation():
    torch.manual_seed(0)
    out = MLP(8, [16], 4)(torch.randn(50, 8))
    assert (out < 0).any()


def test_batch_norm_and_dropout():
    torch.manual_seed(0)
    model = MLP(8, [16, 16], 4, batch_norm=True, dropout=0.5)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    x = torch.randn(10, 8)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((0, [8], 4), {}, ValueError, "in_dim must be >= 1; got 0"),
        ((8, [8], 2.0), {}, TypeError, "out_dim must be an int"),
        ((8, [8, 0], 4), {}, ValueError, r"hidden_dims\[1\] must be >= 1; got 0"),
        ((8, 16, 4), {}, TypeError, "hidden_dims must be a sequence of ints"),
        ((8, [8], 4), {"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\); got 1.0"),
        ((8, [8], 4), {"dropout": "0.1"}, TypeError, "dropout must be a float"),
    ],
)
def test_constructor_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        MLP(*args, **kwargs)


def test_forward_errors():
    model = MLP(8, [16], 4)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\); got \(3, 7\)"):
        model(torch.randn(3, 7))
    with pytest.raises(TypeError, match="floating-point torch.Tensor; got list"):
        model([[0.0] * 8])
