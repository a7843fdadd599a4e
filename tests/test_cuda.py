"""GPU checks: every loss, miner and kernel gives on CUDA what it gives on the CPU, and the bench trains there.

Skipped without a CUDA device (CI has none); run them on a GPU machine with ``pytest tests/test_cuda.py``, or
with the other GPU checks with ``python benchmarks/gpu_check.py`` (docs/install.md, "Checking a GPU machine").
``PML_RELAXED_TEST_DEVICE`` names another device to check (e.g. ``mps``; ``cpu`` dry-runs the file itself).
"""

import copy
import json
import logging
import os

import pytest
import torch

from pml_relaxed import _relaxed_engine as bw
from pml_relaxed import functional as fn
from pml_relaxed.evaluation import RecallAtKCalculator, backend, compute_embeddings, evaluate_embeddings, faiss_backend
from pml_relaxed.losses import (
    DarkRankLoss,
    FitNetLoss,
    PKTLoss,
    RelaxedContrastiveLoss,
    RelaxedMultiSimilarityLoss,
    RKDLoss,
)
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.similarities import GaussianKernel, LabelSimilarity, MixedSimilarity
from pml_relaxed.trainers import EmbeddingTransfer
from pml_relaxed_bench.cli import BenchConfig, main
from pml_relaxed_bench.methods import METHODS

DEVICE = os.environ.get("PML_RELAXED_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")

LOSSES = {
    "relaxed_contrastive": lambda: RelaxedContrastiveLoss(),
    "relaxed_contrastive_delta2_mixed": lambda: RelaxedContrastiveLoss(
        delta=2.0, similarity=MixedSimilarity(GaussianKernel(sigma=0.5), LabelSimilarity(), label_weight=0.5)
    ),
    "relaxed_ms": lambda: RelaxedMultiSimilarityLoss(),
    "rkd": lambda: RKDLoss(),
    "pkt": lambda: PKTLoss(),
    "darkrank": lambda: DarkRankLoss(),
    "darkrank_normalized": lambda: DarkRankLoss(normalize_embeddings=True),
    "fitnet_projection": lambda: FitNetLoss(student_dim=6, teacher_dim=10),
}


def _inputs(n=24, student_dim=6, teacher_dim=10, duplicate=True):
    student = torch.randn(n, student_dim, dtype=torch.float64)
    if duplicate:
        student[1] = student[0]  # duplicate rows: zero distances must keep gradients finite on the GPU too
    teacher = torch.nn.functional.normalize(torch.randn(n, teacher_dim, dtype=torch.float64), dim=1)
    labels = torch.arange(n // 2).repeat_interleave(2)
    return student, teacher, labels


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_values_and_gradients_match_the_cpu(name):
    student, teacher, labels = _inputs()
    cpu_loss = LOSSES[name]().double()
    gpu_loss = copy.deepcopy(cpu_loss).to(DEVICE)
    results = {}
    for key, device, loss_fn in (("reference", "cpu", cpu_loss), ("device", DEVICE, gpu_loss)):
        s = student.clone().to(device).requires_grad_(True)
        value = loss_fn(s, labels.to(device), teacher_emb=teacher.to(device))
        value.backward()
        assert value.device.type == torch.device(device).type
        params = [p.grad.cpu() for p in loss_fn.parameters() if p.grad is not None]
        results[key] = (value.detach().cpu(), s.grad.cpu(), params)
    (value, grad, param_grads), (ref_value, ref_grad, ref_param_grads) = results["device"], results["reference"]
    torch.testing.assert_close(value, ref_value, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    assert torch.isfinite(grad).all()
    assert len(param_grads) == len(ref_param_grads)
    for param_grad, ref_param_grad in zip(param_grads, ref_param_grads):
        torch.testing.assert_close(param_grad, ref_param_grad, rtol=1e-8, atol=1e-10)


def test_relaxed_contrastive_gradcheck_on_cuda():
    student, teacher, _ = _inputs(n=8, student_dim=3, teacher_dim=4, duplicate=False)
    loss_fn = RelaxedContrastiveLoss(delta=1.5).to(DEVICE)
    s = student.to(DEVICE).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, teacher_emb=teacher.to(DEVICE)), (s,))


