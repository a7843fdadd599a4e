"""EmbeddingTransfer's classifier head (PML's TrainWithClassifier pattern)."""

import pytest
import torch

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.trainers import EmbeddingTransfer

CPU = torch.device("cpu")


def make_trainer(student, classifier, teacher, loss_weights=None, getter=None, **extra_loss_funcs):
    torch.manual_seed(0)
    inputs, labels = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,))
    loss_funcs = {"transfer_loss": RelaxedContrastiveLoss(), **extra_loss_funcs}
    models = {"trunk": student, "teacher": teacher}
    optimizers = {"trunk_optimizer": torch.optim.SGD(student.parameters(), lr=0.1)}
    if classifier is not None:
        models["classifier"] = classifier
        optimizers["classifier_optimizer"] = torch.optim.SGD(classifier.parameters(), lr=0.1)
    return EmbeddingTransfer(
        models=models,
        optimizers=optimizers,
        batch_size=8,
        loss_funcs=loss_funcs,
        loss_weights=loss_weights,
        dataset=torch.utils.data.TensorDataset(inputs, labels),
        iterations_per_epoch=2,
        dataloader_num_workers=0,
        data_device=CPU,
        dtype=torch.float64,
        data_and_label_getter=getter,
    )


def test_total_loss_is_the_weighted_sum_with_cross_entropy_on_the_student_embeddings():
    student, classifier = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 3).double()
    teacher = torch.nn.Linear(5, 6).double()
    weights = {"transfer_loss": 0.7, "classifier_loss": 2.0}
    trainer = make_trainer(student, classifier, teacher, weights, classifier_loss=torch.nn.CrossEntropyLoss())
    records = []

    def calculate_and_check(batch):
        data, labels = batch
        before = [p.detach().clone() for p in classifier.parameters()]
        EmbeddingTransfer.calculate_loss(trainer, batch)
        with torch.no_grad():
            emb = student(data)
            ce = torch.nn.functional.cross_entropy(torch.nn.functional.linear(emb, *before), labels)
            rc = RelaxedContrastiveLoss()(emb, teacher_emb=teacher(data))
        records.append(
            (float(trainer.losses["classifier_loss"]), float(ce), float(trainer.losses["transfer_loss"]), float(rc))
        )

    totals = []
    trainer.calculate_loss = calculate_and_check
    trainer.end_of_iteration_hook = lambda t: totals.append(float(t.losses["total_loss"]))
    start = [p.detach().clone() for p in classifier.parameters()]
    trainer.train(num_epochs=1)
    assert len(records) == 2
    for got_ce, want_ce, got_rc, want_rc in records:
        assert got_ce == pytest.approx(want_ce, rel=1e-12) and got_rc == pytest.approx(want_rc, rel=1e-12)
    for total, (got_ce, _, got_rc, _) in zip(totals, records):
        assert total == pytest.approx(0.7 * got_rc + 2.0 * got_ce, rel=1e-12)
    assert any(not torch.equal(a, b) for a, b in zip(start, classifier.parameters()))  # the head trains
    assert "classifier" in trainer.models


def test_classifier_gradient_matches_the_explicit_objective():
    student, classifier = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 3).double()
    teacher = torch.nn.Linear(5, 6).double()
    trainer = make_trainer(
        student,
        classifier,
        teacher,
        {"transfer_loss": 0.5, "classifier_loss": 1.5},
        classifier_loss=torch.nn.CrossEntropyLoss(),
    )
    trainer.initialize_dataloader()
    trainer.zero_losses()
    trainer.zero_grad()
    batch = trainer.get_batch()
    trainer.calculate_loss(batch)
    trainer.loss_tracker.update(trainer.loss_weights)
    trainer.backward()
    data, labels = batch
    s2, c2 = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 3).double()
    s2.load_state_dict(student.state_dict())
    c2.load_state_dict(classifier.state_dict())
    emb = s2(data)
    objective = 0.5 * RelaxedContrastiveLoss()(
        emb, teacher_emb=teacher(data)
    ) + 1.5 * torch.nn.functional.cross_entropy(c2(emb), labels)
    objective.backward()
    for got, want in zip(
        list(student.parameters()) + list(classifier.parameters()), list(s2.parameters()) + list(c2.parameters())
    ):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-10, atol=1e-12)


def test_weight_zero_skips_the_head():
    student, classifier = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 3).double()
    calls = []
    classifier.register_forward_hook(lambda *a: calls.append(1))
    trainer = make_trainer(
        student,
        classifier,
        torch.nn.Linear(5, 6).double(),
        {"transfer_loss": 1.0, "classifier_loss": 0.0},
        classifier_loss=torch.nn.CrossEntropyLoss(),
    )
    trainer.train(num_epochs=1)
    assert calls == []


def test_head_and_loss_come_together_and_need_labels():
    student, classifier = torch.nn.Linear(5, 4).double(), torch.nn.Linear(4, 3).double()
    teacher = torch.nn.Linear(5, 6).double()
    with pytest.raises(ValueError, match="got models\\['classifier'\\] without loss_funcs\\['classifier_loss'\\]"):
        make_trainer(student, classifier, teacher)
    with pytest.raises(ValueError, match="got loss_funcs\\['classifier_loss'\\] without models\\['classifier'\\]"):
        make_trainer(student, None, teacher, classifier_loss=torch.nn.CrossEntropyLoss())
    trainer = make_trainer(
        student, classifier, teacher, classifier_loss=torch.nn.CrossEntropyLoss(), getter=lambda batch: (batch[0], None)
    )
    with pytest.raises(ValueError, match="classifier_loss CrossEntropyLoss needs labels"):
        trainer.train(num_epochs=1)
