"""Checks a GPU machine in one command, within 8 minutes on one GPU: the CUDA tests, FAISS on the GPU, the
relaxed loss in bf16 blockwise, and the loss speed at n = 65536.

Checks, in order:

- ``cuda_tests``: every test file of ``tests/`` with a CUDA skip mark (``tests/test_cuda.py``), run with pytest
  in a subprocess (junit XML in ``--output-dir``);
- ``faiss_gpu``: ``evaluate_embeddings`` of ``--faiss-n`` clustered points on FAISS's GPU index and k-means,
  against the same evaluation on the CPU (the Recall@K must agree; NMI is k-means and may differ a little);
  it fails, saying how to install the GPU build, where FAISS has no GPU support;
- ``bf16_blockwise``: ``RelaxedContrastiveLoss(block_size=--bf16-block-size)`` forward and backward on a bf16
  student, against float32 and float64 runs on the same values (bf16 is computed in float32: the loss must
  agree to 1e-4, the gradient, rounded to bf16, to 1e-2, relative to float64);
- ``loss_speed``: ``benchmarks/loss_speed.py`` (its own CLI, one process per measurement) at n = 65536 for the
  blockwise relaxed losses (the dense ones do not fit), written to ``--output-dir``/loss_speed.

The time is bounded by design: the CUDA tests stop at ``--pytest-timeout`` (300 s), each loss speed point times
at most about a minute of repeats, and the rest takes seconds on a GPU.

Without CUDA the CPU-safe part runs: the CUDA tests are collected (not run), bf16_blockwise and loss_speed run on
the CPU at a small n, the FAISS check is skipped, a line ``CUDA not available: skipping ...`` says what was not
checked, and the command exits 0 unless a check that ran failed. Every number of the summary table has the
machine (the card, or the CPU) beside it.

    python benchmarks/gpu_check.py                          # on the GPU machine
    python benchmarks/gpu_check.py --output-dir /tmp/gpu_check --speed-n 4096

Writes ``gpu_check.json`` and ``gpu_check.md`` (the summary table) in ``--output-dir``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("cuda_tests", "faiss_gpu", "bf16_blockwise", "loss_speed")
#: what each check does without CUDA (for the skip line)
WITHOUT_CUDA = {
    "cuda_tests": "cuda_tests (collected, not run)",
    "faiss_gpu": "faiss_gpu",
    "bf16_blockwise": "bf16_blockwise on CUDA (run on the CPU at n={bf16_n})",
    "loss_speed": "loss_speed on CUDA at n=65536 (run on the CPU at n={speed_n})",
}
BF16_LOSS_TOLERANCE = 1e-4  # relative to float64; bf16 inputs are computed in float32
BF16_GRAD_TOLERANCE = 1e-2  # relative norm error of the gradient, which is returned rounded to bf16
FLOAT32_GRAD_TOLERANCE = 1e-4
RECALL_TOLERANCE = 1e-3  # exact search on both: only near-ties of float rounding may swap a neighbour


@dataclasses.dataclass(frozen=True)
class GpuCheckConfig:
    """One run of the GPU check (the command-line options, typed)."""

    output_dir: str = "results/gpu_check"
    checks: List[str] = dataclasses.field(default_factory=lambda: list(CHECKS))
    test_device: str = "cuda"
    tests_k: Optional[str] = None
    pytest_timeout: int = 300
    faiss_n: int = 20000
    faiss_dim: int = 64
    bf16_n: Optional[int] = None
    bf16_block_size: int = 256
    speed_n: Optional[int] = None
    speed_dim: int = 128
    speed_teacher_dim: int = 512
    speed_methods: List[str] = dataclasses.field(default_factory=lambda: ["blockwise", "relaxed_ms"])
    speed_repeats: int = 3

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "GpuCheckConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in fields})

    def to_argv(self) -> List[str]:
        """The command-line options that give this configuration (unset sizes left out)."""
        return _script("loss_speed").dataclass_argv(self)

    def sizes(self, cuda: bool) -> Dict[str, int]:
        """The n of the bf16 and speed runs: the given ones, else 16384 / 65536 with CUDA and 1024 without."""
        bf16_n = self.bf16_n or (16384 if cuda else 1024)
        return {"bf16_n": bf16_n, "speed_n": self.speed_n or (65536 if cuda else 1024)}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="results/gpu_check")
    parser.add_argument("--checks", nargs="+", choices=CHECKS, default=list(CHECKS))
    parser.add_argument(
        "--test-device",
        default="cuda",
        help="device the CUDA tests run on (PML_RELAXED_TEST_DEVICE); 'cpu' dry-runs them on a machine without CUDA",
    )
    parser.add_argument("--tests-k", default=None, help="run only the CUDA tests matching this pytest -k expression")
    parser.add_argument("--pytest-timeout", type=int, default=300, help="seconds the CUDA tests may take")
    parser.add_argument("--faiss-n", type=int, default=20000, help="points of the FAISS GPU evaluation")
    parser.add_argument("--faiss-dim", type=int, default=64)
    parser.add_argument("--bf16-n", type=int, default=None, help="batch of the bf16 run (16384 on CUDA, 1024 without)")
    parser.add_argument("--bf16-block-size", type=int, default=256, help="query rows per block of the bf16 run")
    parser.add_argument(
        "--speed-n", type=int, default=None, help="batch of the loss speed (65536 on CUDA, 1024 without)"
    )
    parser.add_argument("--speed-dim", type=int, default=128, help="student dimension of the loss speed")
    parser.add_argument("--speed-teacher-dim", type=int, default=512)
    parser.add_argument("--speed-methods", nargs="+", default=["blockwise", "relaxed_ms"], help="loss_speed methods")
    parser.add_argument("--speed-repeats", type=int, default=3)
    return parser


@dataclasses.dataclass
class CheckResult:
    """One row of the summary table."""

    check: str
    status: str  # "pass", "fail" or "skip"
    seconds: float = 0.0  # wall time of the check (its measured times are in ``number``)
    number: str = ""
    machine: str = ""
    detail: str = ""


# ----------------------------------------------------------------------------------------- helpers


def _script(name: str) -> ModuleType:
    """A sibling script of ``benchmarks/`` as a module (registered, so that its dataclasses resolve)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def device_name(device: str) -> str:
    """The card for a CUDA device, else the CPU model and core count (what each number was measured on)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    from pml_relaxed_bench import machine

    return f"CPU {machine().split(', ')[0]} ({os.cpu_count()} cores)"


def cuda_test_files(root: Path = ROOT) -> List[str]:
    """Test files (relative to ``root``) with a ``pytest.mark.skipif`` whose condition or reason names CUDA."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).endswith("skipif")
                and "cuda" in ast.unparse(node).lower()
            ):
                found.append(str(path.relative_to(root)))
                break
    return found


