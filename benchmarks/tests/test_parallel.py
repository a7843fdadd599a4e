"""``pml-relaxed bench --workers N``, ``--report-only`` and ``--no-report``."""

import dataclasses
import json

import pytest

from pml_relaxed_bench.cli import main
from pml_relaxed_bench.config import BenchConfig
from pml_relaxed_bench.parallel import worker_config

TINY = ["--dataset", "digits", "--epochs", "1", "--teacher-epochs", "1", "--no-progress"]


def run(out, *argv):
    argv = TINY + list(argv) + ["--output-dir", str(out)]
    return main(BenchConfig.from_args(argv), argv)


def read_runs(out):
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


def test_a_worker_gets_the_parents_options_but_its_own_job():
    argv = [
        "--dataset",
        "omniglot",
        "--data-root",
        "/data/o",
        "--seeds",
        "2",
        "--delta",
        "2.5",
        "--no-eval-normalize",
        "--normalize-student",
        "--quick",
        "--lr",
        "0.003",
        "--workers",
        "4",
        "--settings",
        "compression",
        "--methods",
        "pkt",
        "rkd",
        "--output-dir",
        "/tmp/x",
        "--report-only",
        "--text-mlp",
    ]
    parent = BenchConfig.from_args(argv)
    worker = BenchConfig.from_args(worker_config(parent, "dim_reduction", "rkd").to_argv())
    own = {
        "settings": ["dim_reduction"],
        "methods": ["rkd"],
        "workers": 1,
        "report_only": False,
        "report": False,
        "progress": False,
        "output_dir": "/tmp/x",
        "teacher_dir": "/tmp/x",
    }
    for name, value in vars(parent).items():
        assert getattr(worker, name) == own.get(name, value), name
    with_teachers = dataclasses.replace(parent, teacher_dir="/tmp/t")
    assert worker_config(with_teachers, "s", "m").teacher_dir == "/tmp/t"


def test_workers_share_one_output_folder_and_match_the_serial_runs(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # same float reductions as this process
    argv = ["--methods", "relaxed_contrastive", "pkt", "--settings", "dim_reduction", "compression", "--seeds", "1"]
    run(tmp_path / "serial", *argv)
    run(tmp_path / "parallel", *argv, "--workers", "2")
    serial, parallel = read_runs(tmp_path / "serial"), read_runs(tmp_path / "parallel")
    assert sum(r["kind"] == "teacher" for r in parallel) == 1, "the parent trains and records the teacher once"

    def key(r):
        return r["setting"], r["method"], r["seed"]

    assert sorted(map(key, parallel)) == sorted(map(key, serial))
    serial_r1 = {key(r): r["metrics"]["recall_at_1"] for r in serial}
    for r in parallel:  # same seeds, same teacher, same batches: the same students
        assert r["metrics"]["recall_at_1"] == pytest.approx(serial_r1[key(r)], abs=1e-6), key(r)
    assert len(list((tmp_path / "parallel" / "logs").glob("*.log"))) == 4
    assert (tmp_path / "parallel" / "results.md").exists()


def test_no_report_then_report_only(tmp_path):
    assert run(tmp_path, "--methods", "pkt", "--settings", "compression", "--seeds", "1", "--no-report") == []
    assert not (tmp_path / "results.md").exists() and len(read_runs(tmp_path)) == 2
    paths = run(tmp_path, "--methods", "pkt", "--settings", "compression", "--seeds", "1", "--report-only")
    assert (tmp_path / "results.md") in paths and "pkt" in (tmp_path / "results.md").read_text()
    assert len(read_runs(tmp_path)) == 2, "--report-only trains nothing"


@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["--workers", "0"], ValueError, r"--workers must be >= 1; got 0"),
        (["--report-only", "--no-report"], ValueError, r"--report-only and --no-report exclude each other"),
        (["--report-only"], FileNotFoundError, r"--report-only needs the runs of an earlier call; found none"),
    ],
)
def test_bad_worker_and_report_options(tmp_path, argv, error, message):
    with pytest.raises(error, match=message):
        run(tmp_path, *argv)


@pytest.mark.parametrize("jobs, threads", [(1, 8), (2, 4), (3, 2), (9, 2)])
def test_worker_threads_share_the_cores_among_the_jobs_that_run(tmp_path, monkeypatch, jobs, threads):
    """4 workers on 8 cores: 2 threads each; 1 job alone gets all 8, 2 jobs 4 each; OMP_NUM_THREADS set wins."""
    import subprocess

    from pml_relaxed_bench import parallel

    seen = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 8)
    commands = []
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, env, **kw: (
            seen.append(env["OMP_NUM_THREADS"]) or commands.append(command) or subprocess.CompletedProcess(command, 0)
        ),
    )
    config = BenchConfig.from_args(TINY + ["--workers", "4", "--output-dir", str(tmp_path)])
    assert parallel.run_parallel(config, [("s", f"m{i}") for i in range(jobs)]) == []
    assert seen == [str(threads)] * jobs
    assert all(command[1:4] == ["-m", "pml_relaxed.cli", "bench"] for command in commands)
    workers = sorted((BenchConfig.from_args(command[4:]) for command in commands), key=lambda w: w.methods)
    assert workers == [parallel.worker_config(config, "s", f"m{i}") for i in sorted(range(jobs), key=str)]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    seen.clear()
    parallel.run_parallel(config, [("s", "m")])
    assert seen == ["3"]
