"""The blockwise path of the relaxed losses: the dense path's values and gradients at O(block * m) memory,
half precision, autocast, double backward, torch.compile, and bad input."""

import pytest
import torch
from pytorch_metric_learning import distances, reducers
from pytorch_metric_learning.miners import MultiSimilarityMiner, TripletMarginMiner

from pml_relaxed import _relaxed_engine as bw
from pml_relaxed import functional as fn
from pml_relaxed.losses import RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss
from pml_relaxed.similarities import BaseSimilarity, GaussianKernel, LabelSimilarity, MixedSimilarity, TeacherInputs
from tests.helpers.reference import loop_relaxed_contrastive, loop_relaxed_multi_similarity

f64 = torch.float64
LOSSES = {
    "contrastive": lambda **kw: RelaxedContrastiveLoss(sigma=0.7, delta=1.3, **kw),
    "multi_similarity": lambda **kw: RelaxedMultiSimilarityLoss(sigma=0.7, delta=1.3, alpha=1.5, beta=2.5, **kw),
}


def _inputs(n, d_student=5, d_teacher=9, seed=0, num_classes=4):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(n, d_student, dtype=f64, generator=gen)
    teacher = torch.randn(n, d_teacher, dtype=f64, generator=gen)
    labels = torch.arange(n) % num_classes
    return student, teacher, labels


def _value_and_grads(loss_fn, student, teacher, labels=None, ref=None, **kwargs):
    leaves = [student.clone().requires_grad_()]
    call = dict(kwargs)
    if ref is not None:
        leaves.append(ref[0].clone().requires_grad_())
        call.update(ref_emb=leaves[1], teacher_ref_emb=ref[1], ref_labels=ref[2])
    loss = loss_fn(leaves[0], labels, teacher_emb=teacher, **call)
    return loss, torch.autograd.grad(loss, leaves)


@pytest.fixture(params=["one_pass", "two_pass"])
def path(request, monkeypatch):
    """Runs a test on both blockwise backward paths: the gradient computed in the forward pass and scaled (the
    default with a constant upstream gradient), or every block recomputed (forced: upstream read as varying)."""
    if request.param == "two_pass":
        monkeypatch.setattr(bw, "is_constant", lambda values: False)
    return request.param


def assert_same(a, b, rtol=1e-6):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=rtol, atol=1e-12)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=rtol, atol=1e-12)


# ---------------------------------------------------------------- blockwise == dense (float64)


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("n", [7, 33, 100])
@pytest.mark.parametrize("block_size", [1, 5, 16, 64])
def test_blockwise_equals_dense_and_loop(loss_name, n, block_size, path):
    student, teacher, _ = _inputs(n, seed=n)
    dense = _value_and_grads(LOSSES[loss_name](block_size=0), student, teacher)
    assert_same(_value_and_grads(LOSSES[loss_name](block_size=block_size), student, teacher), dense)
    if n == 7:
        s = student.clone().requires_grad_()
        if loss_name == "contrastive":
            expected = loop_relaxed_contrastive(s, teacher, 0.7, 1.3)
        else:
            expected = loop_relaxed_multi_similarity(s, teacher, 0.7, 1.3, 1.5, 2.5)
        assert_same(dense, (expected, torch.autograd.grad(expected, [s])))


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("block_size", [3, 8])
def test_reference_set(loss_name, block_size, path):
    student, teacher, labels = _inputs(10, seed=1)
    ref_student, ref_teacher, ref_labels = _inputs(23, seed=2)
    ref = (ref_student, ref_teacher, ref_labels)
    dense = _value_and_grads(LOSSES[loss_name](block_size=0), student, teacher, labels, ref)
    assert_same(_value_and_grads(LOSSES[loss_name](block_size=block_size), student, teacher, labels, ref), dense)


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("miner", ["pairs", "triplets"])
def test_indices_tuple(loss_name, miner, path):
    student, teacher, labels = _inputs(30, seed=3)
    if miner == "pairs":
        indices = MultiSimilarityMiner(epsilon=0.5)(student, labels)
    else:
        indices = TripletMarginMiner(margin=0.05, type_of_triplets="hard")(student, labels)
    assert 0 < len(indices[0])
    dense = _value_and_grads(LOSSES[loss_name](block_size=0), student, teacher, labels, indices_tuple=indices)
    blockwise = _value_and_grads(LOSSES[loss_name](block_size=7), student, teacher, labels, indices_tuple=indices)
    assert_same(blockwise, dense)
    full = _value_and_grads(LOSSES[loss_name](block_size=7), student, teacher, labels)
    assert not torch.allclose(full[0], blockwise[0])


