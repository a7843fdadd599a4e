"""Turns run records, of the metric benchmark or of a task, into results files: JSON, CSV, Markdown and plots.

``write_results`` writes, in ``out_dir``: ``results.json`` (metadata, runs, summary), ``results.csv`` (one
row per aggregated group) and ``results.md`` (a header from the metadata, then the tables). The metric
benchmark's records (the default) group by dataset, eval_split, setting, method, kind and student_dim, with
one table per dataset, eval_split and setting, and the plots ``r1_mapr_<dataset>_<eval_split>.png`` /
``recall_at_k_<dataset>_<eval_split>.png`` (see ``pml_relaxed_bench.plots``); a task's records
(``task_metrics`` given) group by split, setting, method and options, in one table of those metrics.
:func:`machine`, :func:`versions` and :func:`provenance` describe where and with what the numbers were made.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import faiss
import numpy as np
import pytorch_metric_learning
import torch

from pml_relaxed import __version__

from .plots import plot_r1_mapr, plot_recall_at_k
from .tables import METRIC_LABELS, Table, first_per, metric_mean, tables

BOLD_METRICS = ("recall_at_1", "mean_average_precision_at_r")  # best non-teacher value in bold in results.md
MISSING = "–"  # shown in place of a metric (or value) that a group does not have
GROUP_KEYS = ("dataset", "eval_split", "setting", "method", "kind", "student_dim")
REQUIRED_KEYS = ("dataset", "eval_split", "setting", "method", "kind", "metrics")
#: a task's records: grouped by (split, setting, method, options) over seeds
TASK_GROUP_KEYS = ("split", "setting", "method", "options")
TASK_REQUIRED_KEYS = ("task", "split", "setting", "method", "seed", "options", "metrics")
PathLike = Union[str, Path]


def machine() -> str:
    """The CPU (model name, cores, torch threads), the GPU and the platform, for the results' metadata."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {gpu}, {platform.platform()}"


def versions() -> dict:
    """The versions of pml-relaxed, torch, PML, FAISS and Python, for the results' metadata."""
    return {
        "pml_relaxed": __version__,
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "faiss": faiss.__version__,
        "python": platform.python_version(),
    }


def provenance(command: Union[str, Sequence[str]], key: str = "command") -> Dict[str, Any]:
    """The metadata every results file starts with: ``{key: command, "machine", "date", "versions"}``.

    Args:
        command: the exact command line (``key="command"``), or every call that wrote to the folder, in order
            (``key="commands"``).
        key: ``"command"`` or ``"commands"``.
    """
    return {
        key: command,
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": versions(),
    }


def _check_record(record: object, where: str, required: Sequence[str] = REQUIRED_KEYS) -> dict:
    if not isinstance(record, dict):
        raise TypeError(f"{where} must be a dict (one run record); got {type(record).__name__}")
    missing = [key for key in required if key not in record]
    if missing:
        raise ValueError(
            f"{where} is missing key(s) {missing}: expected at least {list(required)}, got {sorted(record)}"
        )
    if not isinstance(record["metrics"], dict):
        raise TypeError(
            f"{where}['metrics'] must be a dict of metric name -> number; got {type(record['metrics']).__name__}"
        )
    numbers = [(f"{where}['metrics'][{n!r}]", v) for n, v in record["metrics"].items()]
    numbers += [(f"{where}[{k!r}]", record.get(k)) for k in ("train_seconds", "throughput")]
    for name, value in numbers:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"{name} must be a number or None; got {type(value).__name__} ({value!r})")
    return record


def _check_runs(runs: object, required: Sequence[str] = REQUIRED_KEYS) -> List[dict]:
    if isinstance(runs, (str, bytes, Mapping)) or not isinstance(runs, Iterable):
        raise TypeError(f"runs must be a list of run-record dicts; got {type(runs).__name__}")
    return [_check_record(record, f"runs[{i}]", required) for i, record in enumerate(runs)]


