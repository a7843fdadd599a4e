import csv
import json
import re

import matplotlib.image
import numpy as np
import pytest

from pml_relaxed_bench.plots import combo_path, pareto_front, plot_pareto, plot_r1_mapr, plot_recall_at_k
from pml_relaxed_bench.report import METRIC_LABELS, aggregate, load_runs, render_markdown, tables, write_results

SETTINGS = ("dim_reduction", "self_transfer")
METHODS = {"relaxed_contrastive": ("transfer", 0.60), "rkd": ("transfer", 0.50), "proxy_anchor": ("scratch", 0.55)}
SEED_OFFSETS = (-0.01, 0.0, 0.022)
TEACHER_R1, TEACHER_THROUGHPUT = 0.70, 1000.0
METADATA = {
    "command": "pml-relaxed bench --dataset omniglot",
    "machine": "test box",
    "date": "2025-01-02",
    "versions": {"torch": "2.13.0", "pytorch_metric_learning": "2.9.0"},
}


def _metrics(r1: float) -> dict:
    return {
        "recall_at_1": r1,
        "recall_at_2": r1 + 0.1,
        "recall_at_4": r1 + 0.15,
        "recall_at_8": r1 + 0.2,
        "mean_average_precision_at_r": r1 / 2,
        "r_precision": r1 * 0.7,
        "NMI": 0.5 + r1 / 10,
    }


def _record(setting, method, kind, seed, r1, dim=16, throughput=None, dataset="omniglot", split="test") -> dict:
    return {
        "dataset": dataset,
        "setting": setting,
        "method": method,
        "kind": kind,
        "seed": seed,
        "eval_split": split,
        "student_arch": "conv4-w64",
        "student_dim": dim,
        "teacher_arch": "conv4-w64",
        "teacher_dim": 128,
        "metrics": _metrics(r1),
        "train_seconds": 10.0 + seed,
        "throughput": throughput,
        "hparams": {"lr": 0.001},
    }


def _expected_r1(setting: str, method: str, seed: int) -> float:
    return METHODS[method][1] + (0.05 if setting == "self_transfer" else 0.0) + SEED_OFFSETS[seed]


def _runs(dataset="omniglot", split="test") -> list:
    runs = [
        _record(
            "teacher",
            "teacher:proxy_anchor",
            "teacher",
            0,
            TEACHER_R1,
            dim=128,
            throughput=TEACHER_THROUGHPUT,
            dataset=dataset,
            split=split,
        )
    ]
    for setting in SETTINGS:
        for method, (kind, _) in METHODS.items():
            for seed in range(3):
                runs.append(
                    _record(
                        setting,
                        method,
                        kind,
                        seed,
                        _expected_r1(setting, method, seed),
                        throughput=4000.0 + 100 * seed,
                        dataset=dataset,
                        split=split,
                    )
                )
    return runs


def _group(summary, setting, method):
    (row,) = [r for r in summary if r["setting"] == setting and r["method"] == method]
    return row


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    runs = _runs()
    return out, runs, write_results(runs, out, METADATA)


def test_aggregate_matches_numpy_mean_and_sample_std():
    summary = aggregate(_runs())
    assert len(summary) == 1 + len(SETTINGS) * len(METHODS)
    for setting in SETTINGS:
        for method in METHODS:
            row = _group(summary, setting, method)
            assert row["n_seeds"] == 3
            for name in METRIC_LABELS:
                values = np.array([_metrics(_expected_r1(setting, method, s))[name] for s in range(3)])
                assert row["metrics"][name]["mean"] == pytest.approx(values.mean())
                assert row["metrics"][name]["std"] == pytest.approx(values.std(ddof=1))
                assert row["metrics"][name]["n"] == 3
            assert row["train_seconds_mean"] == pytest.approx(11.0)
            assert row["throughput_mean"] == pytest.approx(4100.0)


def test_teacher_r1_kept_and_speedup_vs_teacher():
    summary = aggregate(_runs())
    row = _group(summary, "self_transfer", "relaxed_contrastive")
    r1 = np.mean([_expected_r1("self_transfer", "relaxed_contrastive", s) for s in range(3)])
    assert row["teacher_r1_kept"] == pytest.approx(r1 / TEACHER_R1)
    assert row["speedup_vs_teacher"] == pytest.approx(4100.0 / TEACHER_THROUGHPUT)
    teacher = _group(summary, "teacher", "teacher:proxy_anchor")
    assert teacher["teacher_r1_kept"] is None and teacher["speedup_vs_teacher"] is None