def test_indices_tuple_with_reference_set(path):
    student, teacher, labels = _inputs(9, seed=4)
    ref_student, ref_teacher, ref_labels = _inputs(14, seed=5)
    indices = MultiSimilarityMiner(epsilon=0.5)(student, labels, ref_student, ref_labels)
    ref = (ref_student, ref_teacher, ref_labels)
    dense = _value_and_grads(LOSSES["contrastive"](block_size=0), student, teacher, labels, ref, indices_tuple=indices)
    assert_same(
        _value_and_grads(LOSSES["contrastive"](block_size=4), student, teacher, labels, ref, indices_tuple=indices),
        dense,
    )


REDUCERS = {
    "mean": reducers.MeanReducer,
    "sum": reducers.SumReducer,
    "avg_non_zero": reducers.AvgNonZeroReducer,
    "threshold": lambda: reducers.ThresholdReducer(low=5.0),
    "per_anchor": reducers.PerAnchorReducer,
    "class_weighted": lambda: reducers.ClassWeightedReducer(weights=torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=f64)),
    "divisor": reducers.DivisorReducer,
}


@pytest.mark.parametrize("reducer_name", sorted(REDUCERS))
def test_every_reducer(reducer_name, path):
    student, teacher, labels = _inputs(21, seed=6)
    dense = _value_and_grads(
        RelaxedContrastiveLoss(block_size=0, reducer=REDUCERS[reducer_name]()), student, teacher, labels
    )
    blockwise = _value_and_grads(
        RelaxedContrastiveLoss(block_size=4, reducer=REDUCERS[reducer_name]()), student, teacher, labels
    )
    assert_same(blockwise, dense)


@pytest.mark.parametrize("reducer_name,recomputes", [("mean", False), ("sum", False), ("class_weighted", True)])
def test_the_backward_recomputes_the_blocks_only_for_a_varying_upstream_gradient(reducer_name, recomputes, monkeypatch):
    calls = []
    recompute = bw.recompute_gradient
    monkeypatch.setattr(bw, "recompute_gradient", lambda *args: calls.append(args) or recompute(*args))
    student, teacher, labels = _inputs(21, seed=6)
    blockwise = _value_and_grads(
        RelaxedContrastiveLoss(block_size=4, reducer=REDUCERS[reducer_name]()), student, teacher, labels
    )
    assert bool(calls) == recomputes
    dense = _value_and_grads(
        RelaxedContrastiveLoss(block_size=0, reducer=REDUCERS[reducer_name]()), student, teacher, labels
    )
    assert_same(blockwise, dense)


def _per_anchor(student, teacher, ref=None, block_size=3, one_pass=True):
    rows = fn.gaussian_kernel_rows(teacher, None if ref is None else ref[1], sigma=0.7)
    problem = bw.RelaxedProblem(
        bw.EuclideanDistance(), bw.ContrastiveRows(1.3), rows, None, ref is None, None, one_pass
    )
    return bw.relaxed_per_anchor(student, None if ref is None else ref[0], problem, block_size)


@pytest.mark.parametrize("one_pass", [True, False])
def test_weighted_per_anchor_losses_and_their_gradcheck(one_pass, path):
    student, teacher, _ = _inputs(11, 3, 4, seed=23)
    ref_student, ref_teacher, _ = _inputs(6, 3, 4, seed=24)
    weights = torch.rand(11, dtype=f64, generator=torch.Generator().manual_seed(0))
    for ref in (None, (ref_student, ref_teacher)):
        leaves = [student.clone().requires_grad_()] + ([] if ref is None else [ref[0].clone().requires_grad_()])
        refs = None if ref is None else (leaves[1], ref[1])
        results = []
        for block_size in (0, 3):
            loss = (_per_anchor(leaves[0], teacher, refs, block_size, one_pass) * weights).sum()
            results.append((loss, torch.autograd.grad(loss, leaves)))
        assert_same(results[1], results[0])

        def per_anchor(*x, ref=ref):
            return _per_anchor(x[0], teacher, None if ref is None else (x[1], ref[1]), 3, one_pass)

        assert torch.autograd.gradcheck(per_anchor, tuple(leaf.detach().requires_grad_() for leaf in leaves))


