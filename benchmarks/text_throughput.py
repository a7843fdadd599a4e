"""Sentences per second: the all-MiniLM-L6-v2 teacher, hashed n-gram students and Model2Vec, on this CPU.

Raw Banking77 test strings in, embeddings out (tokenisation and hashing included), batches of 256.
The models are timed in interleaved rounds (one pass over the texts per model per round, best round
kept), so a change in the machine's load hits them all alike; the ratio is against the teacher
measured in the same run with the same thread count. The students are timed as they serve:
``HashedNgramEmbedder.encode`` on raw strings (their weights do not change their speed; the
per-text cache of ``NgramHasher.text_ids`` is not used by the batch path). Model2Vec
(``pip install "model2vec[distill]"``) is distilled from the same packaged teacher, once per
dimension, into ``--model2vec-cache``; its Rust tokenizer runs on as many threads as torch
(``TOKENIZERS_PARALLELISM`` is set per thread count).

    python benchmarks/text_throughput.py --threads 1 2

Writes ``text_throughput.json`` and ``text_throughput.md`` in ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from pml_relaxed.datasets import Banking77
from pml_relaxed.models import HashedNgramEmbedder, SentenceTransformerTeacher
from pml_relaxed_bench import machine, versions


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-root",
        default=None,
        help="Banking77 folder (default: $PML_RELAXED_BANKING77, $PML_RELAXED_DATA/banking77 or the cache)",
    )
    parser.add_argument("--texts", type=int, default=1024, help="number of test texts to embed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64], help="student dimensions")
    parser.add_argument(
        "--model2vec-dims",
        type=int,
        nargs="*",
        default=[32, 64, 256],
        help="Model2Vec dimensions (none: no Model2Vec rows)",
    )
    parser.add_argument(
        "--model2vec-dtypes",
        nargs="+",
        default=["float32", "float16"],
        help="vector dtypes of the Model2Vec rows (float16 is model2vec's default)",
    )
    parser.add_argument("--model2vec-cache", default="results/model2vec", help="where distilled models are kept")
    parser.add_argument("--no-teacher", action="store_true", help="no teacher row (it takes a minute per round)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--output-dir", default="results/throughput")
    return parser


def one_pass(encode: Callable, texts: List[str], batch_size: int) -> float:
    """Seconds for one pass of ``encode`` over ``texts`` in batches."""
    with torch.no_grad():
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            encode(texts[i : i + batch_size])
        return time.perf_counter() - start


def interleaved_speeds(
    encoders: Dict[str, Callable], texts: List[str], batch_size: int, repeats: int
) -> Dict[str, float]:
    """Sentences per second of each encoder: best of ``repeats`` rounds, each round timing every encoder once."""
    for encode in encoders.values():  # warm-up: lazy initialisation, allocator
        encode(texts[:batch_size])
    best = {name: float("inf") for name in encoders}
    for _ in range(repeats):
        for name, encode in encoders.items():
            best[name] = min(best[name], one_pass(encode, texts, batch_size))
    return {name: len(texts) / seconds for name, seconds in best.items()}


def student_encoder(dim: int, batch_size: int) -> Callable:
    student = HashedNgramEmbedder(embedding_dim=dim, num_buckets=2**17).eval()
    return lambda batch: student.encode(batch, batch_size=batch_size)


def model2vec_encoder(dim: int, dtype: str, cache: Path, batch_size: int) -> Callable:
    from pml_relaxed.models.sentence_transformer_teacher import default_model_path
    from pml_relaxed_bench import distilled_model2vec

    model = distilled_model2vec(default_model_path(), dim, cache, dtype)
    return lambda batch: model.encode(batch, batch_size=batch_size, use_multiprocessing=False)


def main(args: argparse.Namespace) -> list:
    texts = list(Banking77(args.data_root, split="test").texts)[: args.texts]
    encoders: Dict[str, Callable] = {}
    if not args.no_teacher:
        encoders["all-MiniLM-L6-v2 (384-d)"] = SentenceTransformerTeacher()
    for dim in args.dims:
        encoders[f"HashedNgramEmbedder ({dim}-d)"] = student_encoder(dim, args.batch_size)
    for dim in args.model2vec_dims:
        for dtype in args.model2vec_dtypes:
            encoders[f"Model2Vec ({dim}-d, {dtype})"] = model2vec_encoder(
                dim, dtype, Path(args.model2vec_cache), args.batch_size
            )
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
        speeds = interleaved_speeds(encoders, texts, args.batch_size, args.repeats)
        reference = speeds.get("all-MiniLM-L6-v2 (384-d)")
        for name, speed in speeds.items():
            rows.append(
                {
                    "model": name,
                    "threads": threads,
                    "sentences_per_s": speed,
                    "ratio": None if reference is None else speed / reference,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python benchmarks/text_throughput.py " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "versions": versions(),
    }
    (out / "text_throughput.json").write_text(json.dumps({"metadata": meta, "rows": rows}, indent=1))
    lines = ["| model | threads | sentences/s | vs teacher |", "|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {r['threads']} | {r['sentences_per_s']:,.0f} | "
        f"{'–' if r['ratio'] is None else format(r['ratio'], '.0f') + 'x'} |"
        for r in rows
    ]
    (out / "text_throughput.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
