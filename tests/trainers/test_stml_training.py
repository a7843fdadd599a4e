"""EmbeddingTransfer + STMLLoss train as STML's own loop does (CVPR 2022, ``code/main.py``): same weights."""

import copy

import torch
import torch.nn.functional as F

from pml_relaxed.losses import STMLLoss
from pml_relaxed.similarities import ContextualSimilarity
from pml_relaxed.trainers import EmbeddingTransfer

f64 = torch.float64
D_F, D_G, ROWS, STEPS, MOMENTUM = 3, 8, 8, 12, 0.9


class TwoHeads(torch.nn.Module):
    """A trunk and two linear heads, output ``[f | g]``."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU())
        self.f, self.g = torch.nn.Linear(16, D_F), torch.nn.Linear(16, D_G)

    def forward(self, x):
        features = self.trunk(x)
        return torch.cat([self.f(features), self.g(features)], dim=1)


def stml_reference_loss(s_f, s_g, t_g, ids, similarity, delta=1.0):
    """STML's ``STML_loss`` as its code writes it (cdist, row means, N (N - 1), KL with reduction 'sum' / N)."""
    n = len(s_f)
    weights = similarity(t_g, labels=ids)
    off_diagonal = 1 - torch.eye(n, dtype=f64)

    def rc(s_emb):
        dist = torch.cdist(s_emb, s_emb)
        dist = dist / dist.mean(1, keepdim=True)
        pull = torch.relu(dist).pow(2) * weights * off_diagonal
        push = torch.relu(delta - dist).pow(2) * (1 - weights) * off_diagonal
        return (pull.sum() + push.sum()) / (n * (n - 1))

    df, dg = torch.cdist(s_f, s_f), torch.cdist(s_g, s_g)
    df, dg = df / df.mean(1, keepdim=True), dg / dg.mean(1, keepdim=True)
    kl = F.kl_div(F.log_softmax(-df, dim=-1), F.softmax(-dg.detach(), dim=-1), reduction="sum") / n
    return (rc(s_f) + rc(s_g)) / 2 + kl


@torch.no_grad()
def stml_momentum_update(student, teacher, m):
    """STML's ``Momentum_Update``: the state dicts zipped, num_batches_tracked copied."""
    for (k_s, v_s), (_, v_t) in zip(student.state_dict().items(), teacher.state_dict().items()):
        v_t.copy_(v_s) if "num_batches_tracked" in k_s else v_t.copy_(v_t * m + (1.0 - m) * v_s)


def test_embedding_transfer_with_stml_loss_ends_with_stmls_weights():
    torch.manual_seed(0)
    images = torch.randn(ROWS * STEPS // 2, 5, dtype=f64)
    views = torch.stack([images, images + 0.05 * torch.randn_like(images)], dim=1).reshape(-1, 5)
    ids = torch.arange(len(images)).repeat_interleave(2)
    similarity = ContextualSimilarity(k=3, labels_mark_views=True)
    model = TwoHeads().double()
    reference, initial = copy.deepcopy(model), copy.deepcopy(model.state_dict())

    teacher = copy.deepcopy(reference)  # the library's initialisation: a copy of the student
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.2, momentum=0.9)
    for step in range(STEPS):
        x, batch_ids = views[step * ROWS : (step + 1) * ROWS], ids[step * ROWS : (step + 1) * ROWS]
        out = reference(x)
        with torch.no_grad():
            t_g = teacher(x)[:, D_F:]
        loss = stml_reference_loss(out[:, :D_F], out[:, D_F:], t_g, batch_ids, similarity)
        optimizer.zero_grad()
        loss.backward()
        stml_momentum_update(reference, teacher, MOMENTUM)  # STML: before the optimizer step
        optimizer.step()

    dataset = torch.utils.data.TensorDataset(views, ids)
    trainer = EmbeddingTransfer(
        models={"trunk": model},
        optimizers={"trunk_optimizer": torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)},
        batch_size=ROWS,
        loss_funcs={"transfer_loss": STMLLoss(similarity, embedding_size=D_F)},
        dataset=dataset,
        sampler=torch.utils.data.SequentialSampler(dataset),
        iterations_per_epoch=STEPS,
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
        dtype=f64,
        ema_momentum=MOMENTUM,
    )
    trainer.train(num_epochs=1)
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=name)
    for ours, theirs in zip(trainer.teacher.state_dict().values(), teacher.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(model.f.weight, initial["f.weight"])  # it trained
