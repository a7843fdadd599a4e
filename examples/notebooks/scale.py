# %% [markdown]
# # Scale: large batches, a memory of past batches, several processes
#
# The relaxed losses compare every sample of a batch with every other one, so more references per anchor
# means a better picture of the teacher's neighbourhoods. Three ways to get them:
#
# 1. **large batches**: `RelaxedContrastiveLoss(block_size=...)` computes the loss a block of rows at a
#    time, with the same values and gradients as the dense computation and memory linear in the batch;
# 2. **cross-batch memory**: `TransferCrossBatchMemory` keeps the student and teacher embeddings of past
#    batches as extra references;
# 3. **several processes**: DistributedDataParallel with `pml_relaxed.distributed`'s loss wrapper, whose
#    loss is the single-process loss on the global batch of all ranks.

# %%
# Install (uncomment on a fresh machine; in a clone of the repository: pip install -e ".[test]"):
# pip install pml-relaxed

# %% [markdown]
# ## Data
#
# Part 1 uses random embeddings (the cost of the loss does not depend on their values). Parts 2 and 3 use
# scikit-learn's 8x8 digits, shipped with scikit-learn (nothing downloaded): digits 0-4 train, 5-9 test.

# %% Parameters
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets: text bars
QUICK = os.environ.get("PML_RELAXED_NOTEBOOK_QUICK") == "1"  # CI's reduced setting: small sizes, few steps
BATCH_SIZES = (256, 512, 1024) if QUICK else (256, 512, 1024, 2048, 4096)
BLOCK_SIZE = 256
REPEATS = 1 if QUICK else 5  # timed calls after one warm-up call; the median is shown
MEMORY_STEPS = 20 if QUICK else 400
DDP_STEPS = 3 if QUICK else 100
SEED = 0

# %%
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from pml_relaxed.datasets import Digits, RandomAffine
from pml_relaxed.evaluation import compute_embeddings, evaluate_embeddings
from pml_relaxed.losses import RelaxedContrastiveLoss, TransferCrossBatchMemory
from pml_relaxed.models import MLP

print(f"quick={QUICK}, torch {torch.__version__}, {torch.get_num_threads()} threads")

# %% [markdown]
# ## 1. Large batches: dense versus blockwise
#
# For each batch size `n`: the time of one forward and backward pass (one thread, the median of 5 after a
# warm-up call; wall-clock time on this machine, so it moves with its load), and the memory autograd keeps for the
# backward pass (the tensors saved by the loss's operations, measured in this process with
# `torch.autograd.graph.saved_tensors_hooks`). Densely, that is several `(n, n)` matrices; blockwise, the
# embeddings only: each block is recomputed in the backward pass and its closed-form gradient applied.


