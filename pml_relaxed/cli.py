"""The ``pml-relaxed`` command: ``pml-relaxed bench [options]``."""

from __future__ import annotations

import sys
from typing import List, Optional

#: what the benchmark imports beyond the library's own dependencies, and the extra that installs it
BENCH_EXTRAS = {"matplotlib": "bench", "PIL": "bench"}


def _task(args: List[str]) -> Optional[str]:
    """The value of ``--task`` (``--task X`` or ``--task=X``), or None."""
    for i, arg in enumerate(args):
        if arg == "--task" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: pml-relaxed bench [options]   (pml-relaxed bench --help for the options)\n"
            "       pml-relaxed bench --task ssl|classification|self-taught [options]   (... --help)"
        )
        return 0 if argv else 2
    if argv[0] != "bench":
        print(f"pml-relaxed: unknown command {argv[0]!r}; expected 'bench'", file=sys.stderr)
        return 2
    task = _task(argv[1:])
    if task not in (None, "metric"):  # the tasks beyond metric learning have their own options
        from .bench.tasks import main as task_main

        task_main(argv[1:])
        return 0
    if task == "metric":  # the default task: the metric-learning benchmark
        i = argv.index("--task") if "--task" in argv else argv.index("--task=metric")
        del argv[i : i + (2 if argv[i] == "--task" else 1)]
    try:  # here, not at the top: `pml-relaxed` alone stays instant, and a missing extra gets its message
        from .bench.cli import BenchConfig
        from .bench.cli import main as bench_main
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in BENCH_EXTRAS:
            raise
        print(
            f"pml-relaxed bench needs {missing!r}, which is not installed: "
            f"pip install 'pml-relaxed[{BENCH_EXTRAS[missing]}]'",
            file=sys.stderr,
        )
        return 2
    bench_main(BenchConfig.from_args(argv[1:]), argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
