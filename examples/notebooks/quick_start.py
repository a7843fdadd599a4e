# %% [markdown]
# # Quick start: a digits teacher -> an 8-d student, with PML's trainer, sampler and tester
#
# Embedding transfer trains a small *student* embedding model from a frozen *teacher*: the teacher's
# similarities between the samples of a batch become soft labels (the relaxed contrastive loss of
# Kim et al., CVPR 2021). Here:
#
# 1. a **teacher** (MLP, 64-d) learns digits 0-4 with PML's `ProxyAnchorLoss` (PML's `MetricLossOnly`
#    trainer and `MPerClassSampler`);
# 2. a **student** (MLP, 8-d) learns from the frozen teacher with `RelaxedContrastiveLoss` in
#    pml-relaxed's `EmbeddingTransfer` trainer (PML's `MetricLossOnly` plus a teacher), on two augmented
#    views of each image and **no labels**;
# 3. the same student architecture trained **from scratch** with `ProxyAnchorLoss`, for comparison.
#
# PML's `GlobalEmbeddingSpaceTester` scores the three on digits 5-9, never seen in training, with an
# `AccuracyCalculator` (pml-relaxed's `RecallAtKCalculator`, which adds the Recall@K of metric-learning
# papers to PML's metrics).

# %%
# Install (uncomment on a fresh machine; in a clone of the repository: pip install -e ".[test]"):
# pip install pml-relaxed

# %% [markdown]
# ## Data
#
# scikit-learn's `load_digits` (1,797 handwritten digits, 8x8 pixels) ships with scikit-learn: nothing
# is downloaded. `pml_relaxed.datasets.Digits("train")` holds digits 0-4, `Digits("test")` digits 5-9.

# %% Parameters
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets: text bars
QUICK = os.environ.get("PML_RELAXED_NOTEBOOK_QUICK") == "1"  # CI's reduced setting: a few epochs
TEACHER_EPOCHS = 2 if QUICK else 10
STUDENT_EPOCHS = 2 if QUICK else 20
TEACHER_DIM, STUDENT_DIM = 64, 8
SEED = 0
print(f"quick={QUICK}: teacher {TEACHER_EPOCHS} epochs, students {STUDENT_EPOCHS} epochs")

# %%
import contextlib
import io
import logging

import matplotlib.pyplot as plt
import numpy as np
import torch
from pytorch_metric_learning import losses, samplers, testers, trainers

from pml_relaxed.datasets import (
    Compose,
    Digits,
    GaussianNoise,
    MultiViewDataset,
    RandomAffine,
    multi_view_collate,
)
from pml_relaxed.evaluation import RecallAtKCalculator
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.models import MLP
from pml_relaxed.trainers import EmbeddingTransfer

logging.getLogger("PML").setLevel(logging.ERROR)  # PML warns of the models without a separate "embedder"
train_set, test_set = Digits("train"), Digits("test")
print(f"train: {len(train_set)} images of digits {train_set.labels.unique().tolist()}")
print(f"test:  {len(test_set)} images of digits {test_set.labels.unique().tolist()} (never seen in training)")

fig, axes = plt.subplots(1, 10, figsize=(8, 1.2))
for ax, digit in zip(axes, range(10)):
    dataset = train_set if digit < 5 else test_set
    image, label = dataset[int((dataset.labels == digit).nonzero()[0, 0])]
    ax.imshow(image[0], cmap="gray_r")
    ax.set_title(str(label))
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Training helpers
#
# PML's trainers draw one progress bar per epoch; here each epoch prints one line instead, with the mean
# loss of its iterations (PML's `end_of_iteration_hook` and `end_of_epoch_hook`).


# %%
class EpochLog:
    """PML trainer hooks: the mean total loss of each epoch, printed and kept for a plot."""

    def __init__(self, name: str, num_epochs: int):
        self.name, self.num_epochs, self.losses, self.epoch_losses = name, num_epochs, [], []

    def end_of_iteration_hook(self, trainer):
        self.losses.append(float(trainer.losses["total_loss"].detach()))

    def end_of_epoch_hook(self, trainer):
        self.epoch_losses.append(float(np.mean(self.losses)))
        self.losses = []
        if trainer.epoch == 1 or trainer.epoch % 5 == 0 or trainer.epoch == self.num_epochs:
            print(f"{self.name}: epoch {trainer.epoch}/{self.num_epochs}, loss {self.epoch_losses[-1]:.4f}")
        return True


