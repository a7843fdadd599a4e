"""The README's first command, shortened: the digits example runs end to end and prints its table."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_transfer_runs(capsys, tmp_path):
    example = load("digits_transfer")
    plot_path = tmp_path / "plots" / "recall.png"
    args = example.get_args_parser().parse_args(
        ["--teacher-epochs", "2", "--student-epochs", "3", "--plot-path", str(plot_path)]
    )
    results = example.main(args)
    assert len(results) == 3
    for scores in results.values():
        assert 0.0 <= scores["MAP@R"] <= scores["R@1"] <= 1.0
        recall = [scores["recall_at_k"][k] for k in example.KS]
        assert recall[0] == pytest.approx(scores["R@1"]), "Recall@1 is PML's precision_at_1"
        assert recall == sorted(recall) and recall[-1] <= 1.0, "Recall@K never decreases with K"
    teacher = next(v for k, v in results.items() if k.startswith("teacher"))
    assert teacher["R@1"] > 0.5, "a ProxyAnchor teacher should beat chance (0.2) by far on digits 5-9"
    captured = capsys.readouterr()
    assert "unseen classes 5-9" in captured.out and "RelaxedContrastive from teacher" in captured.out
    assert f"Recall@K plot saved to {plot_path.resolve()}" in captured.out
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot_path.stat().st_size > 10_000
    # one progress bar per training, at its last epoch (PML's own per-epoch bars are hidden)
    for desc, epochs in [
        ("teacher (64-d, ProxyAnchor)", 2),
        ("student (8-d, from teacher)", 3),
        ("student (8-d, from scratch)", 3),
    ]:
        assert f"{desc}: 100%" in captured.err and f"{epochs}/{epochs}" in captured.err
    assert "total_loss=" not in captured.err