def test_no_gradient_work_in_the_forward_pass_unless_a_gradient_is_needed(monkeypatch):
    calls = []
    accumulate = bw.accumulate_block_gradient_
    monkeypatch.setattr(bw, "accumulate_block_gradient_", lambda *args: calls.append(args) or accumulate(*args))
    student, teacher, _ = _inputs(20, seed=25)
    loss_fn = RelaxedContrastiveLoss(block_size=4)
    loss_fn(student, teacher_emb=teacher)  # no input requires grad
    with torch.no_grad():
        loss_fn(student.clone().requires_grad_(), teacher_emb=teacher)
    assert not calls
    s = student.clone().requires_grad_()
    loss = loss_fn(s, teacher_emb=teacher)
    assert len(calls) == 5  # one per block, in the forward pass
    loss.backward()
    assert len(calls) == 5  # the backward only scaled it


@pytest.mark.parametrize(
    "similarity",
    [
        lambda: GaussianKernel(sigma=0.3),
        lambda: GaussianKernel(sigma=4.0, normalize=False),
        LabelSimilarity,
        lambda: MixedSimilarity(GaussianKernel(sigma=0.5), LabelSimilarity(), label_weight=0.3),
    ],
)
def test_similarities(similarity, path):
    student, teacher, labels = _inputs(19, seed=7)
    dense = _value_and_grads(RelaxedContrastiveLoss(similarity=similarity(), block_size=0), student, teacher, labels)
    blockwise = _value_and_grads(
        RelaxedContrastiveLoss(similarity=similarity(), block_size=6), student, teacher, labels
    )
    assert_same(blockwise, dense)


def test_similarity_rows_equal_the_full_matrix():
    _, teacher, labels = _inputs(11, seed=8)
    _, ref_teacher, ref_labels = _inputs(6, seed=9)
    mixed = MixedSimilarity(GaussianKernel(sigma=0.5), LabelSimilarity(), label_weight=0.3)
    for similarity in (GaussianKernel(sigma=0.5), LabelSimilarity(), mixed):
        for ref, r_labels in ((None, None), (ref_teacher, ref_labels)):
            full = similarity(teacher, ref, labels, r_labels)
            rows = similarity.rows(TeacherInputs(teacher, ref, labels, r_labels))
            torch.testing.assert_close(torch.cat([rows(0, 4), rows(4, 9), rows(9, 11)]), full)


@pytest.mark.parametrize(
    "distance",
    [
        lambda: distances.LpDistance(normalize_embeddings=True),
        lambda: distances.LpDistance(normalize_embeddings=False, power=2),
        lambda: distances.LpDistance(normalize_embeddings=False, power=0.5),
        lambda: distances.LpDistance(normalize_embeddings=False, p=1),
        lambda: distances.LpDistance(normalize_embeddings=True, p=3, power=2),
    ],
)
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_distances(distance, loss_name, path):
    student, teacher, _ = _inputs(17, seed=10)
    dense = _value_and_grads(LOSSES[loss_name](distance=distance(), block_size=0), student, teacher)
    blockwise = _value_and_grads(LOSSES[loss_name](distance=distance(), block_size=5), student, teacher)
    assert_same(blockwise, dense)


def test_lp_distance_matches_pml_cdist():
    student, teacher, _ = _inputs(12, seed=11)
    for power in (1, 2):
        pml = distances.LpDistance(normalize_embeddings=False, power=power)
        dist = pml(student).masked_fill(torch.eye(12, dtype=torch.bool), 0)
        w = fn.gaussian_kernel(teacher)
        rel = fn.relative_distance(dist)
        expected = fn.relaxed_contrastive_per_anchor(rel, w, fn.pair_mask(12, 12)).mean()
        loss = RelaxedContrastiveLoss(distance=pml, block_size=5)(student, teacher_emb=teacher)
        torch.testing.assert_close(loss, expected)