def load_runs(path: PathLike) -> List[dict]:
    """Reads run records from a ``runs.jsonl`` file (one JSON object per line; blank lines skipped).

    Args:
        path: the JSON-lines file the runner appends to.

    Returns:
        The records, in file order.

    Raises:
        ValueError: if a line is not valid JSON, not an object, or lacks a required key (the message
            names the file and line number).
        TypeError: if a field has the wrong type.
    """
    runs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}: line {number} is not valid JSON ({e.msg} at column {e.colno}): {line.strip()[:80]!r}"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}: line {number} must be a JSON object (one run record); got {type(record).__name__}"
                )
            runs.append(_check_record(record, f"{path}: line {number}"))
    return runs


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    return None if numerator is None or not denominator else numerator / denominator


def _metric_stats(records: Sequence[dict]) -> Dict[str, Dict[str, float]]:
    names = list(dict.fromkeys(n for r in records for n, v in r["metrics"].items() if v is not None))
    names.sort(key=lambda n: (list(METRIC_LABELS).index(n) if n in METRIC_LABELS else len(METRIC_LABELS), n))
    stats = {}
    for name in names:
        values = np.array([r["metrics"][name] for r in records if r["metrics"].get(name) is not None], float)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        stats[name] = {"mean": float(np.mean(values)), "std": std, "n": len(values)}
    return stats


def _teacher_reference(runs: Sequence[dict], row: dict) -> List[dict]:
    """Teacher records for a non-teacher group: same dataset and eval_split, preferring the same
    setting; a run repeated per setting counts once; if several teachers remain, those whose
    dimension equals the group's ``teacher_dim`` are preferred."""
    teachers = [
        r
        for r in runs
        if r["kind"] == "teacher" and r["dataset"] == row["dataset"] and r["eval_split"] == row["eval_split"]
    ]
    teachers = [r for r in teachers if r["setting"] == row["setting"]] or teachers
    teachers = first_per(teachers, lambda r: (r["method"], r.get("seed"), r.get("student_dim")))
    return [r for r in teachers if r.get("student_dim") == row["teacher_dim"]] or teachers


def aggregate(runs: Sequence[dict]) -> List[dict]:
    """Groups runs by (dataset, eval_split, setting, method, kind, student_dim) and summarises seeds.

    Args:
        runs: run records (see ``load_runs``).

    Returns:
        One dict per group, in order of first appearance, with the group keys, ``n_seeds``,
        ``seeds``, ``teacher_dim``, ``metrics`` (``{name: {"mean", "std", "n"}}``; std is the
        sample std, ddof=1, and 0.0 for one seed), ``train_seconds_mean`` and ``throughput_mean``
        (None when absent), and for non-teacher groups ``teacher_r1_kept`` (mean R@1 / teacher mean
        R@1) and ``speedup_vs_teacher`` (throughput / teacher throughput), None when not computable.

    Raises:
        TypeError, ValueError: if ``runs`` is not a list of well-formed records.
    """
    runs = _check_runs(runs)
    groups: Dict[tuple, List[dict]] = {}
    for record in runs:
        groups.setdefault(tuple(record.get(k) for k in GROUP_KEYS), []).append(record)
    summary = []
    for key, records in groups.items():
        row: Dict[str, Any] = dict(zip(GROUP_KEYS, key))
        row["n_seeds"] = len(records)
        row["seeds"] = [r.get("seed") for r in records]
        row["teacher_dim"] = next((r["teacher_dim"] for r in records if r.get("teacher_dim") is not None), None)
        row["metrics"] = _metric_stats(records)
        row["train_seconds_mean"] = _mean(r.get("train_seconds") for r in records)
        row["throughput_mean"] = _mean(r.get("throughput") for r in records)
        row["teacher_r1_kept"] = row["speedup_vs_teacher"] = None
        if row["kind"] != "teacher":
            reference = _teacher_reference(runs, row)
            teacher_r1 = _mean(r["metrics"].get("recall_at_1") for r in reference)
            row["teacher_r1_kept"] = _ratio(metric_mean(row, "recall_at_1"), teacher_r1)
            row["speedup_vs_teacher"] = _ratio(row["throughput_mean"], _mean(r.get("throughput") for r in reference))
        summary.append(row)
    return summary


