"""Sentences per second: the all-MiniLM-L6-v2 teacher against hashed n-gram students, on this CPU.

Raw Banking77 test strings in, embeddings out (tokenisation and hashing included, the students'
tokenisation cache emptied before every batch), batches of 256, best of ``--repeats``; the ratio is
against the teacher measured in the same run with the same thread count.

    python benchmarks/text_throughput.py --threads 1 2

Writes ``text_throughput.json`` and ``text_throughput.md`` in ``--output-dir``.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from pml_relaxed.bench.throughput import sentences_per_second
from pml_relaxed.datasets import Banking77
from pml_relaxed.models import HashedNgramEmbedder, SentenceTransformerTeacher


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None,
                        help="Banking77 folder (default: $PML_RELAXED_BANKING77, $PML_RELAXED_DATA/banking77 "
                             "or the cache)")
    parser.add_argument("--texts", type=int, default=1024, help="number of test texts to embed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output-dir", default="results/throughput")
    return parser


def uncached(student: HashedNgramEmbedder):
    def encode(batch):
        student.hasher.clear_cache()
        return student(batch)

    return encode


def main(args: argparse.Namespace) -> list:
    texts = list(Banking77(args.data_root, split="test").texts)[: args.texts]
    teacher = SentenceTransformerTeacher()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        teacher_speed = sentences_per_second(teacher, texts, args.batch_size, args.repeats)
        rows.append({"model": "all-MiniLM-L6-v2 (384-d)", "threads": threads, "sentences_per_s": teacher_speed,
                     "ratio": 1.0})
        print(json.dumps(rows[-1]), flush=True)
        for dim in args.dims:
            student = HashedNgramEmbedder(embedding_dim=dim, num_buckets=2**17).eval()
            speed = sentences_per_second(uncached(student), texts, args.batch_size, args.repeats)
            rows.append({"model": f"HashedNgramEmbedder ({dim}-d)", "threads": threads, "sentences_per_s": speed,
                         "ratio": speed / teacher_speed})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = " ".join(f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                       for k, v in vars(args).items())
    meta = {"command": f"python benchmarks/text_throughput.py {options}",
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}"}
    (out / "text_throughput.json").write_text(json.dumps({"metadata": meta, "rows": rows}, indent=1))
    lines = ["| model | threads | sentences/s | vs teacher |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['threads']} | {r['sentences_per_s']:,.0f} | {r['ratio']:.0f}x |" for r in rows]
    (out / "text_throughput.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
