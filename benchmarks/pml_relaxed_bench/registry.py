"""The benchmark's datasets by ``--dataset`` name: each builds a :class:`~pml_relaxed_bench.data.BenchData`."""

from __future__ import annotations

import functools
from typing import Callable, Dict

from .config import BenchConfig
from .data import IMAGE_DATASETS, BenchData
from .paper_data import PAPER_DATASETS, paper_data
from .text_data import banking77_data

DATASETS: Dict[str, Callable[[BenchConfig], BenchData]] = {
    **IMAGE_DATASETS,
    "banking77": banking77_data,
    **{name: functools.partial(paper_data, name) for name in PAPER_DATASETS},
}
"""The datasets ``--dataset`` accepts: ``DATASETS[name](config)`` builds the :class:`BenchData` of ``config``."""