def test_functional_block_sizes(path):
    student, teacher, _ = _inputs(40, seed=12)
    ref_student, ref_teacher, _ = _inputs(25, seed=13)
    for function in (fn.relaxed_contrastive_loss, fn.relaxed_multi_similarity_loss):
        for ref in ((None, None), (ref_student, ref_teacher)):
            results = []
            for block_size in (0, 3, 11, None):
                s = student.clone().requires_grad_()
                r = None if ref[0] is None else ref[0].clone().requires_grad_()
                loss = function(s, teacher, r, ref[1], sigma=0.6, delta=1.4, block_size=block_size)
                results.append((loss, torch.autograd.grad(loss, [x for x in (s, r) if x is not None])))
            for result in results[1:]:
                assert_same(result, results[0])


class _RelaxedL1Loss(RelaxedContrastiveLoss):
    """A subclass that only writes per_anchor_losses: the engine differentiates it with autograd."""

    def row_function(self):
        return bw.AutogradRows(self.per_anchor_losses)

    def per_anchor_losses(self, relative_dist, relaxed_labels, mask):
        return ((relative_dist - (1 - relaxed_labels) * self.delta).abs() * mask).sum(dim=1)


def test_a_subclass_with_per_anchor_losses_only_is_blockwise_too(path):
    student, teacher, _ = _inputs(23, seed=21)
    dense = _value_and_grads(_RelaxedL1Loss(block_size=0), student, teacher)
    assert_same(_value_and_grads(_RelaxedL1Loss(block_size=5), student, teacher), dense)
    rel = fn.relative_distance(fn.euclidean_distance(student))
    target = (1 - fn.gaussian_kernel(teacher)) * 1.0
    expected = ((rel - target).abs() * fn.pair_mask(23, 23)).sum(1).mean()
    torch.testing.assert_close(dense[0], expected)


def test_collected_stats_agree():
    student, teacher, _ = _inputs(15, seed=14)
    dense = RelaxedContrastiveLoss(block_size=0, collect_stats=True)
    blockwise = RelaxedContrastiveLoss(block_size=4, collect_stats=True)
    dense(student, teacher_emb=teacher)
    blockwise(student, teacher_emb=teacher)
    assert dense.num_pairs == blockwise.num_pairs == 15 * 14
    assert dense.avg_relaxed_label == pytest.approx(blockwise.avg_relaxed_label, rel=1e-9)
    assert dense.avg_relative_dist == pytest.approx(blockwise.avg_relative_dist, rel=1e-9)


@pytest.mark.parametrize("block_size", [0, 3])
def test_gradcheck_and_gradgradcheck(block_size, path):
    student, teacher, _ = _inputs(7, 3, 4, seed=15)
    ref_student, ref_teacher, _ = _inputs(5, 3, 4, seed=16)
    student.requires_grad_()
    ref_student.requires_grad_()
    for name in sorted(LOSSES):
        loss_fn = LOSSES[name](block_size=block_size)

        def self_ref(s, loss_fn=loss_fn):
            return loss_fn(s, teacher_emb=teacher)

        def with_ref(s, r, loss_fn=loss_fn):
            return loss_fn(s, ref_emb=r, teacher_emb=teacher, teacher_ref_emb=ref_teacher)

        assert torch.autograd.gradcheck(self_ref, (student,))
        assert torch.autograd.gradgradcheck(self_ref, (student,))
        assert torch.autograd.gradcheck(with_ref, (student, ref_student))
        assert torch.autograd.gradgradcheck(with_ref, (student, ref_student))


def test_double_backward_of_the_functional_api_matches_dense():
    student, teacher, _ = _inputs(9, seed=17)
    hessians = []
    for block_size in (0, 4):
        s = student.clone().requires_grad_()
        loss = fn.relaxed_contrastive_loss(s, teacher, block_size=block_size)
        (grad,) = torch.autograd.grad(loss, s, create_graph=True)
        hessians.append(torch.autograd.grad(grad.pow(2).sum(), s)[0])
    torch.testing.assert_close(hessians[1], hessians[0])