def test_teacher_repeated_per_setting_uses_the_same_settings_teacher():
    runs = [
        _record("a", "teacher:pa", "teacher", 0, 0.8, dim=128, throughput=500.0),
        _record("b", "teacher:pa", "teacher", 0, 0.4, dim=128, throughput=500.0),
        _record("a", "rkd", "transfer", 0, 0.6, throughput=1000.0),
        _record("b", "rkd", "transfer", 0, 0.3),
    ]
    summary = aggregate(runs)
    assert _group(summary, "a", "rkd")["teacher_r1_kept"] == pytest.approx(0.75)
    assert _group(summary, "a", "rkd")["speedup_vs_teacher"] == pytest.approx(2.0)
    assert _group(summary, "b", "rkd")["teacher_r1_kept"] == pytest.approx(0.75)
    assert _group(summary, "b", "rkd")["speedup_vs_teacher"] is None  # no student throughput
    shown = {t.setting: [r["metrics"]["recall_at_1"]["mean"] for r in t.teachers] for t in tables(summary)}
    assert shown == {"a": [0.8], "b": [0.4]}


def test_teacher_with_own_setting_is_shown_in_every_table():
    found = tables(aggregate(_runs()))
    assert [t.setting for t in found] == list(SETTINGS)
    assert all([r["method"] for r in t.teachers] == ["teacher:proxy_anchor"] for t in found)
    assert [r["method"] for r in found[0].others] == ["relaxed_contrastive", "proxy_anchor", "rkd"]  # by R@1


def test_one_seed_std_is_zero_and_single_seed_has_no_plus_minus():
    summary = aggregate([_record("s", "rkd", "transfer", 0, 0.5)])
    assert summary[0]["metrics"]["recall_at_1"] == {"mean": 0.5, "std": 0.0, "n": 1}
    assert "| rkd | transfer | 16 | **50.0** |" in render_markdown(summary, {})


def test_missing_metric_is_a_dash(tmp_path):
    record = _record("s", "rkd", "transfer", 0, 0.5)
    del record["metrics"]["NMI"]
    write_results([record], tmp_path, {})
    (row,) = [
        line
        for line in (tmp_path / "results.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| rkd |")
    ]
    assert row.split(" | ")[9] == "–"
    with open(tmp_path / "results.csv", newline="") as f:
        assert next(csv.DictReader(f))["NMI_mean"] == ""


def test_write_results_returns_suffixed_paths(written):
    out, _, paths = written
    names = ["results.json", "results.csv", "results.md", "r1_mapr_omniglot_test.png", "recall_at_k_omniglot_test.png"]
    assert paths == [out / name for name in names]


def test_csv_columns_and_one_row_per_group(written):
    out, _, _ = written
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    metric_columns = [f"{m}_{s}" for m in METRIC_LABELS for s in ("mean", "std")]
    assert reader.fieldnames == [
        "dataset",
        "eval_split",
        "setting",
        "method",
        "kind",
        "student_dim",
        "n_seeds",
        *metric_columns,
        "train_seconds_mean",
        "throughput_mean",
        "teacher_r1_kept",
        "speedup_vs_teacher",
    ]
    assert len(rows) == 1 + len(SETTINGS) * len(METHODS)
    row = next(r for r in rows if r["setting"] == "dim_reduction" and r["method"] == "rkd")
    assert float(row["recall_at_1_mean"]) == pytest.approx(0.504)
    assert row["n_seeds"] == "3"


def test_markdown_has_metadata_tables_and_bold_best(written):
    out, _, _ = written
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "`pml-relaxed bench --dataset omniglot`" in text and "torch 2.13.0" in text and "2025-01-02" in text
    assert "## omniglot · test · dim_reduction" in text and "## omniglot · test · self_transfer" in text
    assert "**60.4 ± 1.6**" in text  # best non-teacher R@1 of dim_reduction: relaxed_contrastive
    assert "**30.2 ± 0.8**" in text  # and its MAP@R
    assert "**70.0**" not in text  # the teacher is never bold
    table = text.split("## omniglot · test · dim_reduction")[1].split("##")[0]
    methods = [line.split(" | ")[0].lstrip("| ") for line in table.strip().splitlines()[2:]]
    assert methods == ["teacher:proxy_anchor", "relaxed_contrastive", "proxy_anchor", "rkd"]
    assert "| kept % | items/s | speed-up |" in table and "4.10×" in table


def test_markdown_without_throughput_has_no_speed_columns():
    text = render_markdown(aggregate([_record("s", "rkd", "transfer", 0, 0.5)]), {})
    (header,) = [line for line in text.splitlines() if line.startswith("| method |")]
    assert header.endswith("| NMI | seeds |")  # no kept %, items/s or speed-up without a teacher/throughput


def test_json_round_trips(written):
    out, runs, _ = written
    with open(out / "results.json", encoding="utf-8") as f:
        data = json.load(f)
    assert data == {"metadata": METADATA, "runs": runs, "summary": aggregate(runs)}


@pytest.mark.parametrize("name", ["r1_mapr_omniglot_test.png", "recall_at_k_omniglot_test.png"])
def test_pngs_are_valid_and_non_trivial(written, name):
    out, _, _ = written
    path = out / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_one_plot_per_dataset_and_split(tmp_path):
    summary = aggregate(_runs() + _runs("digits", "val"))
    assert plot_r1_mapr(summary, tmp_path / "bars.png") == [
        tmp_path / "bars_omniglot_test.png",
        tmp_path / "bars_digits_val.png",
    ]
    assert plot_recall_at_k(summary, tmp_path / "rk.png") == [
        tmp_path / "rk_omniglot_test.png",
        tmp_path / "rk_digits_val.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bars_digits_val.png",
        "bars_omniglot_test.png",
        "rk_digits_val.png",
        "rk_omniglot_test.png",
    ]


