"""A tiny Banking77 (categories.json, train.csv, test.csv) for end-to-end runs."""

import json
from pathlib import Path


def make_banking77(folder: Path, train_intents: int = 4) -> Path:
    """Writes a tiny Banking77 in its on-disk format under ``folder/banking77``: 77 intents, of which the
    first ``train_intents`` (at most 39) have training texts and 3 of the others test texts."""
    root = folder / "banking77"
    root.mkdir()
    intents = [f"intent_{i}" for i in range(77)]
    (root / "categories.json").write_text(json.dumps(intents))
    words = ["card", "transfer", "refund", "pin", "atm", "cash", "top up", "exchange rate"]
    rows = ["text,category"]
    for i in range(train_intents):
        rows += [f'"where is my {words[i % 4]} {i}, please {k}",{intents[i]}' for k in range(6)]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    rows = ["text,category"]
    rows += [f"how do I get my {words[4 + i]} {k}?,{intents[40 + i]}" for i in range(3) for k in range(4)]
    (root / "test.csv").write_text("\n".join(rows) + "\n")
    return root
