"""PML API of the transfer losses: reducers, distances, regularizers, and input validation."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, reducers, regularizers

from pml_relaxed.losses import BaseTransferLoss, RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss
from tests.helpers.reference import loop_relaxed_contrastive

f64 = torch.float64
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def _inputs(n=8):
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, 4, dtype=f64, generator=gen).requires_grad_(), torch.randn(n, 6, dtype=f64, generator=gen)


def _per_anchor(student, teacher):
    loss_fn = RelaxedContrastiveLoss(reducer=reducers.DoNothingReducer())
    return loss_fn(student, teacher_emb=teacher)["loss"]["losses"]


REDUCERS = {
    "mean": lambda: reducers.MeanReducer(),
    "sum": lambda: reducers.SumReducer(),
    "avg_non_zero": lambda: reducers.AvgNonZeroReducer(),
    "threshold": lambda: reducers.ThresholdReducer(low=0.5),
    "divisor": lambda: reducers.DivisorReducer(),
    "per_anchor": lambda: reducers.PerAnchorReducer(),
    "class_weighted": lambda: reducers.ClassWeightedReducer(weights=torch.tensor([1.0, 2.0, 0.5, 1.0])),
    "multiple": lambda: reducers.MultipleReducers({"loss": reducers.SumReducer()}),
    "do_nothing": lambda: reducers.DoNothingReducer(),
}
DISTANCES = {
    "default": lambda: None,
    "lp_normalized": lambda: distances.LpDistance(),
    "l1": lambda: distances.LpDistance(p=1, normalize_embeddings=False),
    "squared": lambda: distances.LpDistance(power=2, normalize_embeddings=False),
    "snr": lambda: distances.SNRDistance(),
    "cosine": lambda: distances.CosineSimilarity(),
    "dot": lambda: distances.DotProductSimilarity(),
}
REGULARIZERS = {
    "none": lambda: None,
    "lp": lambda: regularizers.LpRegularizer(),
    "zero_mean": lambda: regularizers.ZeroMeanRegularizer(),
}


@pytest.mark.parametrize("loss_cls", [RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss])
@pytest.mark.parametrize(
    "reducer_name,distance_name,regularizer_name",
    list(itertools.product(REDUCERS, DISTANCES, REGULARIZERS)),
)
@pytest.mark.parametrize("with_labels", [True, False])
def test_every_reducer_distance_regularizer_works_or_is_refused(
    loss_cls, reducer_name, distance_name, regularizer_name, with_labels
):
    student, teacher = _inputs()
    kwargs = dict(reducer=REDUCERS[reducer_name](), embedding_regularizer=REGULARIZERS[regularizer_name]())
    distance = DISTANCES[distance_name]()
    if distance is not None:
        kwargs["distance"] = distance
    if distance_name in ("cosine", "dot"):
        with pytest.raises(ValueError, match=r"needs a distance \(is_inverted=False\).*got the similarity"):
            loss_cls(**kwargs)
        return
    loss_fn = loss_cls(**kwargs)
    labels = LABELS if with_labels else None
    if reducer_name == "class_weighted" and not with_labels:
        with pytest.raises(ValueError, match="ClassWeightedReducer weights losses by class, so labels are required"):
            loss_fn(student, labels, teacher_emb=teacher)
        return
    out = loss_fn(student, labels, teacher_emb=teacher)
    if reducer_name == "do_nothing":
        assert set(out) == set(loss_fn.sub_loss_names())
        assert out["loss"]["reduction_type"] == "element" and out["loss"]["losses"].shape == (8,)
        return
    assert out.ndim == 0 and torch.isfinite(out)
    out.backward()
    assert torch.isfinite(student.grad).all()


def test_batched_distance_is_refused():
    batched = distances.BatchedDistance(distances.LpDistance(), iter_fn=lambda *a: None)
    with pytest.raises(TypeError, match="distance must be a PML BaseDistance.*got BatchedDistance"):
        RelaxedContrastiveLoss(distance=batched)


def test_reducer_values():
    student, teacher = _inputs()
    per_anchor = _per_anchor(student, teacher).detach()
    formula = loop_relaxed_contrastive(student, teacher).detach()
    torch.testing.assert_close(per_anchor.mean(), formula)

    def run(reducer):
        return RelaxedContrastiveLoss(reducer=reducer)(student, LABELS, teacher_emb=teacher).detach()

    torch.testing.assert_close(run(reducers.MeanReducer()), formula)
    torch.testing.assert_close(run(reducers.SumReducer()), per_anchor.sum())
    torch.testing.assert_close(run(reducers.DivisorReducer()), formula)
    torch.testing.assert_close(run(reducers.PerAnchorReducer()), formula)
    torch.testing.assert_close(run(reducers.ThresholdReducer(low=0.5)), per_anchor[per_anchor > 0.5].mean())
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=f64)
    torch.testing.assert_close(
        run(reducers.ClassWeightedReducer(weights=weights)), (per_anchor * weights[LABELS]).mean()
    )


def test_embedding_regularizer_is_added():
    student, teacher = _inputs()
    loss = RelaxedContrastiveLoss(embedding_regularizer=regularizers.LpRegularizer(), embedding_reg_weight=0.1)(
        student, teacher_emb=teacher
    )
    expected = loop_relaxed_contrastive(student, teacher) + 0.1 * student.norm(dim=1).mean()
    torch.testing.assert_close(loss, expected)


def test_normalized_student_distance_matches_loop_on_normalized_embeddings():
    student, teacher = _inputs()
    loss_fn = RelaxedContrastiveLoss(distance=distances.LpDistance(normalize_embeddings=True))
    loss = loss_fn(student, teacher_emb=teacher)
    normalized = torch.nn.functional.normalize(student, dim=1)
    torch.testing.assert_close(loss, loop_relaxed_contrastive(normalized, teacher))


def test_records_stats():
    student, teacher = _inputs()
    loss_fn = RelaxedContrastiveLoss(collect_stats=True)
    loss_fn(student, teacher_emb=teacher)
    assert loss_fn.num_pairs == 8 * 7
    assert 0 < loss_fn.avg_relaxed_label < 1
    assert loss_fn.avg_relative_dist > 0


# ---------------------------------------------------------------- bad input

BAD_INPUTS = [
    (dict(teacher_emb=None), ValueError, r"teacher_emb is required: pass the frozen teacher's embeddings"),
    (
        dict(teacher_emb=torch.randn(7, 6)),
        ValueError,
        r"teacher_emb must have one row per row of embeddings: expected 8 rows, got 7",
    ),
    (
        dict(teacher_emb=torch.randn(8, 6, 1)),
        ValueError,
        r"teacher_emb must be a 2D tensor of shape \(batch_size, teacher_dim\); got a 3D tensor of shape \(8, 6, 1\)",
    ),
    (
        dict(teacher_emb=torch.tensor([[float("nan")] * 6] + [[0.0] * 6] * 7)),
        ValueError,
        r"teacher_emb must be finite; got 6 non-finite value\(s\)",
    ),
    (dict(teacher_emb=torch.full((8, 6), float("inf"))), ValueError, r"teacher_emb must be finite"),
    (dict(teacher_emb=[[0.0] * 6] * 8), TypeError, r"teacher_emb must be a torch.Tensor of shape .* got list"),
    (dict(teacher_emb=torch.ones(8, 6, dtype=torch.long)), TypeError, r"teacher_emb must be a floating-point tensor"),
    (
        dict(teacher_emb=torch.randn(8, 6), ref_emb=torch.randn(5, 4)),
        ValueError,
        r"teacher_ref_emb is required: ref_emb was given",
    ),
    (
        dict(teacher_emb=torch.randn(8, 6), teacher_ref_emb=torch.randn(5, 6)),
        ValueError,
        r"teacher_ref_emb was given without ref_emb",
    ),
    (
        dict(teacher_emb=torch.randn(8, 6), ref_emb=torch.randn(5, 4), teacher_ref_emb=torch.randn(4, 6)),
        ValueError,
        r"teacher_ref_emb must have one row per row of ref_emb: expected 5 rows, got 4",
    ),
    (
        dict(teacher_emb=torch.randn(8, 6), ref_emb=torch.randn(5, 3), teacher_ref_emb=torch.randn(5, 6)),
        ValueError,
        r"ref_emb must have the same dimension as embeddings: expected 4 columns, got 3",
    ),
    (
        dict(teacher_emb=torch.randn(8, 6), ref_emb=torch.randn(5, 4), teacher_ref_emb=torch.randn(5, 2)),
        ValueError,
        r"teacher_ref_emb must have the same dimension as teacher_emb: expected 6 columns, got 2",
    ),
    (
        dict(teacher_emb=torch.randn(8, 6), labels=torch.zeros(7, dtype=torch.long)),
        ValueError,
        r"labels must be a 1D tensor with one label per row of embeddings: expected shape \(8,\), got \(7,\)",
    ),
]


@pytest.mark.parametrize("loss_cls", [RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss])
@pytest.mark.parametrize("kwargs,error,message", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(loss_cls, kwargs, error, message):
    kwargs = dict(kwargs)
    labels = kwargs.pop("labels", None)
    with pytest.raises(error, match=message):
        loss_cls()(torch.randn(8, 4), labels, **kwargs)


@pytest.mark.parametrize("loss_cls", [RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss])
def test_bad_student_embeddings(loss_cls):
    with pytest.raises(
        ValueError, match=r"embeddings must be a 2D tensor of shape \(batch_size, student_dim\); got a 1D"
    ):
        loss_cls()(torch.randn(8), teacher_emb=torch.randn(8, 3))
    with pytest.raises(TypeError, match=r"embeddings must be a floating-point tensor"):
        loss_cls()(torch.ones(8, 2, dtype=torch.long), teacher_emb=torch.randn(8, 3))


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(sigma=0.0), ValueError, r"sigma must be > 0; got 0.0"),
        (dict(sigma=-1.0), ValueError, r"sigma must be > 0; got -1.0"),
        (dict(sigma="1"), TypeError, r"sigma must be a real number; got str"),
        (dict(sigma=float("nan")), ValueError, r"sigma must be finite; got nan"),
        (dict(delta=-0.1), ValueError, r"delta must be >= 0; got -0.1"),
        (dict(similarity="gaussian"), TypeError, r"similarity must be a pml_relaxed similarity .* got str"),
    ],
)
def test_bad_hyper_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        RelaxedContrastiveLoss(**kwargs)


def test_sigma_with_custom_similarity_is_refused():
    from pml_relaxed.similarities import LabelSimilarity

    with pytest.raises(ValueError, match=r"sigma and normalize_teacher configure the default GaussianKernel"):
        RelaxedContrastiveLoss(sigma=0.5, similarity=LabelSimilarity())


@pytest.mark.parametrize(
    "kwargs,message", [(dict(alpha=0), r"alpha must be > 0; got 0"), (dict(beta=-2), r"beta must be > 0; got -2")]
)
def test_bad_multi_similarity_scales(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RelaxedMultiSimilarityLoss(**kwargs)


def test_bad_indices_tuple():
    with pytest.raises(TypeError, match=r"indices_tuple must be PML pairs .* got a tuple of length 2"):
        pairs = (torch.tensor([0]), torch.tensor([1]))
        RelaxedContrastiveLoss()(torch.randn(4, 2), None, pairs, teacher_emb=torch.randn(4, 3))


@pytest.mark.parametrize("loss_cls", [RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss])
def test_misspelled_keyword_is_not_swallowed(loss_cls):
    with pytest.raises(TypeError, match="unexpected keyword argument 'sigmaa'"):
        loss_cls(sigmaa=1.0)


class _CosineMatching(BaseTransferLoss):
    """Mean squared difference of student and teacher cosine similarities, one row per anchor."""

    def compute_transfer_loss(self, batch):
        s = F.normalize(batch.embeddings, dim=1) @ F.normalize(batch.ref_emb, dim=1).T
        t = F.normalize(batch.teacher_emb, dim=1) @ F.normalize(batch.teacher_ref_emb, dim=1).T
        return self.element_loss_dict((s - t).pow(2).mean(dim=1), batch.embeddings)


def _cosine_reference(student, teacher, ref_student, ref_teacher):
    """Explicit loops over anchors and references (float64)."""
    rows = []
    for i in range(student.shape[0]):
        terms = [
            (
                torch.cosine_similarity(student[i], ref_student[j], dim=0)
                - torch.cosine_similarity(teacher[i], ref_teacher[j], dim=0)
            )
            ** 2
            for j in range(ref_student.shape[0])
        ]
        rows.append(torch.stack(terms).mean())
    return torch.stack(rows).mean()


def test_compute_transfer_loss_gets_the_resolved_batch():
    student, teacher = _inputs()
    loss = _CosineMatching()(student, teacher_emb=teacher)
    assert torch.allclose(loss, _cosine_reference(student, teacher, student, teacher))
    ref_student, ref_teacher = torch.randn(5, 4, dtype=f64), torch.randn(5, 6, dtype=f64)
    loss = _CosineMatching()(student, ref_emb=ref_student, teacher_emb=teacher, teacher_ref_emb=ref_teacher)
    assert torch.allclose(loss, _cosine_reference(student, teacher, ref_student, ref_teacher))


def test_transfer_batch_says_whether_the_reference_set_is_the_batch():
    seen = []

    class Spy(_CosineMatching):
        def compute_transfer_loss(self, batch):
            seen.append((batch.self_reference, [t is None for t in batch.explicit_reference()]))
            return super().compute_transfer_loss(batch)

    student, teacher = _inputs()
    Spy()(student, teacher_emb=teacher)
    Spy()(student, ref_emb=student[:3], teacher_emb=teacher, teacher_ref_emb=teacher[:3])
    assert seen == [(True, [True, True]), (False, [False, False])]


def test_a_pml_style_compute_loss_override_still_works():
    class OldStyle(BaseTransferLoss):
        def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels, teacher_emb, teacher_ref_emb):
            return self.element_loss_dict((embeddings.sum(dim=1) - teacher_emb.sum(dim=1)) ** 2, embeddings)

    student, teacher = _inputs()
    expected = ((student.sum(dim=1) - teacher.sum(dim=1)) ** 2).mean()
    assert torch.allclose(OldStyle()(student, teacher_emb=teacher), expected)


def test_missing_compute_transfer_loss_names_the_class():
    student, teacher = _inputs()
    with pytest.raises(NotImplementedError, match="BaseTransferLoss must implement compute_transfer_loss"):
        BaseTransferLoss()(student, teacher_emb=teacher)


def test_support_flags_refuse_what_the_loss_cannot_take():
    class Fixed(_CosineMatching):
        supports_distance = False
        supports_indices_tuple = False
        supports_ref_emb = False

    with pytest.raises(
        ValueError,
        match=r"Fixed compares embeddings with the fixed formula .* distance cannot be set; "
        r"got distance=.*LpDistance",
    ):
        Fixed(distance=distances.LpDistance())
    student, teacher = _inputs()
    pairs = tuple(torch.tensor([0]) for _ in range(4))
    with pytest.raises(ValueError, match="Fixed does not work on mined pairs .* indices_tuple is not supported"):
        Fixed()(student, indices_tuple=pairs, teacher_emb=teacher)
    with pytest.raises(ValueError, match="Fixed compares each sample .* ref_emb/teacher_ref_emb are not supported"):
        Fixed()(student, ref_emb=student, teacher_emb=teacher, teacher_ref_emb=teacher)
    with pytest.raises(ValueError, match="ref_emb/teacher_ref_emb are not supported"):
        Fixed()(student, teacher_emb=teacher, teacher_ref_emb=teacher)
    # the default flags accept all three
    _CosineMatching(distance=distances.LpDistance())(student, indices_tuple=pairs, teacher_emb=teacher)
