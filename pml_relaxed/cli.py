"""The ``pml-relaxed`` command: ``pml-relaxed bench [options]``.

The benchmark is not part of the library: it is the package ``pml_relaxed_bench`` in the repository's
``benchmarks/`` folder, installed from a clone with ``pip install -e ./benchmarks``. Without it this command
says so in one line.
"""

from __future__ import annotations

import sys
from typing import List, Optional

#: what the benchmark imports beyond the library's own dependencies, and the extra that installs it
BENCH_EXTRAS = {"matplotlib": "bench", "PIL": "bench"}
#: the one line printed when the benchmark package is not installed
NO_BENCH = (
    "pml-relaxed bench needs the benchmark, which lives in the repository's benchmarks/ folder, not in the "
    "library: from a clone, pip install -e ./benchmarks"
)


def _import_bench(module: str):
    """``pml_relaxed_bench.<module>``, or None after printing how to get it (the benchmark or an extra it needs)."""
    import importlib

    try:  # here, not at the top: `pml-relaxed` alone stays instant, and a missing piece gets its message
        return importlib.import_module(f"pml_relaxed_bench.{module}")
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing == "pml_relaxed_bench":
            print(NO_BENCH, file=sys.stderr)
            return None
        if missing not in BENCH_EXTRAS:
            raise
        print(
            f"pml-relaxed bench needs {missing!r}, which is not installed: "
            f"pip install -e '.[{BENCH_EXTRAS[missing]}]' from a clone",
            file=sys.stderr,
        )
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
    bench_cli = _import_bench("cli")  # the wing parses its modes (the metric benchmark, --task ...) itself
    if bench_cli is None:
        return 2
    bench_cli.run_command(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