def run(trainer, log):
    trainer.end_of_iteration_hook, trainer.end_of_epoch_hook = log.end_of_iteration_hook, log.end_of_epoch_hook
    with contextlib.redirect_stderr(io.StringIO()):  # PML's per-epoch tqdm bars
        trainer.train(num_epochs=log.num_epochs)


def embedder(out_dim, hidden):
    return torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [hidden], out_dim, batch_norm=True))


augment = Compose([RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1)), GaussianNoise(0.05)])

# %% [markdown]
# ## 1. The teacher: 64-d, ProxyAnchor on digits 0-4


# %%
def train_proxy_anchor(model, out_dim, epochs, name):
    """PML's MetricLossOnly with ProxyAnchorLoss and an MPerClassSampler (6 images per class in a batch)."""
    dataset = Digits("train", transform=augment)
    proxy_anchor = losses.ProxyAnchorLoss(num_classes=10, embedding_size=out_dim)
    trainer = trainers.MetricLossOnly(
        models={"trunk": model},
        optimizers={
            "trunk_optimizer": torch.optim.Adam(model.parameters(), lr=1e-3),
            "metric_loss_optimizer": torch.optim.Adam(proxy_anchor.parameters(), lr=1e-2),
        },
        batch_size=60,
        loss_funcs={"metric_loss": proxy_anchor},
        dataset=dataset,
        sampler=samplers.MPerClassSampler(dataset.labels, m=6, length_before_new_iter=len(dataset)),
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
    )
    log = EpochLog(name, epochs)
    run(trainer, log)
    return log


torch.manual_seed(SEED)
np.random.seed(SEED)  # PML's MPerClassSampler draws from numpy's global generator
teacher = embedder(TEACHER_DIM, 256)
logs = {"teacher (64-d, ProxyAnchor)": train_proxy_anchor(teacher, TEACHER_DIM, TEACHER_EPOCHS, "teacher")}

# %% [markdown]
# ## 2. The student: 8-d, RelaxedContrastiveLoss from the frozen teacher
#
# `MultiViewDataset` returns two augmented views of each image and `multi_view_collate` flattens them
# into the batch; the teacher embeds exactly the views the student sees. The trainer never steps the
# teacher (it is frozen and kept in eval mode). The sampler uses the labels only to build batches with
# 3 images of each class; the loss never reads them.

# %%
torch.manual_seed(SEED + 1)
np.random.seed(SEED + 1)
student = embedder(STUDENT_DIM, 64)
two_views = MultiViewDataset(Digits("train"), transform=augment, num_views=2)
transfer = EmbeddingTransfer(
    models={"trunk": student, "teacher": teacher},
    optimizers={"trunk_optimizer": torch.optim.Adam(student.parameters(), lr=1e-3)},
    batch_size=30,  # 30 images x 2 views = 60 embeddings per batch
    loss_funcs={"transfer_loss": RelaxedContrastiveLoss(sigma=1.0, delta=1.0)},
    dataset=two_views,
    sampler=samplers.MPerClassSampler(two_views.labels, m=3, length_before_new_iter=len(two_views)),
    collate_fn=multi_view_collate,
    dataloader_num_workers=0,
    data_device=torch.device("cpu"),
)
logs["student (8-d, from the teacher)"] = EpochLog("student from the teacher", STUDENT_EPOCHS)
run(transfer, logs["student (8-d, from the teacher)"])
print("teacher still in eval mode:", not teacher.training)

# %% [markdown]
# ## 3. The same student from scratch: 8-d, ProxyAnchor on the labels

# %%
torch.manual_seed(SEED + 1)
np.random.seed(SEED + 1)
scratch = embedder(STUDENT_DIM, 64)
logs["student (8-d, from scratch)"] = train_proxy_anchor(scratch, STUDENT_DIM, STUDENT_EPOCHS, "student from scratch")

# %% [markdown]
# ## 4. PML's tester on digits 5-9
#
# Leave-one-out retrieval: each test image queries the other 895. `recall_at_K` is the fraction of
# queries with at least one image of the same digit among their K nearest neighbours; MAP@R is PML's
# mean average precision at R.

