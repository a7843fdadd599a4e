import pytest
import torch
from pytorch_metric_learning.miners import MultiSimilarityMiner
from pytorch_metric_learning.reducers import SumReducer

from pml_relaxed import functional as fn
from pml_relaxed.losses import RelaxedContrastiveLoss, STMLLoss
from pml_relaxed.similarities import ContextualSimilarity, GaussianKernel
from tests.helpers.reference import loop_stml

f64 = torch.float64


def _heads(n=8, d_f=3, d_g=6, d_t=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d_f, dtype=f64, generator=gen).requires_grad_()
    g = torch.randn(n, d_g, dtype=f64, generator=gen).requires_grad_()
    teacher = torch.randn(n, d_t, dtype=f64, generator=gen)
    ids = torch.arange(n // 2).repeat_interleave(2)
    return f, g, teacher, ids


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("n", [3, 6, 10])
@pytest.mark.parametrize("kl_weight", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("delta", [1.0, 0.5])
def test_equals_the_explicit_loop_of_stmls_objective(n, kl_weight, delta):
    f, g, teacher, _ = _heads(n=n, seed=n)
    ids = torch.arange(n) // 2
    similarity = ContextualSimilarity(k=3, sigma=0.7, labels_mark_views=True)
    weights = similarity(teacher, labels=ids)
    loss = STMLLoss(similarity, delta=delta, kl_weight=kl_weight)(f, g, labels=ids, teacher_emb=teacher)
    expected = loop_stml(f, g, teacher, weights, delta=delta, kl_weight=kl_weight)
    assert abs(float(loss.detach()) - float(expected.detach())) <= 1e-10
    for got, want in zip(_grads(loss, f, g), _grads(expected, f, g)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_one_head_is_the_relaxed_contrastive_loss_over_pairs():
    f, _, teacher, _ = _heads(n=9)
    similarity = GaussianKernel(sigma=1.5)
    loss = STMLLoss(similarity, kl_weight=1.0)(f, teacher_emb=teacher)  # no second head: no KL term
    expected = loop_stml(f, None, teacher, similarity(teacher))
    assert abs(float(loss.detach()) - float(expected.detach())) <= 1e-10
    rc = RelaxedContrastiveLoss(similarity=GaussianKernel(sigma=1.5))(f, teacher_emb=teacher)
    torch.testing.assert_close(loss, rc / 8)  # the library's RC divides by n, STML's by n (n - 1)


def test_gradcheck():
    f, g, teacher, ids = _heads(n=6)
    similarity = ContextualSimilarity(k=2, labels_mark_views=True)
    without_kl = STMLLoss(similarity, kl_weight=0.0)
    assert torch.autograd.gradcheck(lambda a, b: without_kl(a, b, labels=ids, teacher_emb=teacher), (f, g))
    # with the KL term g is detached (a stop-gradient a finite difference cannot see): check f's gradient
    with_kl = STMLLoss(similarity, kl_weight=0.7)
    assert torch.autograd.gradcheck(lambda a: with_kl(a, g.detach(), labels=ids, teacher_emb=teacher), (f,))


def test_the_self_distillation_term_moves_f_only():
    f, g, teacher, _ = _heads(n=6)
    loss_fn = STMLLoss(GaussianKernel(), kl_weight=1.0)
    no_kl = STMLLoss(GaussianKernel(), kl_weight=0.0)
    (g_grad,) = _grads(loss_fn(f, g, teacher_emb=teacher), g)
    (g_grad_no_kl,) = _grads(no_kl(f, g, teacher_emb=teacher), g)
    torch.testing.assert_close(g_grad, g_grad_no_kl)  # g is detached inside KL
    (f_grad,) = _grads(loss_fn(f, g, teacher_emb=teacher), f)
    (f_grad_no_kl,) = _grads(no_kl(f, g, teacher_emb=teacher), f)
    assert not torch.allclose(f_grad, f_grad_no_kl)


def test_functional_kl_matches_stmls_kl_div_form():
    f, g, _, _ = _heads(n=7)
    df, dg = torch.cdist(f, f), torch.cdist(g, g)
    df, dg = df / df.mean(1, keepdim=True), dg / dg.mean(1, keepdim=True)
    log_q, p = torch.log_softmax(-df, dim=-1), torch.softmax(-dg, dim=-1)
    expected = torch.nn.functional.kl_div(log_q, p, reduction="sum") / 7  # STML's KL_STML.kl_div, T = 1
    torch.testing.assert_close(fn.self_distillation_kl_per_anchor(f, g).mean(), expected)


@pytest.mark.parametrize("block_size", [1, 3, 0, None])
def test_blockwise_equals_dense(block_size):
    f, g, teacher, _ = _heads(n=9)
    dense = STMLLoss(GaussianKernel(), block_size=0)(f, g, teacher_emb=teacher)
    blocks = STMLLoss(GaussianKernel(), block_size=block_size)(f, g, teacher_emb=teacher)
    torch.testing.assert_close(blocks, dense, rtol=1e-12, atol=1e-14)
    for got, want in zip(_grads(blocks, f, g), _grads(dense, f, g)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_embedding_size_splits_a_two_head_output_and_the_teachers():
    f, g, teacher_g, ids = _heads(n=8, d_f=3, d_g=6, d_t=6)
    similarity = ContextualSimilarity(k=2, labels_mark_views=True)
    expected = STMLLoss(similarity)(f, g, labels=ids, teacher_emb=teacher_g)
    split = STMLLoss(similarity, embedding_size=3)
    teacher_f = torch.randn(8, 3, dtype=f64)
    two_head_teacher = torch.cat([teacher_f, teacher_g], dim=1)  # an EMA copy of the student: [f | g]
    torch.testing.assert_close(split(torch.cat([f, g], 1), labels=ids, teacher_emb=two_head_teacher), expected)
    torch.testing.assert_close(split(torch.cat([f, g], 1), labels=ids, teacher_emb=teacher_g), expected)


def test_mined_pairs_and_reducers():
    f, g, teacher, ids = _heads(n=8)
    pairs = MultiSimilarityMiner(epsilon=10.0)(f.detach(), ids)
    loss = STMLLoss(GaussianKernel(), kl_weight=0.0)(f, indices_tuple=pairs, teacher_emb=teacher)
    rc = RelaxedContrastiveLoss(similarity=GaussianKernel())(f, indices_tuple=pairs, teacher_emb=teacher)
    torch.testing.assert_close(loss, rc / 7)
    summed = STMLLoss(GaussianKernel(), reducer=SumReducer())(f, g, teacher_emb=teacher)
    torch.testing.assert_close(summed, 8 * STMLLoss(GaussianKernel())(f, g, teacher_emb=teacher))


def test_a_batch_of_one_gives_zero_and_an_empty_batch_a_connected_zero():
    f, g, teacher, _ = _heads(n=2)
    assert float(STMLLoss(GaussianKernel())(f[:1], g[:1], teacher_emb=teacher[:1]).detach()) == 0.0
    empty = STMLLoss(GaussianKernel())(f[:0], g[:0], teacher_emb=teacher[:0])
    empty.backward()
    assert float(empty) == 0.0 and g.grad is not None


def test_misuse_is_refused():
    f, g, teacher, ids = _heads(n=6)
    loss_fn = STMLLoss(GaussianKernel())
    with pytest.raises(TypeError, match="aux_embeddings .*integer tensor.*labels passed positionally"):
        loss_fn(f, ids, teacher_emb=teacher)
    with pytest.raises(ValueError, match="aux_embeddings must have one row per row of embeddings"):
        loss_fn(f, g[:4], teacher_emb=teacher)
    with pytest.raises(ValueError, match="teacher_emb is required"):
        loss_fn(f, g)
    with pytest.raises(ValueError, match="aux_embeddings cannot be combined with embedding_size=3"):
        STMLLoss(GaussianKernel(), embedding_size=3)(f, g, teacher_emb=teacher)
    with pytest.raises(ValueError, match="wider than embedding_size=3"):
        STMLLoss(GaussianKernel(), embedding_size=3)(f, teacher_emb=teacher)
    with pytest.raises(ValueError, match="kl_weight must be >= 0"):
        STMLLoss(kl_weight=-1.0)
    with pytest.raises(TypeError, match="embedding_size"):
        STMLLoss(embedding_size=2.5)
    with pytest.raises(ValueError, match="aux_embeddings .*NaN|non-finite|NaN"):
        loss_fn(f, torch.full_like(g, float("nan")), teacher_emb=teacher)
