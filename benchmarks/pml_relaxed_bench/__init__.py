"""The benchmark behind ``pml-relaxed bench``: ``pip install -e ./benchmarks`` from a clone.

Nothing in the library imports it; ``pml_relaxed.cli`` is its only entry point. This module is the wing's
public API: the scripts in ``benchmarks/`` import from here only (``from pml_relaxed_bench import ...``),
never from a submodule. What it holds, in the order data flows through it:

- the typed configs, one family: :class:`CommonConfig` (the options every mode shares), :class:`BenchConfig`
  (the metric benchmark) and :class:`TaskConfig` (``--task ssl|classification|self-taught``), parsed by
  :func:`get_args_parser` and written back by ``to_argv``;
- the one dataset registry :data:`DATASETS` (each entry builds a :class:`BenchData`) and the compared
  methods :data:`METHODS`;
- the one runner: :func:`fit` (every mode trains with it), :func:`run_all` (the metric benchmark),
  :func:`run_task` (the tasks), :func:`main` (``pml-relaxed bench``);
- the one results writer :func:`write_results` (results.json, results.csv, results.md, plots), with
  :func:`load_done` / :func:`load_runs` (runs.jsonl), :func:`aggregate` and :func:`provenance`,
  :func:`machine`, :func:`versions` (the exact command and machine beside every number), and
  :func:`pareto_front` / :func:`speed_front` / :func:`plot_pareto` (quality against speed).
"""

from .cli import main, parse_command, resolve, run_command
from .config import BenchConfig, CommonConfig, add_held_out_options, get_args_parser, held_out_args
from .data import BenchData
from .methods import DEFAULT_METHODS, METHODS, Method, MethodContext
from .plots import pareto_front, plot_pareto, speed_front
from .registry import DATASETS, DatasetEntry
from .report import aggregate, load_runs, machine, metric_mean, option_string, provenance, versions, write_results
from .runner import fit, get_teacher, load_done, run_all, run_student, seed_everything
from .static_text_data import static_student_data
from .tasks import TASK_NAMES, TaskConfig, get_task_parser, run_task
from .tasks.common import DATASETS as TASK_DATASETS
from .tasks.common import RunLog, choose_on_validation, network, omniglot
from .tasks.self_taught import SETTING as SELF_TAUGHT_SETTING
from .teachers import check_teacher_option, teacher_metadata, text_teacher_label, with_image_teacher
from .text_data import TEXT_STUDENT_DEFAULTS, TEXT_STUDENT_FAMILIES, banking77_data, text_student_options
from .text_peers import distilled_model2vec, model2vec_peers, pca_peers, peer_records, peer_setting, peer_speed

__all__ = [
    # configs
    "CommonConfig",
    "BenchConfig",
    "TaskConfig",
    "get_args_parser",
    "get_task_parser",
    "held_out_args",
    "add_held_out_options",
    # datasets and methods
    "DATASETS",
    "DatasetEntry",
    "TASK_DATASETS",
    "BenchData",
    "METHODS",
    "DEFAULT_METHODS",
    "Method",
    "MethodContext",
    "TEXT_STUDENT_DEFAULTS",
    "TEXT_STUDENT_FAMILIES",
    "text_student_options",
    "banking77_data",
    "static_student_data",
    # the teacher a user brings (--teacher)
    "check_teacher_option",
    "with_image_teacher",
    "text_teacher_label",
    "teacher_metadata",
    # running
    "main",
    "parse_command",
    "run_command",
    "resolve",
    "fit",
    "run_all",
    "run_student",
    "get_teacher",
    "seed_everything",
    "TASK_NAMES",
    "run_task",
    "RunLog",
    "choose_on_validation",
    "network",
    "omniglot",
    "SELF_TAUGHT_SETTING",
    # text peers
    "distilled_model2vec",
    "model2vec_peers",
    "pca_peers",
    "peer_records",
    "peer_setting",
    "peer_speed",
    # results
    "write_results",
    "load_done",
    "load_runs",
    "aggregate",
    "metric_mean",
    "option_string",
    "provenance",
    "machine",
    "versions",
    "pareto_front",
    "plot_pareto",
    "speed_front",
]
