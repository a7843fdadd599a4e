"""benchmarks/stml_init_similarity.py: pair statistics against an explicit loop, and a digits run."""

import json
import math

import pytest
import torch

from tests.helpers.benchmark_scripts import load_script


@pytest.mark.parametrize("center", [False, True])
def test_pair_statistics_match_an_explicit_loop(center):
    module = load_script("stml_init_similarity")
    embeddings = torch.randn(7, 3, generator=torch.Generator().manual_seed(0)) + 2.0
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    stats = module.pair_statistics(embeddings, labels, [1.0, 3.0], center)
    rows = embeddings.double().tolist()
    if center:
        means = [sum(r[c] for r in rows) / 7 for c in range(3)]
        rows = [[a - m for a, m in zip(r, means)] for r in rows]
    x = [[a / math.sqrt(sum(b * b for b in r)) for a in r] for r in rows]
    pairs = [(i, j) for i in range(7) for j in range(7) if i != j]
    cos = {(i, j): sum(a * b for a, b in zip(x[i], x[j])) for i, j in pairs}
    assert stats["pairs"] == 42 and math.isclose(stats["mean_cos"], sum(cos.values()) / 42, rel_tol=1e-12)
    for sigma in (1.0, 3.0):
        for name, keep in (("all", lambda i, j: True), ("same_class", lambda i, j: labels[i] == labels[j])):
            chosen = [math.exp(-(math.dist(x[i], x[j]) ** 2) / sigma) for i, j in pairs if keep(i, j)]
            assert math.isclose(stats[f"w_sigma{sigma:g}_{name}"], sum(chosen) / len(chosen), rel_tol=1e-9)
        other = [math.exp(-(math.dist(x[i], x[j]) ** 2) / sigma) for i, j in pairs if labels[i] != labels[j]]
        assert math.isclose(stats[f"w_sigma{sigma:g}_other_class"], sum(other) / len(other), rel_tol=1e-9)


def test_digits_run_writes_its_files(tmp_path):
    module = load_script("stml_init_similarity")
    args = module.get_args_parser().parse_args(["--datasets", "digits", "--seeds", "2", "--output-dir", str(tmp_path)])
    rows = module.main(args)
    assert [(r["dataset"], r["seed"], r["embeddings"]) for r in rows] == [
        ("digits", s, e) for s in (0, 1) for e in ("as is", "centred")
    ]
    assert rows[0]["mean_cos"] != rows[2]["mean_cos"]  # two initialisations
    assert abs(rows[1]["mean_cos"]) < abs(rows[0]["mean_cos"])  # centred: no common direction left
    saved = json.loads((tmp_path / "stml_init_similarity.json").read_text())
    assert saved["rows"] == rows and "stml_init_similarity.py" in saved["command"]
    assert "| digits | mlp256->64 | 1 | centred |" in (tmp_path / "stml_init_similarity.md").read_text()