def test_plots_handle_missing_metrics_and_teacher_only_datasets(tmp_path):
    sparse = _record("s", "rkd", "transfer", 0, 0.5)
    for name in ("mean_average_precision_at_r", "recall_at_8"):
        del sparse["metrics"][name]
    teacher_only = _record("teacher", "teacher:pa", "teacher", 0, 0.9, dim=128, dataset="cub")
    summary = aggregate([sparse, teacher_only])
    assert [p.name for p in plot_r1_mapr(summary, tmp_path / "b.png")] == ["b_omniglot_test.png", "b_cub_test.png"]
    assert [p.name for p in plot_recall_at_k(summary, tmp_path / "k.png")] == ["k_omniglot_test.png", "k_cub_test.png"]
    assert plot_r1_mapr([], tmp_path / "none.png") == []


def test_combo_path_sanitises_names(tmp_path):
    assert combo_path(tmp_path / "r1.png", "CUB 200/x", "test") == tmp_path / "r1_CUB-200-x_test.png"
    assert combo_path("out/plot", "sop", "val").name == "plot_sop_val.png"


def test_plots_reject_non_summary(tmp_path):
    with pytest.raises(TypeError, match="summary must be a list of summary rows"):
        plot_r1_mapr([{"method": "rkd"}], tmp_path / "x.png")


def test_load_runs_reads_jsonl_and_skips_blank_lines(tmp_path):
    runs = _runs()[:3]
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(runs[0]) + "\n\n" + "\n".join(json.dumps(r) for r in runs[1:]) + "\n  \n")
    assert load_runs(path) == runs


def test_load_runs_malformed_line_names_the_line_number(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(_runs()[0]) + '\n\n{"dataset": \n')
    with pytest.raises(ValueError, match=re.escape("line 3 is not valid JSON")):
        load_runs(path)


def test_load_runs_rejects_non_object_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="line 1 must be a JSON object.*got list"):
        load_runs(path)


def test_load_runs_rejects_missing_key_with_line_number(tmp_path):
    record = _runs()[0]
    del record["kind"]
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=r"line 1 is missing key\(s\) \['kind'\]"):
        load_runs(path)


def test_aggregate_rejects_bad_records():
    with pytest.raises(TypeError, match="runs must be a list of run-record dicts; got dict"):
        aggregate({"dataset": "x"})
    with pytest.raises(TypeError, match=r"runs\[0\] must be a dict .*got str"):
        aggregate(["not a record"])
    bad = _record("s", "rkd", "transfer", 0, 0.5)
    bad["metrics"]["recall_at_1"] = "0.5"
    with pytest.raises(TypeError, match=r"runs\[0\]\['metrics'\]\['recall_at_1'\] must be a number or None; got str"):
        aggregate([bad])


def test_write_results_rejects_non_mapping_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata must be a dict .*got list"):
        write_results(_runs(), tmp_path, ["command"])


def test_pareto_front_keeps_the_non_dominated_points():
    points = {
        "fast": (80.0, 40.0, 5e4),
        "good": (90.0, 50.0, 60.0),
        "twin": (90.0, 50.0, 60.0),
        "worse": (75.0, 40.0, 5e4),
    }
    points["mixed"] = (92.0, 39.0, 50.0)  # best R@1, worse MAP@R: not dominated
    assert pareto_front(points) == ["fast", "good", "twin", "mixed"]  # equal points do not dominate each other
    assert pareto_front({}) == []
    with pytest.raises(ValueError, match=r"same number of coordinates; got lengths \[2, 3\]"):
        pareto_front({"a": (1.0, 2.0), "b": (1.0, 2.0, 3.0)})


def test_plot_pareto_draws_the_rows_with_a_speed(tmp_path):
    runs = [
        _record("s", m, "transfer", seed, r1, dim=dim)
        for m, r1 in (("rkd", 0.6), ("pkt", 0.7))
        for dim in (16, 32)
        for seed in (0, 1)
    ]
    summary = aggregate(runs)
    speeds = {"rkd (16-d)": 5e4, "rkd (32-d)": 4e4, "pkt (32-d)": 60.0}
    path = plot_pareto(summary, speeds, tmp_path / "pareto.png", min_speed=3e4)
    assert path == tmp_path / "pareto.png"
    image = matplotlib.image.imread(path)
    assert image.shape[1] > 1000 and image[..., :3].std() > 0.05
    with pytest.raises(ValueError, match="no summary row has a speed"):
        plot_pareto(summary, {"other (8-d)": 1.0}, tmp_path / "none.png")
    with pytest.raises(TypeError, match="summary must be a list of summary rows"):
        plot_pareto([{"method": "rkd"}], speeds, tmp_path / "x.png")
    assert not (tmp_path / "none.png").exists()