def _write_csv(summary: Sequence[dict], path: Path) -> None:
    metrics = list(METRIC_LABELS) + sorted({m for r in summary for m in r["metrics"]} - set(METRIC_LABELS))
    columns = list(GROUP_KEYS) + ["n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    columns += ["train_seconds_mean", "throughput_mean", "teacher_r1_kept", "speedup_vs_teacher"]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for r in summary:
            flat = {k: r[k] for k in columns if k in r and r[k] is not None}
            for m, stats in r["metrics"].items():
                flat[f"{m}_mean"], flat[f"{m}_std"] = stats["mean"], stats["std"]
            writer.writerow(flat)


def _format_metric(row: dict, metric: str, best: Optional[float]) -> str:
    stats = row["metrics"].get(metric)
    if stats is None:
        return MISSING
    text = f"{100 * stats['mean']:.1f}" + (f" ± {100 * stats['std']:.1f}" if stats["n"] > 1 else "")
    is_best = best is not None and row["kind"] != "teacher" and stats["mean"] == best
    return f"**{text}**" if is_best else text


def _markdown_table(table: Table) -> List[str]:
    rows = table.teachers + table.others
    has_kept = any(r["teacher_r1_kept"] is not None for r in rows)
    has_speed = any(r["throughput_mean"] is not None for r in rows)
    header = ["method", "kind", "dim", *METRIC_LABELS.values(), "seeds"]
    header += (["kept %"] if has_kept else []) + (["items/s", "speed-up"] if has_speed else [])
    best = {
        m: max((metric_mean(r, m) for r in table.others if metric_mean(r, m) is not None), default=None)
        for m in BOLD_METRICS
    }
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    for r in rows:
        cells = [MISSING if r[k] is None else str(r[k]).replace("|", "\\|") for k in ("method", "kind", "student_dim")]
        cells += [_format_metric(r, m, best.get(m)) for m in METRIC_LABELS] + [str(r["n_seeds"])]
        if has_kept:
            cells.append(MISSING if r["teacher_r1_kept"] is None else f"{100 * r['teacher_r1_kept']:.1f}")
        if has_speed:
            cells.append(MISSING if r["throughput_mean"] is None else f"{r['throughput_mean']:,.0f}")
            cells.append(MISSING if r["speedup_vs_teacher"] is None else f"{r['speedup_vs_teacher']:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(metadata: Mapping[str, Any], title: str) -> List[str]:
    """The Markdown header of every ``results.md``: the title, then command(s), machine, date and versions."""
    lines = [f"# {title}", ""]
    commands = metadata.get("commands")
    if commands:  # every call that wrote to the folder, in order
        lines += ["- **Commands** (commands.txt):", ""] + [f"      {c}" for c in commands] + [""]
    keys = (
        ("command", "Command"),
        ("machine", "Machine"),
        ("date", "Date"),
        ("versions", "Versions"),
        ("teacher", "Teacher"),
    )
    for key, label in keys:
        value = metadata.get(key)
        if isinstance(value, Mapping):  # e.g. versions: {"torch": "2.13"}
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):  # e.g. command as argv
            value = " ".join(map(str, value))
        if value is not None:
            lines.append(f"- **{label}:** " + (f"`{value}`" if key == "command" else str(value)))
    return lines


def render_markdown(summary: Sequence[dict], metadata: Mapping[str, Any]) -> str:
    """The metric benchmark's ``results.md``: a metadata header, then one table per (dataset, eval_split, setting)."""
    lines = _header(metadata, str(metadata.get("title", "Benchmark results")))
    lines += [
        "",
        "Metrics in %: mean ± sample std over seeds (no ± for a single seed). Teacher rows first, "
        "then by R@1. **Bold**: best non-teacher R@1 and MAP@R. kept % = R@1 / teacher R@1; "
        "speed-up = student items/s / teacher items/s.",
        "",
    ]
    for table in tables(summary):
        lines += [f"## {table.dataset} · {table.eval_split} · {table.setting}", ""]
        lines += _markdown_table(table) + [""]
    return "\n".join(lines)


def option_string(options: Mapping[str, Any]) -> str:
    """A task run's options as one sorted ``key=value`` string (``-`` for none), e.g. ``sigma=0.5 temperature=0.1``."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(options.items())) or "-"


def summarise_tasks(runs: Sequence[dict]) -> List[dict]:
    """A task's runs grouped by (split, setting, method, options): per metric the mean and the sample std
    (ddof=1; 0.0 for one seed) over seeds, as ``row[metric]`` and ``row[metric + "_std"]``; ``seeds``: the count."""
    groups: Dict[tuple, List[dict]] = {}
    for r in _check_runs(runs, TASK_REQUIRED_KEYS):
        groups.setdefault((r["split"], r["setting"], r["method"], option_string(r["options"])), []).append(r)
    rows = []
    for key, records in groups.items():
        row: Dict[str, Any] = dict(zip(TASK_GROUP_KEYS, key))
        row["seeds"] = len(records)
        for metric, stats in _metric_stats(records).items():
            row[metric], row[f"{metric}_std"] = stats["mean"], stats["std"]
        rows.append(row)
    return rows


def _write_task_tables(rows: Sequence[dict], metrics: Sequence[str], metadata: Mapping[str, Any], out: Path):
    columns = [*TASK_GROUP_KEYS, "seeds"] + [c for m in metrics for c in (m, f"{m}_std")]
    cell = lambda value: f"{value:.6f}" if isinstance(value, float) else str(value)  # noqa: E731
    csv_lines = [",".join(columns)] + [",".join(cell(row.get(c, "")) for c in columns) for row in rows]
    (out / "results.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    md = _header(metadata, str(metadata.get("title", "Task results")))
    md += ["", "| split | setting | method | options | seeds | " + " | ".join(metrics) + " |"]
    md += ["|" + "---|" * (5 + len(metrics))]
    for row in sorted(rows, key=lambda r: tuple(r[k] for k in TASK_GROUP_KEYS)):
        cells = [f"{100 * row[m]:.2f} ± {100 * row[m + '_std']:.2f}" if m in row else "" for m in metrics]
        md.append(
            "| " + " | ".join(str(row[k]) for k in (*TASK_GROUP_KEYS, "seeds")) + " | " + " | ".join(cells) + " |"
        )
    (out / "results.md").write_text("\n".join(md) + "\n", encoding="utf-8")


def write_results(
    runs: Sequence[dict],
    out_dir: PathLike,
    metadata: Optional[Mapping[str, Any]] = None,
    task_metrics: Optional[Sequence[str]] = None,
) -> List[Path]:
    """Writes results.json, results.csv, results.md (and, for the metric benchmark, the plots) into ``out_dir``
    (created if needed): the one results writer of every mode.

    Args:
        runs: run records (see ``load_runs``): the metric benchmark's, or with ``task_metrics`` a task's.
        out_dir: output directory.
        metadata: free-form run description (see :func:`provenance`); ``title``, ``command`` (or ``commands``),
            ``machine``, ``date`` and ``versions`` are shown in the Markdown header.
        task_metrics: the metric columns of a task's records (e.g. ``("top1_accuracy",)``); None: the metric
            benchmark's records, summarised by :func:`aggregate`.

    Returns:
        The paths written, in order: JSON, CSV, Markdown, then the PNG files.

    Raises:
        TypeError: if ``metadata`` is not a mapping, or ``runs`` is not a list of records.
        ValueError: if a record lacks a required key.
    """
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict (or None); got {type(metadata).__name__}")
    out = Path(out_dir)
    if task_metrics is None:
        runs = _check_runs(runs)
        summary = aggregate(runs)
    else:
        runs = _check_runs(runs, TASK_REQUIRED_KEYS)
        summary = summarise_tasks(runs)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.csv", out / "results.md"]
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump({"metadata": dict(metadata), "runs": runs, "summary": summary}, f, indent=2, default=str)
    if task_metrics is not None:
        _write_task_tables(summary, list(task_metrics), metadata, out)
        return paths
    _write_csv(summary, paths[1])
    paths[2].write_text(render_markdown(summary, metadata), encoding="utf-8")
    paths += plot_r1_mapr(summary, out / "r1_mapr.png")
    paths += plot_recall_at_k(summary, out / "recall_at_k.png")
    return paths
