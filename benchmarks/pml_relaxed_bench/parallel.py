"""``--workers N``: the bench's (setting, method) jobs as N worker processes that share one output folder.

Each worker is ``pml-relaxed bench`` itself, run for one setting and one method with ``--no-report``;
it loads the teacher the parent trained (or the given one), trains that method's seeds and appends
its records to the shared ``runs.jsonl`` (one short append per record). Processes rather than
threads: PML's trainers and the data pipeline hold the GIL, and a GPU is shared best by processes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Sequence, Tuple

import tqdm

from .config import BenchConfig


def worker_config(config: BenchConfig, setting: str, method: str) -> BenchConfig:
    """The config of the worker that trains one (setting, method): the parent's, but for that job alone,
    in the parent's output folder and teacher folder, without a report, bars or workers of its own."""
    out = str(config.output_dir)
    return dataclasses.replace(
        config,
        settings=[setting],
        methods=[method],
        workers=1,
        report_only=False,
        report=False,
        progress=False,
        output_dir=out,
        teacher_dir=str(config.teacher_dir or out),
    )


def run_parallel(config: BenchConfig, jobs: Sequence[Tuple[str, str]]) -> List[str]:
    """Runs each (setting, method) job in its own ``pml-relaxed bench`` process, ``config.workers`` at a time.

    Returns:
        The jobs that failed, as ``"setting/method (exit code N, see LOG)"``; their finished seeds stay.
    """
    logs = Path(config.output_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # N workers on C cores: C // N threads each, unless the user chose; fewer jobs than workers
    # (a single method in a single setting, say) share the cores among themselves
    parallel = max(1, min(config.workers, len(jobs)))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))

    def run(job: Tuple[str, str]) -> str:
        setting, method = job
        log = logs / f"{setting}__{method}.log"
        argv = worker_config(config, setting, method).to_argv()
        command = [sys.executable, "-m", "pml_relaxed.cli", "bench", *argv]
        with log.open("w") as f:
            code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        return "" if code == 0 else f"{setting}/{method} (exit code {code}, see {log})"

    with ThreadPoolExecutor(parallel) as pool:
        results = list(
            tqdm.tqdm(
                pool.map(run, jobs), total=len(jobs), desc=f"bench x{parallel} workers", disable=not config.progress
            )
        )
    return [r for r in results if r]