def test_miner_and_kernels_match_the_cpu():
    student, teacher, labels = _inputs(n=16)
    miner = TeacherSimilarityMiner(pos_topk=2)
    cpu_tuples = miner(student, labels, teacher_emb=teacher)
    gpu_tuples = miner(student.to(DEVICE), labels.to(DEVICE), teacher_emb=teacher.to(DEVICE))
    assert all(t.device.type == torch.device(DEVICE).type for t in gpu_tuples)
    for cpu_t, gpu_t in zip(cpu_tuples, gpu_tuples):
        torch.testing.assert_close(gpu_t.cpu(), cpu_t)
    kernel = MixedSimilarity(GaussianKernel(sigma=0.7), LabelSimilarity(), label_weight=0.3)
    torch.testing.assert_close(
        kernel(teacher.to(DEVICE), labels=labels.to(DEVICE)).cpu(),
        kernel(teacher, labels=labels),
        rtol=1e-12,
        atol=1e-12,
    )


def test_compute_embeddings_on_cuda():
    model = torch.nn.Linear(5, 3).to(DEVICE)
    dataset = torch.utils.data.TensorDataset(torch.randn(10, 5), torch.arange(10))
    embeddings, labels = compute_embeddings(model, dataset, batch_size=4, device=DEVICE, show_progress=False)
    expected = model(dataset.tensors[0].to(DEVICE)).detach().cpu()
    torch.testing.assert_close(embeddings.cpu(), expected)
    assert labels.tolist() == list(range(10))


def test_bench_trains_every_method_on_cuda(tmp_path):
    argv = [
        "--dataset",
        "digits",
        "--methods",
        *METHODS,
        "--settings",
        "dim_reduction",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--teacher-epochs",
        "1",
        "--no-progress",
        "--device",
        DEVICE,
        "--output-dir",
        str(tmp_path),
    ]
    main(BenchConfig.from_args(argv), argv)
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert {r["method"] for r in runs if r["kind"] != "teacher"} == set(METHODS)
    for r in runs:
        assert all(torch.isfinite(torch.tensor(v)) for v in r["metrics"].values()), r["method"]
        assert r["throughput"] > 0
    metadata = json.loads((tmp_path / "results.json").read_text())["metadata"]
    if DEVICE == "cuda":
        assert torch.cuda.get_device_name(0) in metadata["machine"]
    # the bench evaluates on --device: FAISS on the GPU exactly when this FAISS is a GPU build
    assert {r["hparams"]["faiss_backend"] for r in runs} == {faiss_backend(DEVICE)} == {metadata["faiss_backend"]}
    assert faiss_backend(DEVICE) == ("gpu" if DEVICE.startswith("cuda") and backend.faiss_gpu_count() > 0 else "cpu")


