"""``--workers N``: the bench's (setting, method) jobs as N worker processes that share one output folder.

Each worker is ``pml-relaxed bench`` itself, run for one setting and one method with ``--no-report``;
it loads the teacher the parent trained (or the given one), trains that method's seeds and appends
its records to the shared ``runs.jsonl`` (one short append per record). Processes rather than
threads: PML's trainers and the data pipeline hold the GIL, and a GPU is shared best by processes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Sequence, Tuple

import tqdm

#: options a worker must not inherit: the job picks them, or they are the parent's alone.
_NOT_FORWARDED = {"help", "settings", "methods", "workers", "report_only", "no_report", "output_dir", "teacher_dir"}


def bench_argv(args: argparse.Namespace, parser: argparse.ArgumentParser) -> List[str]:
    """The command-line arguments that reproduce ``args`` (every option the parser knows, but the job's own)."""
    argv: List[str] = []
    for action in parser._actions:  # argparse has no public iterator over its options
        if action.dest in _NOT_FORWARDED or not action.option_strings:
            continue
        value = getattr(args, action.dest)
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(action, argparse._StoreTrueAction):
            if value:
                argv.append(flag)
        elif value is not None:
            argv += [flag, *map(str, value)] if isinstance(value, (list, tuple)) else [flag, str(value)]
    return argv


def run_parallel(args: argparse.Namespace, parser: argparse.ArgumentParser, jobs: Sequence[Tuple[str, str]]) -> List[str]:
    """Runs each (setting, method) job in its own ``pml-relaxed bench`` process, ``args.workers`` at a time.

    Returns:
        The jobs that failed, as ``"setting/method (exit code N, see LOG)"``; their finished seeds stay.
    """
    out = Path(args.output_dir)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    common = bench_argv(args, parser) + ["--output-dir", str(out), "--teacher-dir", str(args.teacher_dir or out),
                                         "--no-report", "--no-progress"]
    env = dict(os.environ)
    # N workers on C cores: C // N threads each, unless the user chose; fewer jobs than workers
    # (a single method in a single setting, say) share the cores among themselves
    parallel = max(1, min(args.workers, len(jobs)))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))

    def run(job: Tuple[str, str]) -> str:
        setting, method = job
        log = logs / f"{setting}__{method}.log"
        command = [sys.executable, "-m", "pml_relaxed.cli", "bench", *common, "--settings", setting, "--methods", method]
        with log.open("w") as f:
            code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        return "" if code == 0 else f"{setting}/{method} (exit code {code}, see {log})"

    with ThreadPoolExecutor(parallel) as pool:
        results = list(tqdm.tqdm(pool.map(run, jobs), total=len(jobs), desc=f"bench x{parallel} workers",
                                 disable=args.no_progress))
    return [r for r in results if r]
