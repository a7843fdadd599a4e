# %% [markdown]
# # Dimensionality reduction on Omniglot: a 128-d teacher -> a 16-d student
#
# Retrieval cost grows with the embedding size: a 16-d index is 8 times smaller and faster to search than a
# 128-d one. Here a Conv-4 teacher trained with PML's `ProxyAnchorLoss` on Omniglot characters (128-d)
# hands its embedding space to a Conv-4 student with 16 dimensions through `RelaxedContrastiveLoss`, without
# labels. Both are scored on **characters never seen in training**, and we look at the two spaces: t-SNE
# maps coloured by character, and the nearest neighbours of a few query drawings.

# %%
# Install (uncomment on a fresh machine; in a clone of the repository: pip install -e ".[test]"):
# pip install pml-relaxed

# %% [markdown]
# ## Data
#
# Omniglot (Lake et al., *Science* 2015; MIT licence), the two "images_background_small" zips of the
# original repository, read as they are (never downloaded): `images_background_small1.zip` holds the 136
# training characters (5 alphabets, 20 drawings each), `images_background_small2.zip` the test characters;
# `pml_relaxed.datasets.Omniglot` drops the 50 characters the two zips share, leaving 106 test characters
# of 3 alphabets that training never sees.
#
# The data root is a parameter: the environment variable `PML_RELAXED_OMNIGLOT`, by default the `shared/`
# folder beside the repository. Without the two zips the notebook prints a message and skips the rest.

# %% Parameters
import os
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets: text bars
QUICK = os.environ.get("PML_RELAXED_NOTEBOOK_QUICK") == "1"  # CI's reduced setting: fewer classes and epochs
OMNIGLOT_ROOT = Path(os.environ.get("PML_RELAXED_OMNIGLOT", "../../../shared/datasets/omniglot"))
TEACHER_EPOCHS = 1 if QUICK else 10
STUDENT_EPOCHS = 1 if QUICK else 10
TRAIN_CLASSES = range(24) if QUICK else None  # None: all 136 training characters
TEST_CLASSES = range(16) if QUICK else None  # None: all 106 test characters
BATCH = 40 if QUICK else 90  # images per batch, 2 of each character (the paper's 90)
TEACHER_DIM, STUDENT_DIM, WIDTH = 128, 16, 32
SEED = 0

DATA_OK = all((OMNIGLOT_ROOT / f"images_background_small{i}.zip").is_file() for i in (1, 2))
if DATA_OK:
    print(f"Omniglot: both zips found under OMNIGLOT_ROOT; quick={QUICK}")  # no machine path in the outputs
else:
    print(
        f"Omniglot zips not found under {OMNIGLOT_ROOT.resolve()}: set PML_RELAXED_OMNIGLOT to the folder "
        "holding images_background_small1.zip and images_background_small2.zip. Skipping the rest."
    )

# %%
import contextlib
import io
import logging

import matplotlib.pyplot as plt
import numpy as np
import torch
from pytorch_metric_learning import losses, samplers, trainers
from sklearn.manifold import TSNE

from pml_relaxed.datasets import (
    MultiViewDataset,
    Omniglot,
    RandomAffine,
    multi_view_collate,
)
from pml_relaxed.evaluation import compute_embeddings, evaluate_embeddings
from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.models import Conv4
from pml_relaxed.trainers import EmbeddingTransfer

logging.getLogger("PML").setLevel(logging.WARNING)
torch.manual_seed(SEED)
np.random.seed(SEED)  # PML's MPerClassSampler draws from numpy's global generator
augment = RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1), shear=5)
if DATA_OK:
    train_set = Omniglot(OMNIGLOT_ROOT, split="train", classes=TRAIN_CLASSES)
    test_set = Omniglot(OMNIGLOT_ROOT, split="test", classes=TEST_CLASSES)
    print(train_set)
    print(test_set)
    fig, axes = plt.subplots(1, 12, figsize=(9, 1))
    for ax, character in zip(axes, range(12)):
        ax.imshow(test_set.images[int((test_set.labels == character).nonzero()[0, 0]), 0], cmap="gray_r")
        ax.axis("off")
    fig.suptitle("one drawing of each of the first 12 test characters", fontsize=9)
    plt.show()


