"""Training steps per second from a live teacher against a TeacherCache, the cache's build time and break-even.

A small MLP student (64 -> hidden -> 32) learns on Digits' train split with augmentation (a seeded
``RandomAffine`` + ``GaussianNoise``, ``--views`` views per image through ``SeededViewDataset``) from a wide MLP
teacher (64 -> 4096 x 4 -> 128 by default, random weights: its cost, not its quality, is measured). Three timings:

- ``build``: ``TeacherCache.build`` over ``--views`` views of every training image (the teacher runs once);
- ``live``: ``EmbeddingTransfer`` with ``models["teacher"]``, the teacher running on every batch;
- ``cached``: ``EmbeddingTransfer(teacher_cache=...)`` on the same seeded views, looking the rows up.

Each training run is ``--steps`` steps (after ``--warmup`` untimed ones) with ``RelaxedContrastiveLoss``.
Also measured: the teacher's forward time per batch against the student's training step (the cost ratio),
the float16 storage error (the float32 cache cast to float16, which is what ``dtype=torch.float16`` stores)
and the break-even number of epochs, ``build / (epoch time live - epoch time cached)``.

    python benchmarks/teacher_cache_speed.py --threads 1 --output-dir results/teacher_cache_speed

Writes ``teacher_cache_speed.json`` and ``teacher_cache_speed.md`` in ``--output-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shlex
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from pml_relaxed.datasets import Compose, Digits, GaussianNoise, RandomAffine, SeededViewDataset, seeded_view_collate
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.models import TeacherCache
from pml_relaxed.trainers import EmbeddingTransfer

FLOAT16_SMALLEST_NORMAL = 2.0**-14


@dataclasses.dataclass(frozen=True)
class TeacherCacheSpeedConfig:
    """One run of the benchmark (the command-line options, typed)."""

    views: int = 2
    batch_size: int = 64
    steps: int = 60
    warmup: int = 5
    teacher_width: int = 4096
    teacher_depth: int = 4
    student_hidden: int = 128
    threads: int = 1
    seed: int = 0
    output_dir: str = "results/teacher_cache_speed"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TeacherCacheSpeedConfig":
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})

    def command(self) -> str:
        """The command line that reruns this configuration."""
        options = [
            f"--{field.name.replace('_', '-')} {getattr(self, field.name)}" for field in dataclasses.fields(self)
        ]
        return "python benchmarks/teacher_cache_speed.py " + " ".join(options)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TeacherCacheSpeedConfig()
    helps = {
        "views": "augmented views per image (cached and trained on)",
        "batch_size": "images per batch (each gives --views inputs)",
        "steps": "timed training steps per route",
        "warmup": "untimed training steps before them",
        "teacher_width": "hidden width of the teacher MLP",
        "teacher_depth": "hidden layers of the teacher MLP",
        "student_hidden": "hidden width of the student MLP",
        "threads": "torch threads (1 is robust on a shared machine)",
        "seed": "seed of the models and of the views",
        "output_dir": "folder of the results files",
    }
    for field in dataclasses.fields(TeacherCacheSpeedConfig):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=type(default), default=default, help=helps[field.name]
        )
    return parser


def mlp(sizes: List[int]) -> torch.nn.Sequential:
    layers: List[torch.nn.Module] = [torch.nn.Flatten()]
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(width_in, width_out))
        if index < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def machine(threads: int) -> str:
    """The CPU model, its core count, torch's version and the threads used."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} thread(s)"


