import numpy as np
import pytest
import torch
from pytorch_metric_learning.testers import GlobalEmbeddingSpaceTester
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from torch.utils.data import DataLoader, TensorDataset

from pml_relaxed.evaluation import (
    DEFAULT_METRICS,
    RecallAtKCalculator,
    compute_embeddings,
    evaluate_embeddings,
)
from pml_relaxed.models import HashedNgramEmbedder, TextCollator

CPU = torch.device("cpu")
KS = (1, 2, 4, 8)


def brute_force_recall(query, query_labels, reference, reference_labels, ks, ref_includes_query):
    """Recall@K by sorting all distances; lone queries (no relevant reference) are skipped."""
    q, r = np.asarray(query, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    dist = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    if ref_includes_query:
        dist[np.arange(len(q)), np.arange(len(q))] = np.inf
    order = np.argsort(dist, axis=1)
    hits = {k: [] for k in ks}
    for i in range(len(q)):
        relevant = reference_labels == query_labels[i]
        if ref_includes_query:
            relevant[i] = False
        if not relevant.any():
            continue
        for k in ks:
            hits[k].append(relevant[order[i, :k]].any())
    return {f"recall_at_{k}": float(np.mean(hits[k])) for k in ks}


def random_problem(n=90, dim=4, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    labels[-1] = classes  # one lone query, which must be ignored
    centers = rng.normal(size=(classes + 1, dim))
    x = centers[labels] * 0.7 + rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def test_matches_brute_force_with_query_in_reference():
    x, y = random_problem()
    expected = brute_force_recall(x, y, x, y, KS, True)
    got = RecallAtKCalculator(ks=KS, include=tuple(expected), device=CPU).get_accuracy(x, y)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.0 < got["recall_at_1"] < got["recall_at_8"] < 1.0  # a problem that tells metrics apart


def test_matches_brute_force_with_separate_reference_set():
    x, y = random_problem(n=120, seed=1)
    query, qy, ref, ry = x[:40], y[:40], x[40:], y[40:]
    expected = brute_force_recall(query, qy, ref, ry, (1, 3, 5), False)
    calc = RecallAtKCalculator(ks=(1, 3, 5), include=tuple(expected), device=CPU)
    assert calc.get_accuracy(query, qy, ref, ry, ref_includes_query=False) == pytest.approx(expected, abs=1e-12)


def test_recall_at_1_equals_precision_at_1_and_is_monotone_in_k():
    x, y = random_problem(seed=2)
    got = RecallAtKCalculator(ks=(1, 2, 3, 4, 8, 16), device=CPU).get_accuracy(x, y)
    assert got["recall_at_1"] == pytest.approx(got["precision_at_1"], abs=1e-12)
    values = [got[f"recall_at_{k}"] for k in (1, 2, 3, 4, 8, 16)]
    assert values == sorted(values) and values[0] < values[-1]


def test_pml_metrics_are_unchanged_and_map_at_r_uses_max_bin_count():
    x, y = random_problem(seed=3)
    metrics = ("mean_average_precision_at_r", "r_precision", "precision_at_1")
    ours = RecallAtKCalculator(include=metrics + ("recall_at_8",), device=CPU).get_accuracy(x, y)
    pml = AccuracyCalculator(include=metrics, k="max_bin_count", device=CPU).get_accuracy(x, y)
    for m in metrics:
        assert ours[m] == pytest.approx(pml[m], abs=1e-12)


def test_neighbour_count_is_raised_to_the_largest_k_and_capped_by_the_reference_size():
    x, y = random_problem(seed=4)
    expected = brute_force_recall(x, y, x, y, (8,), True)
    # k=1 alone would only retrieve one neighbour; recall_at_8 needs eight.
    assert RecallAtKCalculator(ks=(8,), k=1, device=CPU).get_accuracy(x, y)["recall_at_8"] == pytest.approx(
        expected["recall_at_8"]
    )
    tiny = np.array([[0.0], [0.1], [5.0], [5.1], [9.0]], dtype=np.float32)
    tiny_labels = np.array([0, 1, 0, 1, 0])
    got = RecallAtKCalculator(ks=(1, 8), include=("recall_at_1", "recall_at_8"), device=CPU).get_accuracy(
        tiny, tiny_labels
    )
    assert got == {"recall_at_1": 0.0, "recall_at_8": 1.0}


def test_avg_of_avgs_and_per_class():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [20.0]], dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1])
    # Class 0: all 3 hit at K=1. Class 1: 5.0 is nearest to 0.2 (miss), 20.0 to 5.0 (hit).
    per_class = RecallAtKCalculator(ks=(1,), include=("recall_at_1",), return_per_class=True, device=CPU)
    assert per_class.get_accuracy(x, y)["recall_at_1"] == [1.0, 0.5]
    avg = RecallAtKCalculator(ks=(1,), include=("recall_at_1",), avg_of_avgs=True, device=CPU)
    assert avg.get_accuracy(x, y)["recall_at_1"] == pytest.approx(0.75)
    plain = RecallAtKCalculator(ks=(1,), include=("recall_at_1",), device=CPU)
    assert plain.get_accuracy(x, y)["recall_at_1"] == pytest.approx(4 / 5)


