"""The benchmark behind ``pml-relaxed bench`` (``pip install 'pml-relaxed[bench]'``).

Nothing in the library imports it; ``pml_relaxed.cli`` is its only entry point. The modules, in the order
data flows through them: :mod:`.config` (the typed :class:`~pml_relaxed_bench.config.BenchConfig` and its
command line), :mod:`.registry` with :mod:`.data`, :mod:`.paper_data`, :mod:`.text_data` (what to train
and evaluate on), :mod:`.methods` (the compared losses), :mod:`.runner` and :mod:`.parallel` (training),
:mod:`.tables`, :mod:`.report` and :mod:`.plots` (results files), :mod:`.cli` (``main``).
"""
