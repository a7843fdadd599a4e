# %% [markdown]
# # Any PML pair loss as a transfer loss, with `TeacherSimilarityMiner`
#
# PML's pair losses (`ContrastiveLoss`, `MultiSimilarityLoss`, ...) learn from positive and negative
# pairs, which PML's miners take from class labels. `pml_relaxed.miners.TeacherSimilarityMiner` takes
# them from a frozen **teacher** instead: each anchor's most teacher-similar partners are its positives,
# the partners the teacher finds dissimilar its negatives. Any pair loss then transfers the teacher's
# embedding space to a student without labels. Here, on digits:
#
# - what the miner mines from a batch, and how often its positives share the true class;
# - four 8-d students trained from the same 64-d teacher: PML's `ContrastiveLoss` and
#   `MultiSimilarityLoss` on teacher-mined pairs, `RelaxedContrastiveLoss` on every pair (the paper's
#   loss, which weights each pair by the teacher's similarity instead of a hard positive/negative split),
#   and `RelaxedContrastiveLoss` restricted to the mined pairs.

# %%
# Install (uncomment on a fresh machine; in a clone of the repository: pip install -e ".[test]"):
# pip install pml-relaxed

# %% [markdown]
# ## Data
#
# scikit-learn's 8x8 digits (shipped with scikit-learn, nothing downloaded): digits 0-4 train the teacher
# and the students, digits 5-9 (never seen in training) test them.

# %% Parameters
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets: text bars
QUICK = os.environ.get("PML_RELAXED_NOTEBOOK_QUICK") == "1"  # CI's reduced setting: one epoch per student
TEACHER_STEPS = 60 if QUICK else 300
STUDENT_EPOCHS = 1 if QUICK else 10
SEED = 0
print(f"quick={QUICK}: teacher {TEACHER_STEPS} full-batch steps, students {STUDENT_EPOCHS} epochs")

# %%
import contextlib
import io
import logging

import matplotlib.pyplot as plt
import numpy as np
import torch
from pytorch_metric_learning import losses, samplers

from pml_relaxed import functional as fn
from pml_relaxed.datasets import (
    Digits,
    MultiViewDataset,
    RandomAffine,
    multi_view_collate,
)
from pml_relaxed.evaluation import compute_embeddings, evaluate_embeddings
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.miners import TeacherSimilarityMiner
from pml_relaxed.models import MLP
from pml_relaxed.trainers import EmbeddingTransfer

logging.getLogger("PML").setLevel(logging.ERROR)  # PML warns of the models without a separate "embedder"
train_set, test_set = Digits("train"), Digits("test")
augment = RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))

# %% [markdown]
# ## The teacher
#
# A 64-d MLP trained with PML's `ProxyAnchorLoss` on the labels of digits 0-4, full batch, in a plain
# loop. In practice the teacher is any frozen model you already have.

# %%
torch.manual_seed(SEED)
teacher = torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [256], 64))
proxy_anchor = losses.ProxyAnchorLoss(num_classes=5, embedding_size=64)
optimizer = torch.optim.Adam(
    [{"params": teacher.parameters(), "lr": 1e-3}, {"params": proxy_anchor.parameters(), "lr": 1e-2}]
)
for step in range(TEACHER_STEPS):
    optimizer.zero_grad()
    proxy_anchor(teacher(augment(train_set.images)), train_set.labels).backward()
    optimizer.step()
teacher.eval()
with torch.no_grad():
    teacher_test = teacher(test_set.images)
teacher_scores = evaluate_embeddings(teacher_test, test_set.labels, ("recall_at_1", "mean_average_precision_at_r"))
print(
    f"teacher on digits 5-9: R@1 {teacher_scores['recall_at_1']:.3f}, "
    f"MAP@R {teacher_scores['mean_average_precision_at_r']:.3f}"
)

# %% [markdown]
# ## What the teacher says about the pairs of a batch
#
# The miner ranks partners by the relaxed labels $w_{ij} = e^{-\lVert f_i - f_j \rVert^2 / \sigma}$ of
# L2-normalised teacher embeddings (`sigma = 1`), the same weights the relaxed loss uses. Their
# distribution over the pairs of a two-view batch of training digits tells where to put the thresholds:

# %%
torch.manual_seed(SEED)
two_views = MultiViewDataset(train_set, transform=augment, num_views=2)
loader = torch.utils.data.DataLoader(two_views, batch_size=30, shuffle=True, collate_fn=multi_view_collate)
images, labels = next(iter(loader))  # 30 images x 2 views, the views of one image adjacent
with torch.no_grad():
    batch_teacher = teacher(images)
w = fn.gaussian_kernel(batch_teacher, sigma=1.0)
n = len(labels)
not_self = ~torch.eye(n, dtype=torch.bool)
other_view = torch.zeros(n, n, dtype=torch.bool)
other_view[torch.arange(0, n, 2), torch.arange(1, n, 2)] = True
other_view |= other_view.t().clone()
same_class = (labels[:, None] == labels[None]) & not_self & ~other_view
other_class = labels[:, None] != labels[None]

