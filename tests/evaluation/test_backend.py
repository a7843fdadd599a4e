"""The FAISS backend choice (GPU where CUDA and a FAISS GPU build are present, else CPU with a note), on a CPU machine.

``torch.cuda.is_available`` and ``faiss.get_num_gpus`` are mocked to play the four machines; the GPU path itself
is checked on a GPU in tests/test_cuda.py.
"""

import logging

import faiss
import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.inference import FaissKMeans

from pml_relaxed.evaluation import RecallAtKCalculator, backend, evaluate_embeddings, faiss_backend

LOGGER_NAME = "pml_relaxed.evaluation.backend"


@pytest.fixture
def machine(monkeypatch):
    """``machine(cuda, faiss_gpus)`` makes torch and FAISS report that machine; notes start afresh."""
    monkeypatch.setattr(backend, "_NOTED", set())

    def set_machine(cuda: bool, faiss_gpus: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: faiss_gpus)

    return set_machine


def notes(caplog):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER_NAME]


@pytest.mark.parametrize(
    "cuda, faiss_gpus, device, expected",
    [
        (True, 1, None, "gpu"),
        (True, 2, "cuda", "gpu"),
        (True, 1, "cuda:0", "gpu"),
        (True, 1, torch.device("cuda", 1), "gpu"),
        (True, 1, "cpu", "cpu"),
        (True, 1, torch.device("cpu"), "cpu"),
        (True, 0, None, "cpu"),
        (True, 0, "cuda", "cpu"),
        (False, 1, None, "cpu"),
        (False, 0, "cuda", "cpu"),
    ],
)
def test_faiss_backend_is_gpu_only_with_cuda_and_a_faiss_gpu_build(machine, caplog, cuda, faiss_gpus, device, expected):
    machine(cuda, faiss_gpus)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        assert faiss_backend(device) == expected
    assert notes(caplog) == [], "faiss_backend only answers; it logs nothing"


NO_FAISS_GPU = (
    "FAISS evaluation runs on the CPU: this FAISS build has no GPU support (faiss.get_num_gpus() == 0); install "
    "the FAISS GPU build with pip install 'pml-relaxed[gpu]' (faiss-gpu; if faiss-cpu's files were written over "
    "it, pip install --force-reinstall --no-deps faiss-gpu)"
)
NO_CUDA = "FAISS evaluation runs on the CPU: no CUDA device (torch.cuda.is_available() is False)"


@pytest.mark.parametrize(
    "cuda, faiss_gpus, device, expected_device, expected_notes",
    [
        (True, 1, None, "cuda", []),
        (True, 1, "cuda:1", "cuda:1", []),
        (True, 0, None, "cpu", [(logging.WARNING, NO_FAISS_GPU)]),
        (True, 0, "cuda:1", "cuda:1", [(logging.WARNING, NO_FAISS_GPU)]),  # a given CUDA device is kept
        (False, 0, None, "cpu", [(logging.INFO, NO_CUDA)]),  # a CPU machine: nothing was expected of the GPU
        (False, 1, "cuda", "cpu", [(logging.WARNING, NO_CUDA)]),
        (True, 0, "cpu", "cpu", []),
        (False, 0, "cpu", "cpu", []),
    ],
)
def test_evaluation_device_falls_back_to_the_cpu_and_says_why_once(
    machine, caplog, cuda, faiss_gpus, device, expected_device, expected_notes
):
    machine(cuda, faiss_gpus)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        assert backend.evaluation_device(device) == torch.device(expected_device)
        assert backend.evaluation_device(device) == torch.device(expected_device)
    assert notes(caplog) == expected_notes  # once, though asked twice


def test_recall_calculator_takes_the_gpu_where_there_is_one(machine, caplog):
    machine(cuda=True, faiss_gpus=1)
    calc = RecallAtKCalculator(include=("recall_at_1", "NMI"))  # built only: no CUDA call on this machine
    assert calc.device == torch.device("cuda") and calc.faiss_backend == "gpu"
    assert isinstance(calc.kmeans_func, FaissKMeans) and calc.kmeans_func.kwargs == {"niter": 20, "gpu": True}
    assert notes(caplog) == []


def test_recall_calculator_falls_back_to_the_cpu_says_so_and_gives_the_cpu_results(machine, caplog):
    rng = np.random.default_rng(0)
    embeddings = torch.from_numpy(rng.normal(size=(60, 3)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, size=60))
    machine(cuda=True, faiss_gpus=0)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        calc = RecallAtKCalculator(ks=(1, 4), include=("recall_at_1", "recall_at_4"))
    assert calc.device == torch.device("cpu") and calc.faiss_backend == "cpu"
    assert calc.kmeans_func.kwargs == {"niter": 20, "gpu": False}
    assert notes(caplog) == [(logging.WARNING, NO_FAISS_GPU)]
    reference = RecallAtKCalculator(ks=(1, 4), include=("recall_at_1", "recall_at_4"), device="cpu")
    assert calc.get_accuracy(embeddings, labels) == reference.get_accuracy(embeddings, labels)
    # a CUDA device asked for is kept for the tensors, while FAISS runs on the CPU build
    assert RecallAtKCalculator(device="cuda").faiss_backend == "cpu"
    custom = FaissKMeans(niter=5)
    assert RecallAtKCalculator(kmeans_func=custom).kmeans_func is custom


def test_evaluate_embeddings_falls_back_to_the_cpu_and_faiss_backend_reports_it(machine, caplog):
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=10.0, size=(5, 4))
    labels = np.repeat(np.arange(5), 12)
    embeddings = (centers[labels] + rng.normal(size=(60, 4))).astype(np.float32)
    on_cpu = evaluate_embeddings(embeddings, labels, device="cpu")
    machine(cuda=True, faiss_gpus=0)  # CUDA beside faiss-cpu: a GPU path would call .to("cuda") and fail here
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        assert evaluate_embeddings(embeddings, labels) == on_cpu
        assert evaluate_embeddings(embeddings, labels) == on_cpu
    assert faiss_backend() == faiss_backend("cuda") == "cpu"
    assert notes(caplog) == [(logging.WARNING, NO_FAISS_GPU)]
    assert on_cpu["recall_at_1"] == 1.0  # well-separated classes: the scores are real ones


@pytest.mark.parametrize(
    "device, error, match",
    [
        (0, TypeError, r"device must be a torch.device, a device string such as 'cuda:0', or None; got int \(0\)"),
        ("gpu", ValueError, r"device must name a device such as 'cpu' or 'cuda:0'; got 'gpu'"),
    ],
)
def test_bad_devices_are_rejected(device, error, match):
    with pytest.raises(error, match=match):
        faiss_backend(device)
    with pytest.raises(error, match=match):
        evaluate_embeddings(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), device=device)
    with pytest.raises(error, match=match):
        RecallAtKCalculator(device=device)