@pytest.mark.parametrize("name", ["relaxed_contrastive", "relaxed_ms"])
def test_blockwise_matches_dense_on_the_device(name):
    student, teacher, labels = _inputs(n=300)
    student, teacher = student.to(DEVICE).requires_grad_(), teacher.to(DEVICE)
    results = []
    for block_size in (0, 37):
        loss_fn = (RelaxedContrastiveLoss if name == "relaxed_contrastive" else RelaxedMultiSimilarityLoss)(
            block_size=block_size
        )
        loss = loss_fn(student, teacher_emb=teacher)
        results.append((loss, torch.autograd.grad(loss, student)[0]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_students_on_the_device(dtype):
    student = (torch.randn(1000, 64) * 20).to(DEVICE)
    teacher = torch.randn(1000, 128).to(DEVICE)
    half = student.to(dtype).requires_grad_()
    loss = RelaxedContrastiveLoss()(half, teacher_emb=teacher)
    loss.backward()
    expected = RelaxedContrastiveLoss(block_size=0)(half.detach().float(), teacher_emb=teacher)
    assert loss.dtype == torch.float32 and half.grad.dtype == dtype and torch.isfinite(half.grad).all()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    with torch.autocast(DEVICE if DEVICE != "cpu" else "cpu", dtype=dtype):
        loss_amp = RelaxedContrastiveLoss()(student, teacher_emb=teacher)
    assert loss_amp.dtype == torch.float32 and torch.isfinite(loss_amp)


def _clustered(n_per_class=40, classes=8, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = 6.0 * torch.randn(classes, dim, generator=generator)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centers[labels] + torch.randn(len(labels), dim, generator=generator), labels


needs_faiss_gpu = pytest.mark.skipif(
    DEVICE != "cuda" or backend.faiss_gpu_count() == 0, reason="needs CUDA and a FAISS GPU build (the [gpu] extra)"
)


@needs_faiss_gpu
def test_evaluation_uses_the_faiss_gpu_index_and_kmeans_and_matches_the_cpu(monkeypatch):
    import faiss

    to_gpu_calls = []
    real_to_gpu = faiss.index_cpu_to_all_gpus
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", lambda *a, **k: to_gpu_calls.append(1) or real_to_gpu(*a, **k))
    embeddings, labels = _clustered()
    assert faiss_backend() == "gpu"
    calc = RecallAtKCalculator(ks=(1, 4), include=("recall_at_1", "recall_at_4", "NMI"))
    assert calc.faiss_backend == "gpu" and calc.device.type == "cuda" and calc.kmeans_func.kwargs["gpu"] is True
    gpu_scores = evaluate_embeddings(embeddings, labels)  # automatic: the GPU
    assert len(to_gpu_calls) >= 2, "the k-NN index and the k-means index should both go to the GPU"
    calls_on_gpu = len(to_gpu_calls)
    cpu_scores = evaluate_embeddings(embeddings, labels, device="cpu")
    assert len(to_gpu_calls) == calls_on_gpu, "device='cpu' must keep FAISS on the CPU"
    assert list(gpu_scores) == list(cpu_scores)
    for name in gpu_scores:  # exact search: the same neighbours (k-means may end elsewhere: NMI only sane)
        if name != "NMI":
            assert gpu_scores[name] == pytest.approx(cpu_scores[name], abs=1e-6), name
    assert 0.0 < gpu_scores["NMI"] <= 1.0
    accuracy = calc.get_accuracy(embeddings, labels)
    assert accuracy["recall_at_1"] == pytest.approx(cpu_scores["recall_at_1"], abs=1e-6)


@pytest.mark.skipif(DEVICE != "cuda" or backend.faiss_gpu_count() > 0, reason="needs CUDA beside a CPU-only FAISS")
def test_cuda_beside_cpu_faiss_falls_back_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(backend, "_NOTED", set())
    embeddings, labels = _clustered()
    with caplog.at_level(logging.INFO, logger="pml_relaxed.evaluation.backend"):
        assert faiss_backend() == faiss_backend("cuda") == "cpu"
        scores = evaluate_embeddings(embeddings, labels)
        on_cuda = evaluate_embeddings(embeddings, labels, device="cuda")  # tensors on CUDA, FAISS on the CPU
        calc = RecallAtKCalculator(include=("recall_at_1",))
    assert scores == evaluate_embeddings(embeddings, labels, device="cpu")
    assert on_cuda["recall_at_1"] == pytest.approx(scores["recall_at_1"])
    assert calc.faiss_backend == "cpu" and calc.device.type == "cpu"
    messages = [r.getMessage() for r in caplog.records if r.name == "pml_relaxed.evaluation.backend"]
    assert len(messages) == 1 and "no GPU support" in messages[0] and "pml-relaxed[gpu]" in messages[0]


@pytest.mark.parametrize("teacher_side, teacher_dtype", [("device", torch.float64), ("cpu", torch.bfloat16)])
def test_embedding_transfer_with_the_teacher_on_another_device_and_dtype(teacher_side, teacher_dtype):
    student_device = "cpu" if teacher_side == "device" else DEVICE
    teacher_device = DEVICE if teacher_side == "device" else "cpu"
    seen = {}

    class Spy(torch.nn.Linear):
        def forward(self, x):
            seen["student_input"] = x.detach().clone()
            return super().forward(x)

    class Recording(RelaxedContrastiveLoss):
        def forward(
            self,
            embeddings,
            labels=None,
            indices_tuple=None,
            ref_emb=None,
            ref_labels=None,
            *,
            teacher_emb,
            teacher_ref_emb=None,
        ):
            seen.update(embeddings=embeddings.detach(), labels=labels, teacher_emb=teacher_emb.detach())
            return super().forward(embeddings, labels, indices_tuple, teacher_emb=teacher_emb)

    student = Spy(12, 4).to(student_device)
    teacher = torch.nn.Sequential(torch.nn.Linear(12, 6), torch.nn.Tanh())
    trainer = EmbeddingTransfer(
        models={"trunk": student, "teacher": teacher},
        optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.1)},
        batch_size=16,
        loss_funcs={"transfer_loss": Recording()},
        dataset=torch.utils.data.TensorDataset(torch.randn(32, 12)),
        data_and_label_getter=lambda batch: (batch[0], None),
        iterations_per_epoch=1,
        dataloader_num_workers=0,
        data_device=torch.device(student_device),
        teacher_dtype=teacher_dtype,
        teacher_device=teacher_device,
    )
    first = next(teacher.parameters())
    assert first.dtype == teacher_dtype and first.device.type == torch.device(teacher_device).type
    trainer.train(num_epochs=1)
    assert seen["labels"] is None
    assert seen["teacher_emb"].device == seen["embeddings"].device and seen["teacher_emb"].dtype == torch.float32
    with torch.no_grad():  # the reference: the teacher in its own dtype, on its own device, on the student's batch
        expected = teacher(seen["student_input"].to(teacher_device, teacher_dtype)).float().to(student_device)
    torch.testing.assert_close(seen["teacher_emb"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["relaxed_contrastive", "relaxed_ms"])
def test_the_blockwise_loop_never_synchronises_with_the_host(name):
    """Forward and backward of the blockwise engine (validate=False, collect_stats on) under CUDA's sync debug
    mode "error": any .item(), bool(tensor) or host read in the block loop raises. The upstream gradient of a
    sum is an expanded scalar, so the backward's constant check reads no value either."""
    student, teacher, _ = _inputs(n=300)
    student, teacher = student.to(DEVICE).requires_grad_(), teacher.to(DEVICE)
    cls = RelaxedContrastiveLoss if name == "relaxed_contrastive" else RelaxedMultiSimilarityLoss
    loss_fn = cls(block_size=37, validate=False, collect_stats=True)
    relaxed_labels = fn.gaussian_kernel_rows(teacher)  # the losses' default kernel
    problem = bw.RelaxedProblem(
        loss_fn.block_distance(), loss_fn.row_function(), relaxed_labels, None, True, stats={}, one_pass=True
    )
    on_cuda = DEVICE.startswith("cuda")
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        per_anchor = bw.relaxed_per_anchor(student, None, problem, 37)
        (grad,) = torch.autograd.grad(per_anchor.sum(), student)
    finally:
        if on_cuda:
            torch.cuda.set_sync_debug_mode("default")
    expected = cls(block_size=0)(student, teacher_emb=teacher) * student.shape[0]
    torch.testing.assert_close(per_anchor.sum(), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grad, torch.autograd.grad(expected, student)[0], rtol=1e-9, atol=1e-9)