def seconds_per_call(function, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def train_steps_per_second(config: TeacherCacheSpeedConfig, data: SeededViewDataset, **teacher: object) -> float:
    """Steps per second of ``config.steps`` EmbeddingTransfer steps after ``config.warmup`` untimed ones."""
    torch.manual_seed(config.seed)
    student = mlp([64, config.student_hidden, 32])
    models = {"trunk": student}
    if "teacher" in teacher:
        models["teacher"] = teacher.pop("teacher")
    trainer = EmbeddingTransfer(
        models=models,
        optimizers={"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.01)},
        batch_size=config.batch_size,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss()},
        dataset=data,
        collate_fn=seeded_view_collate,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
        **teacher,
    )
    trainer.iterations_per_epoch = config.warmup
    trainer.train(num_epochs=1)
    trainer.iterations_per_epoch = config.steps
    start = time.perf_counter()
    trainer.train(num_epochs=1)
    return config.steps / (time.perf_counter() - start)


def measure(config: TeacherCacheSpeedConfig) -> Dict[str, float]:
    torch.set_num_threads(config.threads)
    logging.getLogger("PML").setLevel(logging.WARNING)
    augment = Compose([RandomAffine(degrees=15, translate=0.1, scale=(0.9, 1.1)), GaussianNoise(0.05)])
    data = SeededViewDataset(Digits("train"), augment, num_views=config.views, seed=config.seed)
    torch.manual_seed(config.seed)
    teacher = mlp([64] + [config.teacher_width] * config.teacher_depth + [128]).eval()
    student = mlp([64, config.student_hidden, 32])
    inputs = torch.rand(config.batch_size * config.views, 1, 8, 8)

    def student_step():
        student.zero_grad()
        student(inputs).square().sum().backward()

    with torch.no_grad():
        teacher_seconds = seconds_per_call(lambda: teacher(inputs), 5)
    student_seconds = seconds_per_call(student_step, 20)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cache = TeacherCache.build(teacher, data, folder, views=config.views, batch_size=256, progress=False)
        build_seconds = time.perf_counter() - start
        exact = cache.lookup(
            torch.arange(len(cache)).repeat_interleave(config.views), torch.arange(config.views).repeat(len(cache))
        )
        half = exact.half().float()
        live = train_steps_per_second(config, data, teacher=teacher)
        cached = train_steps_per_second(config, data, teacher_cache=cache)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    saved_per_epoch = steps_per_epoch * (1 / live - 1 / cached)
    normal = exact.abs() >= FLOAT16_SMALLEST_NORMAL  # below it float16 has a fixed absolute step (2**-24)
    relative = ((half - exact).abs()[normal] / exact.abs()[normal]).max()
    return {
        "samples": len(data),
        "teacher_forward_seconds": teacher_seconds,
        "student_step_seconds": student_seconds,
        "teacher_cost_ratio": teacher_seconds / student_seconds,
        "build_seconds": build_seconds,
        "live_steps_per_second": live,
        "cached_steps_per_second": cached,
        "speedup": cached / live,
        "steps_per_epoch": steps_per_epoch,
        "break_even_epochs": build_seconds / saved_per_epoch if saved_per_epoch > 0 else math.inf,
        "float16_max_abs_error": float((half - exact).abs().max()),
        "float16_max_relative_error": float(relative),
        "float16_max_abs_error_below_normal": float((half - exact).abs()[~normal].max()) if (~normal).any() else 0.0,
        "float16_relative_frobenius_error": float((half - exact).norm() / exact.norm()),
    }


def markdown(result: Dict[str, float], command: str, machine_text: str) -> str:
    rows = [
        ("teacher forward / student training step (per batch)", f"{result['teacher_cost_ratio']:.0f}x"),
        ("cache build (teacher once over every view)", f"{result['build_seconds']:.2f} s"),
        ("training, live teacher", f"{result['live_steps_per_second']:.1f} steps/s"),
        ("training, TeacherCache", f"{result['cached_steps_per_second']:.1f} steps/s"),
        ("speed-up of the cached route", f"{result['speedup']:.1f}x"),
        ("break-even (the build paid back after)", f"{result['break_even_epochs']:.2f} epochs"),
        ("float16 storage: max relative error (values >= 2**-14)", f"{result['float16_max_relative_error']:.1e}"),
        (
            "float16 storage: max absolute error (values < 2**-14)",
            f"{result['float16_max_abs_error_below_normal']:.1e}",
        ),
        ("float16 storage: max absolute error", f"{result['float16_max_abs_error']:.1e}"),
        ("float16 storage: relative Frobenius error", f"{result['float16_relative_frobenius_error']:.1e}"),
    ]
    table = "\n".join(["| measure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows])
    return f"Command: `{command}`\n\nMachine: {machine_text}\n\n{table}\n"


def main(args: argparse.Namespace) -> Dict[str, float]:
    config = TeacherCacheSpeedConfig.from_args(args)
    result = measure(config)
    command, machine_text = config.command(), machine(config.threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "machine": machine_text, "config": dataclasses.asdict(config)}
    (out / "teacher_cache_speed.json").write_text(json.dumps({"metadata": meta, "result": result}, indent=1))
    report = markdown(result, command, machine_text)
    (out / "teacher_cache_speed.md").write_text(report)
    print(report)
    print(f"wrote {shlex.quote(str(out / 'teacher_cache_speed.md'))}")
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
