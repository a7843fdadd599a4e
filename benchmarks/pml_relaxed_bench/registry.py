"""The benchmark's datasets by ``--dataset`` name, for every mode: each entry builds the metric benchmark's
:class:`~pml_relaxed_bench.data.BenchData` and says whether the tasks (``--task``) run on it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict

from .config import BenchConfig
from .data import IMAGE_DATASETS, BenchData
from .paper_data import PAPER_DATASETS, paper_data
from .text_data import banking77_data


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of :data:`DATASETS`: ``entry(config)`` builds its :class:`BenchData`.

    Args:
        build: the metric benchmark's data of a config.
        tasks: whether ``--task ssl|classification|self-taught`` runs on it (their class-disjoint label-free
            splits and within-class split need raw labelled images in memory: digits, Omniglot).
    """

    build: Callable[[BenchConfig], BenchData]
    tasks: bool = False

    def __call__(self, config: BenchConfig) -> BenchData:
        return self.build(config)


DATASETS: Dict[str, DatasetEntry] = {
    **{name: DatasetEntry(build, tasks=True) for name, build in IMAGE_DATASETS.items()},
    "banking77": DatasetEntry(banking77_data),
    **{name: DatasetEntry(functools.partial(paper_data, name)) for name in PAPER_DATASETS},
}
"""The datasets ``--dataset`` accepts: ``DATASETS[name](config)`` builds the :class:`BenchData` of ``config``;
``DATASETS[name].tasks`` says whether the tasks run on it."""