# %%
KS = (1, 2, 4, 8, 16, 32)
tester = testers.GlobalEmbeddingSpaceTester(
    accuracy_calculator=RecallAtKCalculator(
        ks=KS, include=tuple(f"recall_at_{k}" for k in KS) + ("precision_at_1", "mean_average_precision_at_r")
    ),
    dataloader_num_workers=0,
    data_device=torch.device("cpu"),
)
models = {
    "teacher (64-d, ProxyAnchor)": teacher,
    "student (8-d, from the teacher)": student,
    "student (8-d, from scratch)": scratch,
}
scores = {}
for name, model in models.items():
    with contextlib.redirect_stderr(io.StringIO()):  # the tester's progress bar
        accuracies = tester.test({"test": test_set}, 1, model, torch.nn.Identity())["test"]
    scores[name] = {key[: -len("_level0")]: value for key, value in accuracies.items() if key.endswith("_level0")}

print(f"{'model':34s} {'R@1':>6s} {'R@4':>6s} {'MAP@R':>6s}")
for name, s in scores.items():
    print(f"{name:34s} {s['recall_at_1']:6.3f} {s['recall_at_4']:6.3f} {s['mean_average_precision_at_r']:6.3f}")

# %% [markdown]
# ## 5. Recall@K and training curves

# %%
fig, (ax_recall, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
styles = {
    "teacher (64-d, ProxyAnchor)": ("#555555", "--"),
    "student (8-d, from the teacher)": ("#1f77b4", "-"),
    "student (8-d, from scratch)": ("#ff7f0e", "-"),
}
for name, s in scores.items():
    color, line = styles[name]
    ax_recall.plot(KS, [100 * s[f"recall_at_{k}"] for k in KS], line, color=color, marker="o", label=name)
ax_recall.set_xscale("log", base=2)
ax_recall.set_xticks(KS, [str(k) for k in KS])
ax_recall.set_xlabel("K")
ax_recall.set_ylabel("Recall@K (%)")
ax_recall.set_title("digits 5-9 (unseen classes)")
ax_recall.grid(alpha=0.3)
ax_recall.legend()
for name, log in logs.items():
    color, line = styles[name]
    losses_per_epoch = np.array(log.epoch_losses)
    ax_loss.plot(
        range(1, len(losses_per_epoch) + 1), losses_per_epoch / losses_per_epoch[0], line, color=color, label=name
    )
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("loss / first-epoch loss")
ax_loss.set_title("training loss (each relative to its first epoch)")
ax_loss.grid(alpha=0.3)
ax_loss.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The student from the teacher learns digits 0-4 without a single label and is scored on digits it never
# saw. `examples/digits_transfer.py` runs the same job as a script; the documentation's *Quick start*
# shows the plain-PyTorch version of the loop, and *Choosing sigma and delta* what the two
# hyper-parameters do.

# %% [markdown]
# ## 6. Cache the teacher
#
# The frozen teacher computes the same function in every epoch. `TeacherCache.build` runs it once over seeded
# views of every image (`SeededViewDataset`: view v of image i is always drawn with the seed (0, i, v)) and
# stores its embeddings on disk; `EmbeddingTransfer(teacher_cache=...)` then looks them up instead of running
# the teacher. Here 2 views and 2 epochs, a short demonstration; the documentation's *Cache the teacher* page
# says what is checked and how a killed build continues.

# %%
import tempfile

from pml_relaxed.datasets import SeededViewDataset, seeded_view_collate
from pml_relaxed.models import TeacherCache

seeded_views = SeededViewDataset(Digits("train"), augment, num_views=2, seed=SEED)
with tempfile.TemporaryDirectory() as cache_folder:
    cache = TeacherCache.build(teacher, seeded_views, cache_folder, views=2, progress=False)
    print(f"cached: {len(cache)} images x {cache.num_views} views x {cache.dim}-d")
    torch.manual_seed(SEED + 1)
    np.random.seed(SEED + 1)
    cached_student = embedder(STUDENT_DIM, 64)
    from_cache = EmbeddingTransfer(
        models={"trunk": cached_student},  # no teacher: the cache answers for it
        optimizers={"trunk_optimizer": torch.optim.Adam(cached_student.parameters(), lr=1e-3)},
        batch_size=30,
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(sigma=1.0, delta=1.0)},
        dataset=seeded_views,
        sampler=samplers.MPerClassSampler(seeded_views.labels, m=3, length_before_new_iter=len(seeded_views)),
        collate_fn=seeded_view_collate,
        teacher_cache=cache,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
    )
    run(from_cache, EpochLog("student from the cache", 2))
with contextlib.redirect_stderr(io.StringIO()):
    accuracies = tester.test({"test": test_set}, 1, cached_student, torch.nn.Identity())["test"]
print(f"student (8-d, 2 epochs from the cache): R@1 {accuracies['recall_at_1_level0']:.3f} on digits 5-9")