# %% [markdown]
# ## 1. The teacher: Conv-4, 128-d, ProxyAnchor on the training characters
#
# PML's `MetricLossOnly` with `ProxyAnchorLoss` and an `MPerClassSampler` (2 drawings of 45 characters per
# batch, the paper's batch of 90), one augmented view of each drawing (`MultiViewDataset` with one view, so
# the images are decoded only once). The model is split into PML's `trunk` (the convolutions) and
# `embedder` (the linear head).


# %%
def quiet_train(trainer, epochs):
    with contextlib.redirect_stderr(io.StringIO()):  # PML's per-epoch tqdm bars
        trainer.train(num_epochs=epochs)


def keep_loss(trainer):  # PML's end_of_iteration_hook: PML zeroes trainer.losses before the end of an epoch
    trainer.last_loss = float(trainer.losses["total_loss"].detach())


def print_epoch(name, epochs):
    def hook(trainer):  # PML's end_of_epoch_hook
        print(f"{name}: epoch {trainer.epoch}/{epochs}, last batch loss {trainer.last_loss:.4f}")
        return True

    return hook


def optimizers_for(trunk, embedder, lr):
    return {
        "trunk_optimizer": torch.optim.Adam(trunk.parameters(), lr=lr),
        "embedder_optimizer": torch.optim.Adam(embedder.parameters(), lr=lr),
    }


if DATA_OK:
    teacher = Conv4(in_channels=1, width=WIDTH, embedding_dim=TEACHER_DIM, image_size=28)
    teacher_trunk, teacher_head = teacher.trunk_and_embedder()
    labelled = MultiViewDataset(train_set, transform=augment, num_views=1)
    proxy_anchor = losses.ProxyAnchorLoss(num_classes=train_set.num_classes, embedding_size=TEACHER_DIM)
    trainer = trainers.MetricLossOnly(
        models={"trunk": teacher_trunk, "embedder": teacher_head},
        optimizers={
            **optimizers_for(teacher_trunk, teacher_head, 3e-3),
            "metric_loss_optimizer": torch.optim.Adam(proxy_anchor.parameters(), lr=3e-2),
        },
        batch_size=BATCH,
        loss_funcs={"metric_loss": proxy_anchor},
        dataset=labelled,
        sampler=samplers.MPerClassSampler(labelled.labels, m=2, batch_size=BATCH, length_before_new_iter=len(labelled)),
        collate_fn=multi_view_collate,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
        end_of_iteration_hook=keep_loss,
        end_of_epoch_hook=print_epoch("teacher", TEACHER_EPOCHS),
    )
    quiet_train(trainer, TEACHER_EPOCHS)
    teacher.eval()

# %% [markdown]
# ## 2. The student: Conv-4, 16-d, from the frozen teacher
#
# Two augmented views of each drawing (`MultiViewDataset`), the teacher embedding exactly the views the
# student sees; `RelaxedContrastiveLoss` turns the teacher's similarities into soft labels for all
# 180 x 179 pairs of a batch. No labels reach the loss.

# %%
if DATA_OK:
    torch.manual_seed(SEED + 1)
    np.random.seed(SEED + 1)
    student = Conv4(in_channels=1, width=WIDTH, embedding_dim=STUDENT_DIM, image_size=28)
    student_trunk, student_head = student.trunk_and_embedder()
    two_views = MultiViewDataset(train_set, transform=augment, num_views=2)
    transfer = EmbeddingTransfer(
        models={"trunk": student_trunk, "embedder": student_head, "teacher": teacher},
        optimizers=optimizers_for(student_trunk, student_head, 3e-3),
        batch_size=BATCH,  # 90 drawings x 2 views = 180 embeddings
        loss_funcs={"transfer_loss": RelaxedContrastiveLoss(sigma=1.0, delta=1.0)},
        dataset=two_views,
        sampler=samplers.MPerClassSampler(
            two_views.labels, m=2, batch_size=BATCH, length_before_new_iter=len(two_views)
        ),
        collate_fn=multi_view_collate,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
        end_of_iteration_hook=keep_loss,
        end_of_epoch_hook=print_epoch("student", STUDENT_EPOCHS),
    )
    quiet_train(transfer, STUDENT_EPOCHS)
    student.eval()