def _pytest(args: List[str], env: Dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def junit_counts(path: Path) -> Dict[str, int]:
    """Tests, failures, errors and skipped of a pytest junit XML file."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    return {key: sum(int(suite.get(key, 0)) for suite in suites) for key in keys}


# ----------------------------------------------------------------------------------------- the checks


def check_cuda_tests(config: GpuCheckConfig, out: Path, cuda: bool) -> CheckResult:
    files = cuda_test_files()
    device = check_device("cuda_tests", config, cuda)
    if device == "cpu" and torch.device(config.test_device).type == "cuda":  # no CUDA: collect them only
        proc = _pytest(["--collect-only", "-q", *files], {}, config.pytest_timeout)
        match = re.search(r"(\d+) tests? collected", proc.stdout)
        if proc.returncode != 0 or match is None:
            return CheckResult("cuda_tests", "fail", number="collection failed", detail=proc.stdout[-2000:])
        return CheckResult(
            "cuda_tests", "skip", number=f"{match.group(1)} tests collected, not run ({', '.join(files)})"
        )
    xml = (out / "cuda_tests.xml").resolve()  # pytest runs in the repository root
    xml.unlink(missing_ok=True)
    env = {"PML_RELAXED_TEST_DEVICE": device}
    selection = ["-k", config.tests_k] if config.tests_k else []
    try:
        proc = _pytest(["-q", "-rfEs", f"--junitxml={xml}", *selection, *files], env, config.pytest_timeout)
    except subprocess.TimeoutExpired:
        return CheckResult("cuda_tests", "fail", number=f"timed out after {config.pytest_timeout} s")
    (out / "cuda_tests.log").write_text(proc.stdout + proc.stderr)
    if not xml.is_file():
        return CheckResult("cuda_tests", "fail", number=f"pytest exited {proc.returncode}", detail=proc.stderr[-2000:])
    counts = junit_counts(xml)
    bad = counts["failures"] + counts["errors"]
    passed = counts["tests"] - bad - counts["skipped"]
    number = f"{passed} passed, {bad} failed, {counts['skipped']} skipped of {counts['tests']} (on {device})"
    status = "pass" if bad == 0 and proc.returncode == 0 and passed > 0 else "fail"
    detail = "" if status == "pass" else proc.stdout[-3000:]
    return CheckResult("cuda_tests", status, number=number, detail=detail)


def clustered(n: int, dim: int, classes: int = 100, seed: int = 0):
    """``n`` points around ``classes`` close centres: Recall@1 about 0.4 at 64 dimensions, so neighbours count."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = 0.5 * torch.randn(classes, dim, generator=generator)
    return centres[labels] + torch.randn(n, dim, generator=generator), labels


def faiss_comparison(n: int, dim: int, device: str) -> Dict[str, dict]:
    """``evaluate_embeddings`` of ``n`` clustered points on ``device`` and on the CPU: scores, seconds, largest gap.

    The largest gap is over the retrieval metrics (exact search on both); NMI comes from k-means and is left out.
    """
    from pml_relaxed.evaluation import evaluate_embeddings

    embeddings, labels = clustered(n, dim)
    metrics = ("recall_at_1", "recall_at_10", "mean_average_precision_at_r", "NMI")
    evaluate_embeddings(embeddings[:1000], labels[:1000], metrics=metrics[:1], device=device)  # FAISS set-up
    scores, seconds = {}, {}
    for key, where in (("device", device), ("cpu", "cpu")):
        start = time.perf_counter()
        scores[key] = evaluate_embeddings(embeddings, labels, metrics=metrics, device=where)
        seconds[key] = time.perf_counter() - start
    gap = max(abs(scores["device"][m] - scores["cpu"][m]) for m in metrics if m != "NMI")
    return {"scores": scores, "seconds": seconds, "gap": gap}


def check_faiss_gpu(config: GpuCheckConfig, out: Path, cuda: bool) -> CheckResult:
    from pml_relaxed.evaluation import backend, faiss_backend

    if backend.faiss_gpu_count() == 0:
        hint = backend._NO_FAISS_GPU.replace("this FAISS build has no GPU support", "FAISS has no GPU support here")
        return CheckResult("faiss_gpu", "fail" if cuda else "skip", number="FAISS GPUs: 0", detail=hint)
    if not cuda:
        return CheckResult("faiss_gpu", "skip", number="no CUDA device")
    if faiss_backend("cuda") != "gpu":
        return CheckResult("faiss_gpu", "fail", number=f"faiss_backend('cuda') is {faiss_backend('cuda')!r}")
    result = faiss_comparison(config.faiss_n, config.faiss_dim, "cuda")
    gpu, cpu, seconds = result["scores"]["device"], result["scores"]["cpu"], result["seconds"]
    status = "pass" if result["gap"] <= RECALL_TOLERANCE and 0.0 < gpu["NMI"] <= 1.0 else "fail"
    number = (
        f"n={config.faiss_n}: R@1 {gpu['recall_at_1']:.4f} (CPU {cpu['recall_at_1']:.4f}, largest gap "
        f"{result['gap']:.1e}), NMI {gpu['NMI']:.3f}; GPU {seconds['device']:.2f} s, CPU {seconds['cpu']:.2f} s"
    )
    return CheckResult("faiss_gpu", status, number=number, detail=json.dumps(result))


def bf16_comparison(n: int, block_size: int, device: str, dim: int = 128, teacher_dim: int = 256) -> Dict[str, float]:
    """Loss and gradient of a bf16 student against float32 and float64 on the same (bf16) values, blockwise.

    Returns the relative errors against float64 (``loss_bf16``, ``grad_bf16``, ``loss_float32``,
    ``grad_float32``; gradients by norm) and the seconds of the bf16 forward+backward.
    """
    from pml_relaxed.losses import RelaxedContrastiveLoss

    generator = torch.Generator().manual_seed(0)
    student = (3.0 * torch.randn(n, dim, generator=generator)).to(torch.bfloat16)
    teacher = torch.randn(n, teacher_dim, generator=generator, dtype=torch.float64)
    loss_fn = RelaxedContrastiveLoss(block_size=block_size)
    results = {}
    for dtype in (torch.bfloat16, torch.float32, torch.float64):
        x = student.to(device=device, dtype=dtype).detach().clone().requires_grad_()
        t = teacher.to(device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = loss_fn(x, teacher_emb=t)
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad).all(), dtype
        results[dtype] = (loss.detach().double().cpu(), x.grad.double().cpu(), time.perf_counter() - start)
    ref_loss, ref_grad, _ = results[torch.float64]
    errors = {"seconds_bf16": results[torch.bfloat16][2]}
    for name, dtype in (("bf16", torch.bfloat16), ("float32", torch.float32)):
        loss, grad, _ = results[dtype]
        errors[f"loss_{name}"] = float((loss - ref_loss).abs() / ref_loss.abs())
        errors[f"grad_{name}"] = float((grad - ref_grad).norm() / ref_grad.norm())
    return errors


def check_bf16_blockwise(config: GpuCheckConfig, out: Path, cuda: bool) -> CheckResult:
    n = config.sizes(cuda)["bf16_n"]
    device = "cuda" if cuda else "cpu"
    e = bf16_comparison(n, config.bf16_block_size, device)
    ok = (
        e["loss_bf16"] <= BF16_LOSS_TOLERANCE
        and e["loss_float32"] <= BF16_LOSS_TOLERANCE
        and e["grad_bf16"] <= BF16_GRAD_TOLERANCE
        and e["grad_float32"] <= FLOAT32_GRAD_TOLERANCE
    )
    number = (
        f"n={n}, block {config.bf16_block_size}: vs float64, bf16 loss {e['loss_bf16']:.1e} grad {e['grad_bf16']:.1e}, "
        f"float32 loss {e['loss_float32']:.1e} grad {e['grad_float32']:.1e}"
    )
    number += f"; bf16 forward+backward {e['seconds_bf16']:.3f} s"
    return CheckResult("bf16_blockwise", "pass" if ok else "fail", number=number, detail=json.dumps(e))


def check_loss_speed(config: GpuCheckConfig, out: Path, cuda: bool) -> CheckResult:
    loss_speed = _script("loss_speed")
    n = config.sizes(cuda)["speed_n"]
    argv = ["--sizes", str(n), "--dims", str(config.speed_dim), "--teacher-dim", str(config.speed_teacher_dim)]
    argv += ["--methods", *config.speed_methods, "--repeats", str(config.speed_repeats)]
    argv += ["--device", "cuda" if cuda else "cpu", "--output-dir", str(out / "loss_speed")]
    print("python benchmarks/loss_speed.py " + shlex.join(argv), flush=True)
    rows = loss_speed.main(loss_speed.get_args_parser().parse_args(argv))
    parts = [
        f"{r['method']} {r['seconds']:.3f} s, {r['peak_bytes'] / 2**30:.2f} GiB"
        if "seconds" in r
        else f"{r['method']} skipped ({r['skipped']})"
        for r in rows
    ]
    timed = [r for r in rows if "seconds" in r]
    failed = [r for r in rows if r.get("skipped") == "failed"]  # the others were skipped for their memory
    status = "pass" if timed and not failed and all(r["seconds"] > 0 for r in timed) else "fail"
    return CheckResult("loss_speed", status, number=f"n={n}, d={config.speed_dim}: " + "; ".join(parts))


RUNNERS: Dict[str, Callable[[GpuCheckConfig, Path, bool], CheckResult]] = {
    "cuda_tests": check_cuda_tests,
    "faiss_gpu": check_faiss_gpu,
    "bf16_blockwise": check_bf16_blockwise,
    "loss_speed": check_loss_speed,
}


def check_device(name: str, config: GpuCheckConfig, cuda: bool) -> str:
    """The device a check measures on: the GPU where CUDA is there (the tests: ``--test-device``), else the CPU."""
    if name == "cuda_tests":
        return config.test_device if cuda or torch.device(config.test_device).type != "cuda" else "cpu"
    return "cuda" if cuda else "cpu"


def skipped_without_cuda(config: GpuCheckConfig) -> List[str]:
    """What a run without CUDA leaves unchecked, as the skip line names it."""
    sizes = config.sizes(cuda=False)
    dry_run = torch.device(config.test_device).type != "cuda"  # the CUDA tests run on --test-device
    return [
        WITHOUT_CUDA[name].format(**sizes)
        for name in CHECKS
        if name in config.checks and not (name == "cuda_tests" and dry_run)
    ]


# ----------------------------------------------------------------------------------------- the run


def summary_table(results: List[CheckResult]) -> str:
    lines = ["| check | status | time (s) | number | machine |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.check} | {r.status} | {r.seconds:.2f} | {r.number} | {r.machine} |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> List[CheckResult]:
    config = GpuCheckConfig.from_args(args)
    from pml_relaxed_bench import machine, versions

    cuda = torch.cuda.is_available()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    description = machine()
    print(f"machine: {description}", flush=True)
    if not cuda:
        print(f"CUDA not available: skipping {', '.join(skipped_without_cuda(config))}", flush=True)
    results = []
    start_all = time.perf_counter()
    for name in CHECKS:
        if name not in config.checks:
            continue
        print(f"--- {name}", flush=True)
        start = time.perf_counter()
        try:
            result = RUNNERS[name](config, out, cuda)
        except Exception as err:  # a check that breaks is a failed check; the others still run
            result = CheckResult(name, "fail", number=f"{type(err).__name__}: {err}"[:300])
        result.seconds = time.perf_counter() - start
        result.machine = device_name(check_device(name, config, cuda))
        print(f"{name}: {result.status} ({result.number}) on {result.machine}", flush=True)
        if result.detail and result.status != "pass":
            print(result.detail, flush=True)
        results.append(result)
    total = time.perf_counter() - start_all
    table = summary_table(results)
    print(f"\n{table}\ntotal {total:.0f} s on {description}", flush=True)
    command = "python benchmarks/gpu_check.py " + shlex.join(config.to_argv())
    meta = {
        "command": command,
        "machine": description,
        "cuda": cuda,
        "versions": versions(),
        "config": dataclasses.asdict(config),
        "seconds": total,
    }
    rows = [dataclasses.asdict(r) for r in results]
    (out / "gpu_check.json").write_text(json.dumps({"metadata": meta, "rows": rows}, indent=1))
    (out / "gpu_check.md").write_text(f"Command: `{command}`\n\nMachine: {description}\n\n{table}")
    print(f"wrote {out / 'gpu_check.md'}", flush=True)
    return results


def exit_code(results: List[CheckResult]) -> int:
    """1 if a check failed, else 0 (skipped checks, e.g. all that need CUDA on a machine without it, do not fail)."""
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(exit_code(main(get_args_parser().parse_args())))