def test_forward_mode_ad_and_vmap_on_the_dense_path():
    student, teacher, _ = _inputs(8, seed=18)
    tangent = torch.randn_like(student)
    _, jvp = torch.func.jvp(
        lambda s: fn.relaxed_contrastive_loss(s, teacher, block_size=0, validate=False), (student,), (tangent,)
    )
    s = student.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn.relaxed_contrastive_loss(s, teacher), s)
    torch.testing.assert_close(jvp, (grad * tangent).sum())
    batched = torch.stack([student, student * 2])
    values = torch.func.vmap(lambda s: fn.relaxed_contrastive_loss(s, teacher, block_size=0, validate=False))(batched)
    torch.testing.assert_close(values[0], fn.relaxed_contrastive_loss(student, teacher))


@pytest.mark.parametrize("n", [4, 40])
def test_duplicated_and_collapsed_rows_finite_gradients_blockwise(n, path):
    base = torch.randn(n // 2, 6, dtype=f64)
    teacher = torch.randn(n, 9, dtype=f64)
    for student in (torch.cat([base, base]), torch.zeros(n, 6, dtype=f64)):
        dense = _value_and_grads(RelaxedContrastiveLoss(block_size=0), student, teacher)
        blockwise = _value_and_grads(RelaxedContrastiveLoss(block_size=3), student, teacher)
        assert torch.isfinite(blockwise[0]) and torch.isfinite(blockwise[1][0]).all()
        assert_same(blockwise, dense)


def test_permutation_invariance_blockwise():
    student, teacher, _ = _inputs(30, seed=19)
    perm = torch.randperm(30)
    loss_fn = RelaxedContrastiveLoss(block_size=7)
    torch.testing.assert_close(loss_fn(student, teacher_emb=teacher), loss_fn(student[perm], teacher_emb=teacher[perm]))


# ---------------------------------------------------------------- auto mode


def test_auto_block_size():
    assert bw.resolve_block_size(None, 256, 256) == 0
    assert bw.resolve_block_size(None, 257, 256) > 0
    assert bw.resolve_block_size(None, 4096, 4096) == bw.BLOCK_ELEMENTS // 4096
    assert bw.resolve_block_size(None, 100_000, 100_000) == bw.MIN_AUTO_BLOCK_ROWS
    assert bw.resolve_block_size(0, 10_000, 10_000) == 0
    assert bw.resolve_block_size(50, 10, 10) == 10


def test_auto_mode_takes_the_blockwise_function_above_the_threshold():
    student = torch.randn(300, 4, requires_grad=True)
    teacher = torch.randn(300, 6)
    auto = RelaxedContrastiveLoss()(student, teacher_emb=teacher)
    dense = RelaxedContrastiveLoss(block_size=0)(student, teacher_emb=teacher)
    assert "Blockwise" in type(auto.grad_fn.next_functions[0][0]).__name__ or _has_blockwise_node(auto.grad_fn)
    assert not _has_blockwise_node(dense.grad_fn)
    torch.testing.assert_close(auto, dense)


def _has_blockwise_node(grad_fn, depth=0):
    if grad_fn is None or depth > 20:
        return False
    if "BlockwiseRelaxed" in type(grad_fn).__name__:
        return True
    return any(_has_blockwise_node(child, depth + 1) for child, _ in grad_fn.next_functions)


# ---------------------------------------------------------------- dtypes, autocast, compile


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("block_size", [0, 32])
def test_dtypes_against_float32(dtype, block_size):
    gen = torch.Generator().manual_seed(20)
    student = (torch.randn(100, 8, generator=gen) * 30).to(dtype)  # large norms: squared distances ~1e4
    teacher = torch.randn(100, 16, generator=gen).to(dtype)
    s = student.clone().requires_grad_()
    loss = RelaxedContrastiveLoss(block_size=block_size)(s, teacher_emb=teacher)
    loss.backward()
    s32 = student.float().requires_grad_()
    expected = RelaxedContrastiveLoss(block_size=0)(s32, teacher_emb=teacher.float())
    expected.backward()
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert s.grad.dtype == dtype and torch.isfinite(s.grad).all()
    torch.testing.assert_close(loss.float(), expected, rtol=1e-5, atol=1e-5)
    grad_tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype, 1e-5)
    torch.testing.assert_close(s.grad.float(), s32.grad, rtol=grad_tol, atol=grad_tol * s32.grad.abs().max().item())


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block_size", [0, 16])
def test_autocast_computes_in_float32(amp_dtype, block_size):
    model = torch.nn.Linear(20, 8)
    x = torch.randn(64, 20) * 10
    teacher = torch.randn(64, 16)
    with torch.autocast("cpu", dtype=amp_dtype):
        emb = model(x)
        assert emb.dtype == amp_dtype
        loss = RelaxedMultiSimilarityLoss(block_size=block_size)(emb, teacher_emb=teacher)
    loss.backward()
    assert loss.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # the same half-precision embeddings, computed in float32 without autocast
    expected = RelaxedMultiSimilarityLoss(block_size=0)(emb.detach().float(), teacher_emb=teacher)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block_size", [0, 8])