# %%
def saved_bytes_and_seconds(loss_fn, student, teacher):
    """Bytes autograd saves for the backward pass (distinct storages), the median seconds of forward + backward
    over REPEATS calls after a warm-up call, and the loss; student.grad holds one call's gradient."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(student, teacher_emb=teacher)
    loss.backward()
    seconds = []
    for _ in range(REPEATS):
        student.grad = None
        start = time.perf_counter()
        loss = loss_fn(student, teacher_emb=teacher)
        loss.backward()
        seconds.append(time.perf_counter() - start)
    return sum(storages.values()), float(np.median(seconds)), loss.detach()


torch.manual_seed(SEED)
threads = torch.get_num_threads()
torch.set_num_threads(1)  # steadier timings on a shared machine
rows = []
for n in BATCH_SIZES:
    student = torch.randn(n, 64, requires_grad=True)
    teacher = torch.randn(n, 256)
    dense = saved_bytes_and_seconds(RelaxedContrastiveLoss(block_size=0), student, teacher)
    dense_grad, student.grad = student.grad.clone(), None
    blockwise = saved_bytes_and_seconds(RelaxedContrastiveLoss(block_size=BLOCK_SIZE), student, teacher)
    tolerance = 1e-5 * float(dense_grad.abs().max())
    same_loss = torch.allclose(dense[2], blockwise[2], rtol=1e-5)
    same = same_loss and torch.allclose(dense_grad, student.grad, atol=tolerance)
    rows.append((n, dense[0], blockwise[0], dense[1], blockwise[1], same))
torch.set_num_threads(threads)

print(
    f"{'n':>5s} {'dense saved':>12s} {'blockwise saved':>16s} {'dense s':>8s} {'blockwise s':>12s}  same loss and grad"
)
for n, dense_bytes, block_bytes, dense_s, block_s, same in rows:
    print(
        f"{n:5d} {dense_bytes / 2**20:9.1f} MiB {block_bytes / 2**20:13.2f} MiB {dense_s:8.3f} {block_s:12.3f}  {same}"
    )

fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 3.8))
ns = [r[0] for r in rows]
ax_mem.plot(ns, [r[1] / 2**20 for r in rows], "o-", label="dense (block_size=0)")
ax_mem.plot(ns, [r[2] / 2**20 for r in rows], "o-", label=f"blockwise (block_size={BLOCK_SIZE})")
ax_mem.set_ylabel("saved for backward (MiB)")
ax_time.plot(ns, [r[3] for r in rows], "o-", label="dense")
ax_time.plot(ns, [r[4] for r in rows], "o-", label="blockwise")
ax_time.set_ylabel("forward + backward (s)")
for ax in (ax_mem, ax_time):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("batch size n (student 64-d, teacher 256-d)")
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The default, `block_size=None`, is dense up to $2^{16}$ pairs (a batch of 256) and blockwise above; the
# documentation's *Scale* page has the full measurements (`benchmarks/loss_speed.py`, each size in a fresh
# process, peak memory included).
#
# ## 2. Cross-batch memory
#
# With small batches (here 16 images in 2 views) each anchor sees only 31 partners. `TransferCrossBatchMemory`
# keeps the last `memory_size` student and teacher embeddings (detached) as the reference set: each step's
# loss compares the 32 current rows with the 512 stored ones, the teacher is never re-run on past batches,
# and the gradient reaches the current rows only. A teacher first (a 64-d MLP, PML's ProxyAnchor loss on
# digits 0-4, full batch):

# %%
from pytorch_metric_learning.losses import ProxyAnchorLoss

torch.manual_seed(SEED)
train_set, test_set = Digits("train"), Digits("test")
augment = RandomAffine(degrees=10, translate=0.1, scale=(0.9, 1.1))
teacher = torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [256], 64))
proxy_anchor = ProxyAnchorLoss(num_classes=5, embedding_size=64)
optimizer = torch.optim.Adam(
    [{"params": teacher.parameters(), "lr": 1e-3}, {"params": proxy_anchor.parameters(), "lr": 1e-2}]
)
for step in range(60 if QUICK else 300):
    optimizer.zero_grad()
    proxy_anchor(teacher(augment(train_set.images)), train_set.labels).backward()
    optimizer.step()
teacher.eval()


def train_small_batches(loss_fn, steps, images_per_batch=16):
    """A plain loop: two augmented views of `images_per_batch` random training images per step."""
    torch.manual_seed(SEED + 1)
    student = torch.nn.Sequential(torch.nn.Flatten(), MLP(64, [64], 8, batch_norm=True))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    for step in range(steps):
        images = train_set.images[torch.randint(len(train_set), (images_per_batch,))]
        views = torch.cat([augment(images), augment(images)])
        with torch.no_grad():
            teacher_emb = teacher(views)
        optimizer.zero_grad()
        loss_fn(student(views), teacher_emb=teacher_emb).backward()
        optimizer.step()
    embeddings, labels = compute_embeddings(student, test_set, show_progress=False)
    return evaluate_embeddings(embeddings, labels, ("recall_at_1", "mean_average_precision_at_r"))


memory = TransferCrossBatchMemory(
    RelaxedContrastiveLoss(), embedding_size=8, teacher_embedding_size=64, memory_size=512
)
for name, loss_fn in [("batch only (32 rows)", RelaxedContrastiveLoss()), ("with a memory of 512 rows", memory)]:
    start = time.perf_counter()
    s = train_small_batches(loss_fn, MEMORY_STEPS)
    print(
        f"{name:26s} R@1 {s['recall_at_1']:.3f}  MAP@R {s['mean_average_precision_at_r']:.3f}  "
        f"({MEMORY_STEPS} steps, {time.perf_counter() - start:.1f} s)"
    )
print(f"memory of {memory.memory_size} rows: filled {memory.has_been_filled}, next slot {memory.queue_idx}")

# %% [markdown]
# In `EmbeddingTransfer`, pass the memory as the `"transfer_loss"` (and a miner, if any, as its `miner=`).
#
# ## 3. Two processes with DistributedDataParallel
#
# `examples/ddp_transfer.py` trains the digits student under DDP: `RelaxedContrastiveLoss` inside
# `DistributedTransferLossWrapper` (each rank's loss and gradient are those of one process on the global
# batch), batches from `DistributedMPerClassSampler`. Here two CPU processes (gloo), launched as
# `torchrun --nproc_per_node=2 ../ddp_transfer.py --steps 3` would, through `python -m torch.distributed.run`
# (the same launcher, found without relying on the `PATH`).

# %%
DDP_SCRIPT = Path("../ddp_transfer.py")
if DDP_SCRIPT.exists():
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        str(DDP_SCRIPT),
        "--steps",
        str(DDP_STEPS),
    ]
    print("$", " ".join(["torchrun"] + command[3:]))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=600)
    print(result.stdout[-3000:])
    if result.returncode != 0:
        print(result.stderr[-3000:])
        raise RuntimeError(f"ddp_transfer.py failed with exit code {result.returncode}")
else:
    print(
        f"{DDP_SCRIPT} not found (run this notebook from examples/notebooks/ of the repository): skipping the DDP run"
    )