def test_works_inside_a_pml_tester():
    x, y = random_problem(seed=5)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    calc = RecallAtKCalculator(include=("recall_at_1", "recall_at_4", "precision_at_1"), device=CPU)
    tester = GlobalEmbeddingSpaceTester(accuracy_calculator=calc, dataloader_num_workers=0, batch_size=32)
    accuracies = tester.test({"val": dataset}, epoch=1, trunk_model=torch.nn.Identity())
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)  # the tester L2-normalises by default
    expected = brute_force_recall(xn, y, xn, y, (1, 4), True)
    assert accuracies["val"]["recall_at_1_level0"] == pytest.approx(expected["recall_at_1"])
    assert accuracies["val"]["recall_at_4_level0"] == pytest.approx(expected["recall_at_4"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"ks": (0, 1)}, ValueError, r"ks must hold ints >= 1; got 0"),
        ({"ks": "1"}, TypeError, "ks must be a tuple of ints"),
        ({"ks": (1.0,)}, TypeError, "ks must hold ints >= 1; got 1.0"),
        ({"include": ("recall_at_16",)}, ValueError, r"ks=\(1, 2, 4, 8\) has no K=16"),
        ({"exclude": "NMI"}, TypeError, "exclude must be a tuple of metric names; got str"),
        ({"include": ("bogus",)}, ValueError, "Primary metrics must be one or more of"),
        ({"k": 0}, ValueError, "k must be an integer greater than 0"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        RecallAtKCalculator(device=CPU, **kwargs)


# ----------------------------------------------------------------------------- evaluate_embeddings


def test_evaluate_embeddings_defaults_and_brute_force():
    x, y = random_problem(n=200, classes=5, seed=6)
    results = evaluate_embeddings(torch.from_numpy(x), torch.from_numpy(y))
    assert tuple(results) == DEFAULT_METRICS
    assert all(isinstance(v, float) for v in results.values())
    expected = brute_force_recall(x, y, x, y, KS, True)
    for name, value in expected.items():
        assert results[name] == pytest.approx(value)
    assert 0.0 < results["NMI"] < 1.0
    assert results == evaluate_embeddings(x, y)  # numpy input, deterministic k-means


def test_evaluate_embeddings_normalize_and_custom_k():
    x, y = random_problem(seed=7)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    got = evaluate_embeddings(x * np.arange(1, 91, dtype=np.float32)[:, None], y, ("recall_at_3",), normalize=True)
    assert got == pytest.approx(brute_force_recall(xn, y, xn, y, (3,), True))


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (
            (torch.zeros(4, 2), torch.zeros(3)),
            {},
            ValueError,
            r"labels must be a 1D tensor .* expected shape \(4,\), got \(3,\)",
        ),
        ((torch.zeros(4), torch.zeros(4)), {}, ValueError, "embeddings must be a 2D tensor"),
        (([[0.0]], torch.zeros(1)), {}, TypeError, "embeddings must be a torch.Tensor or numpy array; got list"),
        ((torch.full((2, 2), float("nan")), torch.zeros(2)), {}, ValueError, "embeddings must be finite"),
        (
            (torch.zeros(4, 2), torch.zeros(4)),
            {"metrics": ("recall_at_1", "nope")},
            ValueError,
            r"unknown name\(s\) \['nope'\]",
        ),
        ((torch.zeros(4, 2), torch.zeros(4)), {"metrics": ("recall_at_0",)}, ValueError, "K >= 1; got 'recall_at_0'"),
        ((torch.zeros(4, 2), torch.zeros(4)), {"metrics": "NMI"}, TypeError, "metrics must be a tuple"),
        ((torch.zeros(4, 2), torch.zeros(4)), {"metrics": ()}, ValueError, "at least one metric"),
    ],
)
def test_evaluate_embeddings_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate_embeddings(*args, **kwargs)


# ----------------------------------------------------------------------------- compute_embeddings


def test_compute_embeddings_runs_in_eval_mode_and_restores_train_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5))
    x, y = torch.randn(10, 4), torch.arange(10)
    emb, labels = compute_embeddings(model, TensorDataset(x, y), batch_size=3, show_progress=False)
    assert model.training
    torch.testing.assert_close(emb, model[0](x).detach())
    assert torch.equal(labels, y)
    loader_emb, none_labels = compute_embeddings(model, DataLoader(x, batch_size=4), show_progress=False)
    torch.testing.assert_close(loader_emb, emb)
    assert none_labels is None


def test_compute_embeddings_on_texts_with_and_without_collator():
    model = HashedNgramEmbedder(num_buckets=2**10, hidden_dim=8, mlp_hidden_dims=(), embedding_dim=4)
    data = [("lost card", 0), ("card lost", 0), ("exchange rate", 1)]
    emb, labels = compute_embeddings(model, data, batch_size=2, show_progress=False)
    packed, _ = compute_embeddings(model, data, batch_size=2, collate_fn=TextCollator(model), show_progress=False)
    assert emb.shape == (3, 4) and labels.tolist() == [0, 0, 1]
    torch.testing.assert_close(packed, emb)


def test_compute_embeddings_errors():
    model = torch.nn.Linear(2, 2)
    data = TensorDataset(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="model must be callable"):
        compute_embeddings("model", data)
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        compute_embeddings(model, data, batch_size=0)
    with pytest.raises(TypeError, match="map-style Dataset or a DataLoader; got int"):
        compute_embeddings(model, 5)
    with pytest.raises(ValueError, match="yielded no batches"):
        compute_embeddings(model, TensorDataset(torch.zeros(0, 2)), show_progress=False)
    with pytest.raises(TypeError, match=r"2D \(batch, dim\) tensor; got \(2,\)"):
        compute_embeddings(lambda x: x.sum(1), TensorDataset(torch.zeros(2, 2)), show_progress=False)
