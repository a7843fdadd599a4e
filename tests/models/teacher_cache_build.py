"""A small TeacherCache build, for tests/models/test_teacher_cache.py: killed in a subprocess, and on 2 gloo ranks.

    PYTHONPATH=. python tests/models/teacher_cache_build.py FOLDER [--slow SECONDS]

builds the cache of :func:`teacher` over :func:`dataset` into FOLDER; ``--slow`` makes each teacher batch sleep,
so that the parent can SIGKILL the build between (or in the middle of) shards.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from pml_relaxed.datasets import SeededViewDataset
from pml_relaxed.models import TeacherCache

NUM_SAMPLES, IN_DIM, VIEWS = 30, 6, 2
BUILD = {"views": VIEWS, "batch_size": 4, "shard_size": 4, "progress": False}
WORLD_FOLDER_VARIABLE = "PML_RELAXED_TEST_CACHE_FOLDER"


def augment(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn_like(x)


def dataset() -> SeededViewDataset:
    points = torch.randn(NUM_SAMPLES, IN_DIM, generator=torch.Generator().manual_seed(0))
    return SeededViewDataset(torch.utils.data.TensorDataset(points), augment, num_views=VIEWS, seed=5)


class SlowTeacher(torch.nn.Module):
    """A seeded linear teacher whose every batch takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.linear = torch.nn.Linear(IN_DIM, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.linspace(-1, 1, 3 * IN_DIM).reshape(3, IN_DIM))
            self.linear.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.linear(x)


class RecordingViews(SeededViewDataset):
    """Records the (sample, view) pairs drawn."""

    def __init__(self) -> None:
        base = dataset()
        super().__init__(base.dataset, base.transform, base.num_views, base.seed)
        self.drawn = []

    def view(self, index: int, view: int) -> torch.Tensor:
        self.drawn.append((index, view))
        return super().view(index, view)


def build_on_rank(rank: int, world_size: int) -> dict:
    """Builds the cache into $PML_RELAXED_TEST_CACHE_FOLDER on this rank; returns its lookup and the samples it ran."""
    data = RecordingViews()
    cache = TeacherCache.build(SlowTeacher(), data, os.environ[WORLD_FOLDER_VARIABLE], **BUILD)
    samples = sorted({index for index, view in data.drawn if view == 1})  # view 1: not the fingerprint's probes
    everything = torch.arange(NUM_SAMPLES)
    return {"samples": torch.tensor(samples), "lookup": cache.lookup(everything, everything % VIEWS)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # by the module's name, not __main__: the cache records the teacher's class with its module
    from tests.models import teacher_cache_build as fixture

    TeacherCache.build(fixture.SlowTeacher(args.slow), fixture.dataset(), args.folder, **BUILD)


if __name__ == "__main__":
    main()