fig, ax = plt.subplots(figsize=(7, 3))
bins = np.linspace(0, 1, 41)
ax.hist(w[other_class].numpy(), bins=bins, alpha=0.6, density=True, label="different digits")
ax.hist(w[same_class].numpy(), bins=bins, alpha=0.6, density=True, label="same digit, other image")
ax.hist(w[other_view].numpy(), bins=bins, alpha=0.6, density=True, label="two views of one image")
ax.set_xlabel("teacher relaxed label w (sigma = 1)")
ax.set_ylabel("density")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# `pos_topk=3`: each anchor's 3 most teacher-similar partners are positives (one of them usually its other
# view). `neg_threshold=0.3`: only the pairs the teacher clearly calls dissimilar are negatives; the
# pairs in between are left out. The miner never sees a label; we use them only to check its positives.

# %%
miner = TeacherSimilarityMiner(pos_topk=3, neg_threshold=0.3)
a1, p, a2, neg = miner(torch.zeros(n, 8), teacher_emb=batch_teacher)  # the student embeddings only give n
positive_precision = (labels[a1] == labels[p]).float().mean().item()
negative_precision = (labels[a2] != labels[neg]).float().mean().item()
print(f"{len(a1)} positive pairs ({len(a1) / n:.0f} per anchor), {100 * positive_precision:.0f}% share the digit")
print(f"{len(a2)} negative pairs ({len(a2) / n:.0f} per anchor), {100 * negative_precision:.0f}% are different digits")

# %% [markdown]
# ## Four students from the same teacher
#
# Each is an 8-d MLP trained by `EmbeddingTransfer` (PML's `MetricLossOnly` plus the frozen teacher) on
# two-view batches of 30 images. With the miner in `mining_funcs` as the `"tuple_miner"`, the trainer
# passes it `teacher_emb=` and hands its pairs to the transfer loss; a PML pair loss then receives the
# pairs and no labels.


# %%
def train_student(transfer_loss, miner=None, name=""):
    torch.manual_seed(SEED + 1)
    np.random.seed(SEED + 1)  # PML's MPerClassSampler draws from numpy's global generator
    student = torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [64], 8, batch_norm=True))
    trainer = EmbeddingTransfer(
        models={"trunk": student, "teacher": teacher},
        optimizers={"trunk_optimizer": torch.optim.Adam(student.parameters(), lr=1e-3)},
        batch_size=30,
        loss_funcs={"transfer_loss": transfer_loss},
        mining_funcs={} if miner is None else {"tuple_miner": miner},
        dataset=two_views,
        sampler=samplers.MPerClassSampler(two_views.labels, m=3, length_before_new_iter=len(two_views)),
        collate_fn=multi_view_collate,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
    )
    with contextlib.redirect_stderr(io.StringIO()):  # PML's per-epoch progress bars
        trainer.train(num_epochs=STUDENT_EPOCHS)
    embeddings, test_labels = compute_embeddings(student, test_set, show_progress=False)
    scores = evaluate_embeddings(embeddings, test_labels, ("recall_at_1", "mean_average_precision_at_r"))
    print(f"{name:46s} R@1 {scores['recall_at_1']:.3f}  MAP@R {scores['mean_average_precision_at_r']:.3f}")
    return scores


results = {
    "ContrastiveLoss + teacher pairs": train_student(
        losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
        TeacherSimilarityMiner(pos_topk=3, neg_threshold=0.3),
        "PML ContrastiveLoss, teacher-mined pairs",
    ),
    "MultiSimilarityLoss + teacher pairs": train_student(
        losses.MultiSimilarityLoss(),
        TeacherSimilarityMiner(pos_topk=3, neg_threshold=0.3),
        "PML MultiSimilarityLoss, teacher-mined pairs",
    ),
    "RelaxedContrastive, all pairs": train_student(
        RelaxedContrastiveLoss(sigma=1.0, delta=1.0), None, "RelaxedContrastiveLoss, every pair"
    ),
    "RelaxedContrastive, teacher pairs": train_student(
        RelaxedContrastiveLoss(sigma=1.0, delta=1.0),
        TeacherSimilarityMiner(pos_topk=3, neg_threshold=0.3),
        "RelaxedContrastiveLoss, teacher-mined pairs",
    ),
}

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
names = list(results)
for ax, metric, title in zip(axes, ("recall_at_1", "mean_average_precision_at_r"), ("R@1", "MAP@R")):
    values = [100 * results[name][metric] for name in names]
    bars = ax.barh(names, values, color=["#ff7f0e", "#ffbb78", "#1f77b4", "#aec7e8"])
    ax.axvline(100 * teacher_scores[metric], color="#555555", linestyle="--", label="teacher (64-d)")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_title(f"{title} on digits 5-9 (%)")
    ax.legend(loc="lower right", fontsize=8)
axes[0].invert_yaxis()
fig.tight_layout()
plt.show()

# %% [markdown]
# The pair losses only see which pairs the teacher ranks first or last: a hard positive/negative split. The
# relaxed loss weights every pair by how similar the teacher finds it; restricted to the mined pairs, it
# keeps those graded weights but spends its effort on the pairs the teacher is sure about. Which variant
# wins depends on the teacher, the data and the budget (this is one seed, 10 epochs, a small student), so
# compare them on validation classes of your own data. `TeacherSimilarityMiner` also works with PML's
# triplet losses and inside `TransferCrossBatchMemory` (give it as `miner=`); see the documentation's
# *miners* page.
