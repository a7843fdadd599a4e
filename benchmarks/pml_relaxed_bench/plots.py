"""Benchmark plots: R@1 / MAP@R bars and Recall@K curves, one PNG per (dataset, eval_split).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot: no window, no global backend
switch, no figure left open). File names: the suffix ``_<dataset>_<eval_split>`` is always added
before the extension of ``path``, even when the summary holds a single combination, so names do not
depend on what else was run: ``plot_r1_mapr(summary, "out/r1_mapr.png")`` writes
``out/r1_mapr_omniglot_test.png``. Characters other than letters, digits, ``.`` and ``-`` in the
dataset or split name become ``-``.

Values are shown in percent. Each panel is one setting; its teacher (the best teacher row of that
setting's table, see ``pml_relaxed_bench.tables.tables``) is drawn dashed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from .tables import METRIC_LABELS, Table, tables

KIND_COLORS = {"transfer": "#1f77b4", "scratch": "#ff7f0e", "combined": "#2ca02c"}
KIND_MARKERS = {"transfer": "o", "scratch": "s", "combined": "^"}
OTHER_COLOR = "#7f7f7f"
TEACHER_STYLES = {
    "recall_at_1": dict(color="black", ls="--", lw=1.4),
    "mean_average_precision_at_r": dict(color="#666666", ls=(0, (2, 2)), lw=1.4),
}
# tab20's dark shades first, then its light ones: the first 10 methods get clearly distinct colours.
PALETTE = [matplotlib.colormaps["tab20"](i) for i in [*range(0, 20, 2), *range(1, 20, 2)]]
DPI = 120
PathLike = Union[str, Path]


def combo_path(path: PathLike, dataset: str, eval_split: str) -> Path:
    """``path`` with ``_<dataset>_<eval_split>`` inserted before its extension (``.png`` if none)."""
    path = Path(path)
    slug = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", str(part)).strip("-") or "none" for part in (dataset, eval_split))
    return path.with_name(f"{path.stem}_{slug}{path.suffix or '.png'}")


def _by_combo(summary: Sequence[dict]) -> Dict[Tuple[str, str], List[Table]]:
    if isinstance(summary, (str, bytes, dict)) or not all(isinstance(r, dict) and "metrics" in r for r in summary):
        raise TypeError(
            f"summary must be a list of summary rows as returned by aggregate(runs); got {type(summary).__name__}"
        )
    combos: Dict[Tuple[str, str], List[Table]] = {}
    for table in tables(summary):
        combos.setdefault((table.dataset, table.eval_split), []).append(table)
    return combos


def _stat(row: dict, metric: str) -> Tuple[float, float]:
    """(mean, std) in percent; NaN when the row lacks the metric."""
    stats = row["metrics"].get(metric)
    return (math.nan, math.nan) if stats is None else (100 * stats["mean"], 100 * stats["std"])


def _labels(rows: Sequence[dict]) -> List[str]:
    """Method names, with the dimension and then the kind added only where names would repeat."""
    labels = [str(r["method"]) for r in rows]
    if len(set(labels)) < len(labels):
        labels = [f"{label} (d={r['student_dim']})" for label, r in zip(labels, rows)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{r['kind']}]" for label, r in zip(labels, rows)]
    return labels


def _new_figure(width: float, height: float, panels: int) -> Tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _bar_panel(ax, table: Table) -> None:
    rows, height = table.others, 0.38
    y = np.arange(len(rows))
    colors = [KIND_COLORS.get(r["kind"], OTHER_COLOR) for r in rows]
    right = 1.0
    for metric, offset in (("recall_at_1", -height / 2), ("mean_average_precision_at_r", height / 2)):
        stats = np.array([_stat(r, metric) for r in rows], dtype=float).reshape(-1, 2)
        means, stds = stats[:, 0], stats[:, 1]
        hatched = metric != "recall_at_1"
        faces = [to_rgba(c, 0.35) if hatched else c for c in colors]
        ax.barh(
            y + offset,
            np.nan_to_num(means),
            height=height,
            xerr=np.nan_to_num(stds),
            color=faces,
            edgecolor=colors,
            hatch="///" if hatched else None,
            linewidth=0.8,
            error_kw=dict(ecolor="#333333", capsize=2.5, elinewidth=0.9),
        )
        for yi, mean, std in zip(y + offset, means, stds):
            text = "–" if math.isnan(mean) else f"{mean:.1f}"
            right = max(right, np.nan_to_num(mean + std))
            ax.text(
                np.nan_to_num(mean + std),
                yi,
                " " + text,
                va="center",
                fontsize=7,
                color="#333333",
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=0.3),
                zorder=4,
            )
    if table.teachers:
        for metric, style in TEACHER_STYLES.items():
            mean = _stat(table.teachers[0], metric)[0]
            if not math.isnan(mean):
                ax.axvline(mean, zorder=3, **style)
                right = max(right, mean)
    if not rows:
        ax.text(0.5, 0.5, "no student runs", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.set_yticks(y, _labels(rows), fontsize=8)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # best (first) method on top
    ax.set_xlim(0, right * 1.12 + 2)
    ax.set_xlabel("%")
    ax.set_title(table.setting, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _bar_legend(combo: Sequence[Table]) -> List:
    kinds = list(dict.fromkeys(r["kind"] for t in combo for r in t.others))
    handles = [Patch(color=KIND_COLORS.get(k, OTHER_COLOR), label=k) for k in kinds]
    handles += [
        Patch(facecolor="#999999", edgecolor="#999999", label=METRIC_LABELS["recall_at_1"]),
        Patch(
            facecolor=to_rgba("#999999", 0.35),
            edgecolor="#999999",
            hatch="///",
            label=METRIC_LABELS["mean_average_precision_at_r"],
        ),
    ]
    if any(t.teachers for t in combo):
        handles += [Line2D([], [], label=f"teacher {METRIC_LABELS[m]}", **style) for m, style in TEACHER_STYLES.items()]
    return handles


def plot_r1_mapr(summary: Sequence[dict], path: PathLike) -> List[Path]:
    """Bar charts of R@1 and MAP@R (mean ± std over seeds) per method, one panel per setting.

    Args:
        summary: rows returned by ``pml_relaxed_bench.report.aggregate``.
        path: file name template, e.g. ``out/r1_mapr.png`` (see the module docstring for suffixes).

    Returns:
        The PNG files written, one per (dataset, eval_split); empty for an empty summary.

    Raises:
        TypeError: if ``summary`` is not a list of summary rows.
    """
    written = []
    for (dataset, eval_split), combo in _by_combo(summary).items():
        handles, width = _bar_legend(combo), max(6.5, 5.4 * len(combo))
        ncol = min(len(handles), max(2, int(width / 1.5)))
        legend_in, title_in = 0.2 + 0.22 * math.ceil(len(handles) / ncol), 0.6  # inches
        height = 1.3 + legend_in + title_in + 0.5 * max(max(len(t.others) for t in combo), 1)
        fig, axes = _new_figure(width, height, len(combo))
        for ax, table in zip(axes, combo):
            _bar_panel(ax, table)
        teachers = ", ".join(dict.fromkeys(t.teachers[0]["method"] for t in combo if t.teachers))
        fig.suptitle(
            f"{dataset} · {eval_split}: R@1 and MAP@R (mean ± std over seeds)"
            + (f"\ndashed: teacher ({teachers})" if teachers else ""),
            fontsize=11,
        )
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, legend_in / height, 1, 1))  # tight_layout makes room for the suptitle
        written.append(_save(fig, combo_path(path, dataset, eval_split)))
    return written


def _recall_ks(combo: Sequence[Table]) -> List[int]:
    names = {m for t in combo for r in t.teachers + t.others for m in r["metrics"]}
    return sorted(int(match.group(1)) for match in map(re.compile(r"recall_at_(\d+)$").match, names) if match)


def _curve(row: dict, ks: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    means, stds = zip(*(_stat(row, f"recall_at_{k}") for k in ks))
    return np.array(means), np.array(stds)


def plot_recall_at_k(summary: Sequence[dict], path: PathLike) -> List[Path]:
    """Recall@K curves (mean with a ±std band) per method, one panel per setting; teacher dashed.

    Args:
        summary: rows returned by ``pml_relaxed_bench.report.aggregate``.
        path: file name template, e.g. ``out/recall_at_k.png`` (see the module docstring).

    Returns:
        The PNG files written, one per (dataset, eval_split) that has ``recall_at_K`` metrics.

    Raises:
        TypeError: if ``summary`` is not a list of summary rows.
    """
    written = []
    for (dataset, eval_split), combo in _by_combo(summary).items():
        ks = _recall_ks(combo)
        if not ks:
            continue
        legend_rows = math.ceil(max(len(t.others) + len(t.teachers) for t in combo) / 2)
        fig, axes = _new_figure(5.2 * len(combo), 4.2 + 0.2 * legend_rows, len(combo))
        methods = list(dict.fromkeys((r["method"], r["kind"]) for t in combo for r in t.others))
        colors = {method: PALETTE[i % len(PALETTE)] for i, method in enumerate(methods)}  # same colour in all panels
        for ax, table in zip(axes, combo):
            for row, label in zip(table.others, _labels(table.others)):
                means, stds = _curve(row, ks)
                color = colors[row["method"], row["kind"]]
                ax.plot(
                    ks,
                    means,
                    color=color,
                    marker=KIND_MARKERS.get(row["kind"], "D"),
                    ms=4,
                    lw=1.5,
                    label=f"{label} ({row['kind']})",
                )
                ax.fill_between(ks, means - stds, means + stds, color=color, alpha=0.12, lw=0)
            for teacher in table.teachers:
                means, stds = _curve(teacher, ks)
                ax.plot(ks, means, color="black", ls="--", lw=1.6, label=f"{teacher['method']} (teacher)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlim(ks[0] / 1.15, ks[-1] * 1.15)
            ax.set(xlabel="K", ylabel="Recall@K (%)")
            ax.set_title(table.setting, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        fig.suptitle(f"{dataset} · {eval_split}: Recall@K (mean ± std over seeds)", fontsize=11)
        fig.tight_layout()
        written.append(_save(fig, combo_path(path, dataset, eval_split)))
    return written


def pareto_front(points: Dict[str, Sequence[float]]) -> List[str]:
    """Names of the points that no other point dominates (larger is better on every coordinate).

    A point is dominated when another is at least as good on every coordinate and better on one.

    Args:
        points: name -> coordinates, all of the same length (e.g. (R@1, MAP@R, sentences/s)).

    Returns:
        The non-dominated names, in the order of ``points``.

    Raises:
        ValueError: if the points have coordinates of different lengths.
    """
    lengths = {len(p) for p in points.values()}
    if len(lengths) > 1:
        raise ValueError(f"every point needs the same number of coordinates; got lengths {sorted(lengths)}")

    def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [name for name, p in points.items() if not any(dominates(q, p) for q in points.values() if q is not p)]


DIM_MARKERS = {16: "o", 32: "s", 64: "^"}


def _timed_models(summary: Sequence[dict], speeds: Dict[str, float]) -> Dict[str, dict]:
    """The summary rows that have a speed, by model name ``METHOD (D-d)`` (the names of ``speeds``)."""
    models = {f"{r['method']} ({r['student_dim']}-d)": r for r in summary}
    return {name: row for name, row in models.items() if name in speeds}


def speed_front(summary: Sequence[dict], speeds: Dict[str, float]) -> List[str]:
    """The models (``METHOD (D-d)``) on the Pareto front of mean R@1, mean MAP@R and sentences per second.

    Args:
        summary: rows returned by ``pml_relaxed_bench.report.aggregate``.
        speeds: sentences per second by model name; rows without one are left out.
    """
    metrics = ("recall_at_1", "mean_average_precision_at_r")
    models = _timed_models(summary, speeds)
    return pareto_front({n: (*(_stat(r, m)[0] for m in metrics), speeds[n]) for n, r in models.items()})


def plot_pareto(summary: Sequence[dict], speeds: Dict[str, float], path: PathLike, min_speed: float = 0) -> Path:
    """R@1 and MAP@R (mean ± std over seeds) against sentences per second (log scale), one point per model.

    A model is a summary row with a speed: ``speeds[f"{method} ({student_dim}-d)"]``. Colour: the method;
    marker: the dimension; a black edge: on the Pareto front of (R@1, MAP@R, sentences/s) over every
    model drawn.

    Args:
        summary: rows returned by ``pml_relaxed_bench.report.aggregate``.
        speeds: sentences per second by model name; rows without one are left out.
        path: the PNG to write.
        min_speed: if positive, a dotted vertical line at this speed (e.g. a deployment target).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: if ``summary`` is not a list of summary rows.
        ValueError: if no row has a speed.
    """
    _by_combo(summary)  # the same check of the rows as the other plots
    models = _timed_models(summary, speeds)
    if not models:
        raise ValueError(f"no summary row has a speed; speeds has {sorted(speeds)}")
    metrics = ("recall_at_1", "mean_average_precision_at_r")
    front = set(speed_front(summary, speeds))
    methods = list(dict.fromkeys(r["method"] for r in models.values()))
    colors = {method: PALETTE[i % len(PALETTE)] for i, method in enumerate(methods)}
    dims = sorted({r["student_dim"] for r in models.values()})
    markers = {d: DIM_MARKERS.get(d, "*" if d == max(dims) else "D") for d in dims}  # the teacher's: a star
    fig, axes = _new_figure(13, 6.2, 2)
    for ax, metric in zip(axes, metrics):
        for name, row in models.items():
            mean, std = _stat(row, metric)
            on_front = name in front
            ax.errorbar(
                speeds[name],
                mean,
                yerr=std if row.get("n_seeds", 1) > 1 else None,
                color=colors[row["method"]],
                marker=markers[row["student_dim"]],
                ms=9 if on_front else 6,
                mec="black" if on_front else colors[row["method"]],
                mew=1.6 if on_front else 0.5,
                ls="none",
                capsize=2,
            )
        if min_speed > 0:
            ax.axvline(min_speed, color="#555555", ls=":", lw=1.2)
        ax.set_xscale("log")
        ax.set(xlabel="sentences per second (one thread, log scale)", ylabel=f"{METRIC_LABELS[metric]} (%)")
        ax.grid(alpha=0.3, which="both")
    handles = [Patch(color=colors[m], label=m) for m in methods]
    handles += [Line2D([], [], color="#444444", marker=markers[d], ls="none", label=f"{d}-d") for d in dims]
    handles.append(Line2D([], [], color="white", marker="o", mec="black", mew=1.6, ls="none", label="Pareto front"))
    if min_speed > 0:
        handles.append(Line2D([], [], color="#555555", ls=":", label=f"{min_speed:,.0f} sentences/s"))
    ncol = 3
    legend_in = 0.25 + 0.24 * math.ceil(len(handles) / ncol)
    fig.set_size_inches(13, 5.2 + legend_in)
    fig.suptitle("Quality against speed (mean ± std over seeds)", fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_in / (5.2 + legend_in), 1, 1))
    return _save(fig, Path(path))