def test_compile_fullgraph_of_the_functional_api(block_size):
    torch._dynamo.reset()
    teacher = torch.randn(32, 6)
    compiled = torch.compile(
        lambda s: fn.relaxed_contrastive_loss(s, teacher, block_size=block_size, validate=False),
        fullgraph=True,
        backend="aot_eager",
    )
    s = torch.randn(32, 4, requires_grad=True)
    loss = compiled(s)
    (grad,) = torch.autograd.grad(loss, s)
    s2 = s.detach().clone().requires_grad_()
    expected = fn.relaxed_contrastive_loss(s2, teacher, block_size=block_size)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, s2)[0])


def test_compile_the_loss_module_without_graph_breaks():
    torch._dynamo.reset()
    teacher = torch.randn(32, 6)
    loss_fn = RelaxedContrastiveLoss(validate=False)
    explanation = torch._dynamo.explain(loss_fn)(torch.randn(32, 4, requires_grad=True), teacher_emb=teacher)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(loss_fn, fullgraph=True)  # inductor, the default backend
    s = torch.randn(32, 4, requires_grad=True)
    loss = compiled(s, teacher_emb=teacher)
    loss.backward()
    torch.testing.assert_close(loss, RelaxedContrastiveLoss()(s, teacher_emb=teacher))


def test_validation_breaks_the_graph_only_when_on():
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(RelaxedContrastiveLoss(validate=True))(
        torch.randn(8, 4), teacher_emb=torch.randn(8, 6)
    )
    assert explanation.graph_break_count > 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("block_size", [0, 2])
def test_non_finite_student_rows_are_named(block_size):
    student = torch.randn(6, 3)
    student[2, 1] = float("nan")
    student[4, 0] = float("inf")
    teacher = torch.randn(6, 5)
    message = r"embeddings must be finite; got 2 non-finite value\(s\) \(NaN or inf\) in 2 row\(s\) \[2, 4\]"
    with pytest.raises(ValueError, match=message):
        RelaxedContrastiveLoss(block_size=block_size)(student, teacher_emb=teacher)
    with pytest.raises(ValueError, match=message):
        fn.relaxed_contrastive_loss(student, teacher, block_size=block_size)
    with pytest.raises(ValueError, match=message):
        fn.relaxed_multi_similarity_loss(student, teacher, block_size=block_size)
    ref = torch.randn(4, 3)
    ref[3] = float("nan")
    with pytest.raises(ValueError, match=r"ref_emb must be finite; got 3 non-finite value\(s\) .* \[3\]"):
        RelaxedContrastiveLoss()(teacher[:, :3], ref_emb=ref, teacher_emb=teacher, teacher_ref_emb=torch.randn(4, 5))


def test_many_bad_rows_are_abbreviated():
    student = torch.full((20, 2), float("nan"))
    with pytest.raises(ValueError, match=r"in 20 row\(s\) \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]"):
        fn.relaxed_contrastive_loss(student, torch.randn(20, 3))


