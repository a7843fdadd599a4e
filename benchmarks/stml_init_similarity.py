"""How informative STML's relaxed labels are at a random initialisation: the self-taught task's networks.

STML's teacher starts as a copy of the student. Its Gaussian relaxed labels ``w_ij = exp(-||f_i - f_j||^2 /
sigma)`` (L2-normalised embeddings, so ``||f_i - f_j||^2 = 2 - 2 cos_ij``) are half of STML's label; when every
pair of images has a cosine near 1, that half is near 1 for every pair and pulls the whole batch together. This
script embeds the training images of the self-taught task's test split (digits 0-4, Omniglot small1) with the
randomly initialised network of each dataset (``self_taught.SETTING``, eval mode) and reports, over all pairs,
the mean cosine, the mean Gaussian label per sigma, and the same means over pairs of the same class and of
different classes (labels are read for this diagnostic only; the task never reads them). Each initialisation
gives two rows: the embeddings as they are (STML's labels) and centred on their mean first (the labels of
``ContextualSimilarity(center=True)``, here with the mean of all the images rather than of one batch).

    python benchmarks/stml_init_similarity.py --datasets digits omniglot --seeds 3

Writes ``stml_init_similarity.json`` and ``.md`` in ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Dict, List

import torch

from pml_relaxed.datasets import Digits
from pml_relaxed.similarities import GaussianKernel
from pml_relaxed_bench import SELF_TAUGHT_SETTING as SETTING
from pml_relaxed_bench import TASK_DATASETS as DATASETS
from pml_relaxed_bench import machine, network, omniglot, seed_everything, versions


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "omniglot"], choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3, help="random initialisations per dataset (seeds 0, 1, ...)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 3.0], help="Gaussian kernel bandwidths")
    parser.add_argument("--output-dir", default="results/stml_init_similarity")
    return parser


def training_images(dataset: str):
    """(images, labels) the self-taught task trains on at test time: digits 0-4, or Omniglot small1."""
    data = Digits("train") if dataset == "digits" else omniglot("train")
    return data.images, data.labels


def pair_statistics(
    embeddings: torch.Tensor, labels: torch.Tensor, sigmas: List[float], center: bool = False
) -> Dict[str, float]:
    """Means over the pairs i != j of the cosine and of each sigma's Gaussian label, all / same class / other;
    ``center``: of the embeddings minus their mean."""
    embeddings = embeddings.double()
    if center:
        embeddings = embeddings - embeddings.mean(dim=0, keepdim=True)
    f = torch.nn.functional.normalize(embeddings, dim=1)
    cos = f @ f.T
    off_diagonal = ~torch.eye(len(f), dtype=torch.bool)
    same = (labels[:, None] == labels[None, :]) & off_diagonal
    other = labels[:, None] != labels[None, :]
    stats = {"pairs": int(off_diagonal.sum()), "mean_cos": float(cos[off_diagonal].mean())}
    for sigma in sigmas:
        w = GaussianKernel(sigma=sigma)(embeddings)  # the relaxed labels the loss would use
        for name, mask in (("all", off_diagonal), ("same_class", same), ("other_class", other)):
            stats[f"w_sigma{sigma:g}_{name}"] = float(w[mask].mean())
    return stats


def main(args: argparse.Namespace) -> List[dict]:
    rows = []
    for dataset in args.datasets:
        images, labels = training_images(dataset)
        arch, dim = SETTING[dataset]
        for seed in range(args.seeds):
            seed_everything(seed)
            model = network(arch, dim).eval()
            with torch.no_grad():
                embeddings = torch.cat([model(batch) for batch in images.split(512)])
            row = {"dataset": dataset, "network": f"{arch}->{dim}", "seed": seed, "images": len(images)}
            for center in (False, True):
                stats = pair_statistics(embeddings, labels, args.sigmas, center)
                rows.append({**row, "embeddings": "centred" if center else "as is", **stats})
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/stml_init_similarity.py " + shlex.join(sys.argv[1:])
    (out / "stml_init_similarity.json").write_text(
        json.dumps({"command": command, "machine": machine(), "versions": versions(), "rows": rows}, indent=2) + "\n"
    )
    columns = ["mean_cos"] + [f"w_sigma{s:g}_{n}" for s in args.sigmas for n in ("all", "same_class", "other_class")]
    lines = [
        "# Relaxed labels of a randomly initialised network",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}",
        "",
        "| dataset | network | seed | embeddings | " + " | ".join(columns) + " |",
        "|" + "---|" * (4 + len(columns)),
    ]
    for r in rows:
        head = f"| {r['dataset']} | {r['network']} | {r['seed']} | {r['embeddings']} | "
        lines.append(head + " | ".join(f"{r[c]:.4f}" for c in columns) + " |")
    (out / "stml_init_similarity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
