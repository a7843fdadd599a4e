"""Forward+backward time and peak memory of the relaxed losses: blockwise against dense, per batch size.

Methods, each measured in its own fresh process (so that the peak memory of one cannot hide another's):

- ``blockwise``: ``RelaxedContrastiveLoss()`` at its defaults (auto mode: blockwise above 2**16 pairs);
- ``dense``: ``RelaxedContrastiveLoss(block_size=0)``, plain autograd over the (n, n) matrices;
- ``dense_cdist``: the 0.1.0 dense path (PML's ``LpDistance``, i.e. ``torch.cdist``, then the dense
  relaxed terms), the baseline the speed and memory ratios are against;
- ``relaxed_ms``: ``RelaxedMultiSimilarityLoss()`` at its defaults (blockwise above 2**16 pairs);
- ``pml_contrastive``: PML's ``ContrastiveLoss`` on all pairs of the batch (random labels, 8 per class),
  a familiar reference.

Time is the median of ``--repeats`` forward+backward calls after one warm-up call (fewer once the timed calls
pass a minute, at least one), the fastest of them beside it; peak memory is the
process's peak resident memory during the warm-up call minus its resident memory just before it (CPU),
or ``torch.cuda.max_memory_allocated`` minus the memory allocated before it (CUDA). A dense method is
skipped where its (n, n) matrices would exceed ``--max-dense-gib``.

Beside each time, the same process times the four matrix products no implementation of the relaxed losses
can avoid (:func:`four_products`): the teacher Gram matrix ``F F^T`` (2 n^2 D flops), the student Gram
``G G^T`` (2 n^2 d) and the two gradient products ``C G`` and ``C^T G`` (4 n^2 d), in row blocks of at most
2**24 entries; each call of the loss is followed by one call of the products, so both see the same machine
load. ``x products`` is the loss's time over theirs (medians; the fastest over the fastest beside it).

    python benchmarks/loss_speed.py                       # the full grid (about 25 minutes on 2 CPU cores)
    python benchmarks/loss_speed.py --sizes 256 1024 --dims 16 --repeats 1 --output-dir /tmp/ls

Writes ``loss_speed.json`` and ``loss_speed.md`` in ``--output-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

METHODS = ("blockwise", "dense", "dense_cdist", "relaxed_ms", "pml_contrastive")
DENSE_METHODS = ("dense", "dense_cdist", "pml_contrastive")
BASELINE = "dense_cdist"
DENSE_BYTES_PER_PAIR = 40  # about ten live float32 (n, n) matrices on the dense paths (measured: 35-45)


@dataclasses.dataclass(frozen=True)
class LossSpeedConfig:
    """One run of the benchmark (the command-line options, typed)."""

    sizes: List[int]
    dims: List[int]
    teacher_dim: int = 512
    methods: List[str] = dataclasses.field(default_factory=lambda: list(METHODS))
    repeats: int = 3
    device: str = "cpu"
    max_dense_gib: float = 4.0
    threads: int = 0
    output_dir: str = "results/loss_speed"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "LossSpeedConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in fields})

    def to_argv(self) -> List[str]:
        return dataclass_argv(self)


def dataclass_argv(config: object) -> List[str]:
    """The command-line options that give a config dataclass: ``--field-name value...``, None fields left out."""
    argv = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is not None:
            flag = "--" + field.name.replace("_", "-")
            argv += [flag] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    return argv


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384, 32768])
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 128, 512], help="student dimensions")
    parser.add_argument("--teacher-dim", type=int, default=512)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-dense-gib", type=float, default=4.0, help="skip a dense method above this estimate")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per measurement (0: torch's default); 1 is robust to a shared machine, "
        "where a descheduled OpenMP thread stalls every parallel region",
    )
    parser.add_argument("--output-dir", default="results/loss_speed")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


# ----------------------------------------------------------------------------------------- one measurement


def batch_embeddings(n: int, dim: int, teacher_dim: int, device: torch.device):
    """The (student, teacher) embeddings of one point: standard normal, seeded."""
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(n, dim, generator=gen).to(device)
    return student, torch.randn(n, teacher_dim, generator=gen).to(device)


def _build(method: str, n: int, dim: int, teacher_dim: int, device: torch.device):
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import ContrastiveLoss

    from pml_relaxed import functional as fn
    from pml_relaxed.losses import RelaxedContrastiveLoss, RelaxedMultiSimilarityLoss

    student, teacher = batch_embeddings(n, dim, teacher_dim, device)
    labels = (torch.arange(n) // 8).to(device)
    if method == "blockwise":
        loss_fn = RelaxedContrastiveLoss()
        return student, lambda s: loss_fn(s, teacher_emb=teacher)
    if method == "dense":
        loss_fn = RelaxedContrastiveLoss(block_size=0)
        return student, lambda s: loss_fn(s, teacher_emb=teacher)
    if method == "relaxed_ms":
        loss_fn = RelaxedMultiSimilarityLoss()
        return student, lambda s: loss_fn(s, teacher_emb=teacher)
    if method == "pml_contrastive":
        loss_fn = ContrastiveLoss()
        return student, lambda s: loss_fn(s, labels)
    distance = LpDistance(normalize_embeddings=False)

    def dense_cdist(s):  # the 0.1.0 implementation, step by step
        w = fn.gaussian_kernel(teacher)
        dist = distance(s).masked_fill(torch.eye(n, dtype=torch.bool, device=s.device), 0)
        rel = fn.relative_distance(dist)
        return fn.relaxed_contrastive_per_anchor(rel, w, fn.pair_mask(n, n, device=s.device)).mean()

    return student, dense_cdist


PRODUCT_BLOCK_ENTRIES = 1 << 24
"""The products are timed in row blocks of at most this many (row, column) entries (64 MiB in float32)."""


def four_products(student: torch.Tensor, teacher: torch.Tensor) -> None:
    """The four matrix products of a relaxed loss's forward and backward pass (no elementwise work).

    For each block of rows: the teacher Gram rows ``F_b F^T``, the student Gram rows ``G_b G^T`` and, with that
    block standing in for the gradient coefficients C, the gradient products ``C_b G`` and ``C_b^T G_b``.
    """
    n = student.shape[0]
    rows = max(1, PRODUCT_BLOCK_ENTRIES // max(n, 1))
    for start in range(0, n, rows):
        end = min(start + rows, n)
        torch.mm(teacher[start:end], teacher.t())
        coefficients = torch.mm(student[start:end], student.t())
        torch.mm(coefficients, student)
        torch.mm(coefficients.t(), student[start:end])


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_resident_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(
    method: str, n: int, dim: int, teacher_dim: int, repeats: int, device: str, threads: int = 0
) -> Dict[str, float]:
    """Median (and fastest) forward+backward seconds and peak extra memory (bytes) of one method at one size,
    with the median (and fastest) seconds of :func:`four_products` at that size, timed alternately with it."""
    if threads > 0:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    student, loss_of = _build(method, n, dim, teacher_dim, dev)

    def step():
        s = student.clone().requires_grad_()
        loss = loss_of(s)
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = _resident_bytes()
        step()
        peak = max(0, _peak_resident_bytes() - before)
    teacher = batch_embeddings(n, dim, teacher_dim, dev)[1]

    def products():
        four_products(student, teacher)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    products()  # warm-up
    times, product_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        value = step()
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        products()
        product_times.append(time.perf_counter() - start)
        if sum(times) > 60:  # about a minute of timing per point at most: large batches are timed fewer times
            break
    return {
        "seconds": statistics.median(times),
        "min_seconds": min(times),
        "products_seconds": statistics.median(product_times),
        "products_min_seconds": min(product_times),
        "peak_bytes": peak,
        "loss": value,
    }


def _measure_in_subprocess(method: str, n: int, dim: int, config: LossSpeedConfig) -> Optional[Dict[str, float]]:
    job = json.dumps(
        {
            "method": method,
            "n": n,
            "dim": dim,
            "teacher_dim": config.teacher_dim,
            "repeats": config.repeats,
            "device": config.device,
            "threads": config.threads,
        }
    )
    proc = subprocess.run([sys.executable, __file__, "--worker", job], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {method} n={n} d={dim} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- the grid


def machine_description(device: str, threads: int = 0) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads or torch.get_num_threads()} threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def run_grid(config: LossSpeedConfig) -> List[dict]:
    from tqdm.auto import tqdm

    jobs = [(n, dim, method) for n in config.sizes for dim in config.dims for method in config.methods]
    rows = []
    for n, dim, method in tqdm(jobs, desc="loss_speed", unit="run"):
        dense_gib = DENSE_BYTES_PER_PAIR * n * n / 2**30
        if method in DENSE_METHODS and dense_gib > config.max_dense_gib:
            rows.append({"n": n, "dim": dim, "method": method, "skipped": f"needs about {dense_gib:.0f} GiB"})
            continue
        result = _measure_in_subprocess(method, n, dim, config)
        rows.append({"n": n, "dim": dim, "method": method, **(result or {"skipped": "failed"})})
    _add_ratios(rows)
    return rows


def _add_ratios(rows: List[dict]) -> None:
    baseline = {(r["n"], r["dim"]): r for r in rows if r["method"] == BASELINE and "seconds" in r}
    for row in rows:
        if "products_seconds" in row:
            row["ratio_to_products"] = row["seconds"] / row["products_seconds"]
            row["min_ratio_to_products"] = row["min_seconds"] / row["products_min_seconds"]
        base = baseline.get((row["n"], row["dim"]))
        if base is not None and "seconds" in row:
            row["speedup_vs_dense_cdist"] = base["seconds"] / row["seconds"]
            row["memory_vs_dense_cdist"] = row["peak_bytes"] / max(base["peak_bytes"], 1)


def markdown_table(rows: List[dict]) -> str:
    lines = [
        "| n | student dim | method | time (s) | fastest (s) | 4 products (s) | x products (fastest) "
        "| peak memory (MiB) | speed-up vs dense_cdist | memory vs dense_cdist |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "seconds" not in r:
            lines.append(f"| {r['n']} | {r['dim']} | {r['method']} | skipped ({r['skipped']}) | | | | | | |")
            continue
        speed = f"{r['speedup_vs_dense_cdist']:.2f}x" if "speedup_vs_dense_cdist" in r else ""
        memory = f"{r['memory_vs_dense_cdist']:.3f}" if "memory_vs_dense_cdist" in r else ""
        lines.append(
            f"| {r['n']} | {r['dim']} | {r['method']} | {r['seconds']:.3f} | {r['min_seconds']:.3f} "
            f"| {r['products_seconds']:.3f} | {r['ratio_to_products']:.2f}x ({r['min_ratio_to_products']:.2f}x) "
            f"| {r['peak_bytes'] / 2**20:.0f} "
            f"| {speed} | {memory} |"
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> List[dict]:
    if args.worker is not None:
        job = json.loads(args.worker)
        print(json.dumps(measure(**job)))
        return []
    config = LossSpeedConfig.from_args(args)
    rows = run_grid(config)
    for r in rows:
        if "seconds" not in r:
            continue
        line = (
            f"n={r['n']:>6} d={r['dim']:>4} {r['method']:>15}: {r['seconds']:.3f} s, "
            f"{r['ratio_to_products']:.2f}x its 4 matrix products ({r['min_ratio_to_products']:.2f}x fastest)"
        )
        if "speedup_vs_dense_cdist" in r and r["method"] != BASELINE:
            line += (
                f", {r['speedup_vs_dense_cdist']:.2f}x faster, {r['memory_vs_dense_cdist']:.3f}x the memory "
                f"of dense_cdist"
            )
        print(line, flush=True)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/loss_speed.py " + " ".join(config.to_argv())
    meta = {
        "command": command,
        "machine": machine_description(config.device, config.threads),
        "config": dataclasses.asdict(config),
    }
    (out / "loss_speed.json").write_text(json.dumps({"metadata": meta, "rows": rows}, indent=1))
    header = f"Command: `{command}`\n\nMachine: {meta['machine']}\n\n"
    (out / "loss_speed.md").write_text(header + markdown_table(rows))
    print(f"wrote {out / 'loss_speed.md'}")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