@pytest.mark.parametrize("block_size", [0, 2])
def test_functional_api_never_hides_nan(block_size):
    student = torch.randn(6, 3)
    student[1] = float("nan")
    s = student.requires_grad_()
    loss = fn.relaxed_contrastive_loss(s, torch.randn(6, 5), block_size=block_size, validate=False)
    assert torch.isnan(loss)
    dist = fn.euclidean_distance(student.detach())
    others = torch.arange(6) != 1
    assert torch.isnan(dist[1, others]).all() and torch.isnan(dist[others, 1]).all()  # the self distance stays 0


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("block_size", [None, 0, 4])
def test_empty_batch_gives_a_zero_loss_connected_to_the_graph(loss_name, block_size):
    student = torch.randn(0, 4, requires_grad=True)
    loss = LOSSES[loss_name](block_size=block_size)(student, teacher_emb=torch.randn(0, 6))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert student.grad.shape == (0, 4)
    for function in (fn.relaxed_contrastive_loss, fn.relaxed_multi_similarity_loss):
        value = function(student, torch.randn(0, 6), block_size=block_size)
        assert value.item() == 0.0 and value.requires_grad


def test_empty_reference_set_gives_zero():
    student = torch.randn(3, 4, requires_grad=True)
    ref = torch.randn(0, 4, requires_grad=True)
    teacher, teacher_ref = torch.randn(3, 6), torch.randn(0, 6)
    loss = RelaxedContrastiveLoss()(student, ref_emb=ref, teacher_emb=teacher, teacher_ref_emb=teacher_ref)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


@pytest.mark.parametrize(
    "block_size,error,message",
    [
        (-1, ValueError, r"block_size must be >= 0 \(0: dense, None: auto\); got -1"),
        (2.5, TypeError, r"block_size must be None \(auto\), 0 \(dense\) or a positive int .*got float \(2.5\)"),
        (True, TypeError, r"block_size must be None .*got bool \(True\)"),
    ],
)
def test_bad_block_size(block_size, error, message):
    with pytest.raises(error, match=message):
        RelaxedContrastiveLoss(block_size=block_size)
    with pytest.raises(error, match=message):
        fn.relaxed_contrastive_loss(torch.randn(4, 2), torch.randn(4, 3), block_size=block_size)


def test_bad_validate():
    with pytest.raises(TypeError, match=r"validate must be a bool; got str \('no'\)"):
        RelaxedContrastiveLoss(validate="no")


class _WholeBatchSimilarity(BaseSimilarity):
    supports_blocks = False

    def compute_mat(self, inputs):
        return torch.ones(inputs.num_queries, inputs.num_queries)


def test_a_similarity_without_blocks_is_refused_not_densified():
    with pytest.raises(ValueError, match=r"similarity _WholeBatchSimilarity needs the whole batch .*block_size=0"):
        RelaxedContrastiveLoss(similarity=_WholeBatchSimilarity(), block_size=8)
    loss = RelaxedContrastiveLoss(similarity=_WholeBatchSimilarity(), block_size=0)(
        torch.randn(5, 2), teacher_emb=torch.randn(5, 3)
    )
    assert torch.isfinite(loss)


class _ViewSimilarity(BaseSimilarity):
    """Returns views of one stored matrix from rows(): the engine must only read them."""

    def __init__(self, matrix):
        super().__init__()
        self.matrix = matrix

    def compute_mat(self, inputs):
        return self.matrix

    def rows(self, inputs):
        return lambda start, end: self.matrix[start:end]


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_relaxed_labels_returned_as_views_are_never_written(loss_name):
    student, teacher, _ = _inputs(20, seed=22)
    matrix = fn.gaussian_kernel(teacher, sigma=0.7)
    kept = matrix.clone()
    cls = RelaxedContrastiveLoss if loss_name == "contrastive" else RelaxedMultiSimilarityLoss
    blockwise = _value_and_grads(cls(delta=1.3, similarity=_ViewSimilarity(matrix), block_size=6), student, teacher)
    assert torch.equal(matrix, kept)
    assert_same(blockwise, _value_and_grads(cls(sigma=0.7, delta=1.3, block_size=0), student, teacher))
