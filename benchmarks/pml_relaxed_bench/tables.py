"""The summary tables shared by the report and the plots: one :class:`Table` per (dataset, eval_split, setting).

Kept apart from :mod:`.report` (files) and :mod:`.plots` (figures) so that both read the same tables
and neither imports the other's module.
"""

from __future__ import annotations

from typing import Callable, Dict, Hashable, Iterable, List, NamedTuple, Optional, Sequence

#: The one mapping of metric keys (as the runner records them) to the labels shown in tables/plots.
METRIC_LABELS: Dict[str, str] = {
    "recall_at_1": "R@1",
    "recall_at_2": "R@2",
    "recall_at_4": "R@4",
    "recall_at_8": "R@8",
    "mean_average_precision_at_r": "MAP@R",
    "r_precision": "RP",
    "NMI": "NMI",
}


class Table(NamedTuple):
    """The summary rows of one (dataset, eval_split, setting) table, each list sorted by R@1."""

    dataset: str
    eval_split: str
    setting: str
    teachers: List[dict]
    others: List[dict]


def metric_mean(row: dict, metric: str) -> Optional[float]:
    """The mean of ``metric`` in a summary row, or None when the group never reported it."""
    stats = row["metrics"].get(metric)
    return None if stats is None else stats["mean"]


def first_per(rows: Iterable[dict], key: Callable[[dict], Hashable]) -> List[dict]:
    """The first row of each ``key``, in order."""
    first: Dict[Hashable, dict] = {}
    for row in rows:
        first.setdefault(key(row), row)
    return list(first.values())


def _by_r1(rows: Iterable[dict]) -> List[dict]:
    """Sorted by R@1 mean, best first; rows without R@1 last."""
    return sorted(rows, key=lambda r: (metric_mean(r, "recall_at_1") is None, -(metric_mean(r, "recall_at_1") or 0)))


def tables(summary: Sequence[dict]) -> List[Table]:
    """Splits a summary into one ``Table`` per (dataset, eval_split, setting).

    Settings come from the non-teacher rows (a dataset with teacher rows only gets the teachers'
    settings). A table shows the teacher rows of its own setting, or else every teacher row of the
    same dataset and eval_split (one per method and dim), so both ways of recording teachers work.
    """
    combos: Dict[tuple, List[dict]] = {}
    for row in summary:
        combos.setdefault((row["dataset"], row["eval_split"]), []).append(row)
    result = []
    for (dataset, eval_split), rows in combos.items():
        teachers = [r for r in rows if r["kind"] == "teacher"]
        others = [r for r in rows if r["kind"] != "teacher"]
        unique_teachers = first_per(teachers, lambda r: (r["method"], r["student_dim"]))
        for setting in dict.fromkeys(r["setting"] for r in (others or teachers)):
            shown = [t for t in teachers if t["setting"] == setting] or unique_teachers
            result.append(
                Table(dataset, eval_split, setting, _by_r1(shown), _by_r1(r for r in others if r["setting"] == setting))
            )
    return result