# %% [markdown]
# ## 3. Scores on the unseen test characters
#
# Leave-one-out retrieval over all test drawings, on L2-normalised embeddings (cosine), as the benchmark
# does. This is a short laptop run (Conv-4 of width 32, 10 epochs each, one seed); the benchmark trains
# wider networks for longer and compares every transfer method (see the documentation's *Benchmarks*).

# %%
if DATA_OK:
    embeddings = {}
    for name, model in [("teacher", teacher), ("student", student)]:
        embeddings[name], test_labels = compute_embeddings(model, test_set, show_progress=False)
    metrics = ("recall_at_1", "recall_at_4", "mean_average_precision_at_r")
    for name, emb in embeddings.items():
        s = evaluate_embeddings(emb, test_labels, metrics, normalize=True)
        print(
            f"{name} ({emb.shape[1]:3d}-d): R@1 {s['recall_at_1']:.3f}  R@4 {s['recall_at_4']:.3f}  "
            f"MAP@R {s['mean_average_precision_at_r']:.3f}"
        )

# %% [markdown]
# ## 4. Both spaces in 2-D (t-SNE)
#
# The drawings of 8 test characters, embedded by the teacher (128-d) and by the student (16-d), mapped to
# 2-D by scikit-learn's t-SNE, one colour per character. A student that kept the teacher's neighbourhoods
# keeps the characters' clusters.

# %%
if DATA_OK:
    rng = np.random.default_rng(SEED)
    shown = np.sort(rng.choice(test_set.num_classes, size=8, replace=False))
    rows = np.flatnonzero(np.isin(test_labels.numpy(), shown))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (name, emb) in zip(axes, embeddings.items()):
        unit = torch.nn.functional.normalize(emb[rows], dim=1).numpy()
        points = TSNE(n_components=2, perplexity=15, init="pca", random_state=SEED).fit_transform(unit)
        for color, character in enumerate(shown):
            mine = test_labels.numpy()[rows] == character
            ax.scatter(
                points[mine, 0],
                points[mine, 1],
                s=18,
                color=plt.cm.tab10(color),
                label=test_set.class_names[character].replace("_", " "),
            )
        ax.set_title(f"{name} ({emb.shape[1]}-d)")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 5. Nearest neighbours of a few queries
#
# For 4 query drawings (left), their 6 nearest test drawings in each space (cosine), the query itself left
# out. A green frame: the same character; red: another one.

# %%
if DATA_OK:
    queries = rng.choice(len(test_set), size=4, replace=False)
    neighbours = {}
    for name, emb in embeddings.items():
        unit = torch.nn.functional.normalize(emb, dim=1)
        similarity = unit[queries] @ unit.t()
        similarity[torch.arange(len(queries)), torch.as_tensor(queries)] = -2.0  # leave the query out
        neighbours[name] = similarity.topk(6, dim=1).indices
    fig, axes = plt.subplots(2 * len(queries), 7, figsize=(7.5, 9.5))
    for q, query in enumerate(queries):
        for r, name in enumerate(embeddings):
            row = axes[2 * q + r]
            row[0].imshow(test_set.images[query, 0], cmap="gray_r")
            row[0].set_ylabel(name, fontsize=8)
            for ax, index in zip(row[1:], neighbours[name][q].tolist()):
                ax.imshow(test_set.images[index, 0], cmap="gray_r")
                same = int(test_labels[index]) == int(test_labels[query])
                for spine in ax.spines.values():
                    spine.set_color("#2ca02c" if same else "#d62728")
                    spine.set_linewidth(2.5)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    axes[0, 0].set_title("query", fontsize=9)
    axes[0, 3].set_title("nearest neighbours", fontsize=9)
    fig.tight_layout()
    plt.show()
