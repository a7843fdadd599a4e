"""BaseSimilarity's extension API: compute_mat / rows / check_inputs take one TeacherInputs."""

import pytest
import torch
import torch.nn.functional as F

from pml_relaxed.losses import RelaxedContrastiveLoss
from pml_relaxed.similarities import BaseSimilarity, GaussianKernel, LabelSimilarity, TeacherInputs


class ShiftedCosine(BaseSimilarity):
    def compute_mat(self, inputs):
        return (1 + F.normalize(inputs.teacher_emb, dim=1) @ F.normalize(inputs.refs, dim=1).t()) / 2


def test_teacher_inputs_resolve_the_reference_set():
    queries, refs = torch.randn(4, 3), torch.randn(6, 3)
    labels, ref_labels = torch.tensor([0, 1, 0, 2]), torch.arange(6)
    own = TeacherInputs(queries, labels=labels)
    assert own.self_reference and own.refs is queries and own.reference_labels is labels
    assert (own.num_queries, own.num_refs) == (4, 4)
    other = TeacherInputs(queries, refs, labels, ref_labels)
    assert not other.self_reference and other.refs is refs and other.reference_labels is ref_labels
    assert (other.num_queries, other.num_refs) == (4, 6)
    assert TeacherInputs(queries, refs, labels).reference_labels is labels


def test_query_rows_are_a_block_against_every_reference():
    queries, labels = torch.randn(5, 3), torch.tensor([0, 1, 1, 2, 0])
    inputs = TeacherInputs(queries, labels=labels)
    block = inputs.query_rows(1, 4)
    assert torch.equal(block.teacher_emb, queries[1:4]) and torch.equal(block.labels, labels[1:4])
    assert block.refs is queries and block.reference_labels is labels and not block.self_reference
    assert inputs.query_rows(0, 5) is inputs
    assert TeacherInputs(queries).query_rows(2, 3).labels is None


def test_detached_inputs_carry_no_graph():
    queries, refs = torch.randn(3, 2, requires_grad=True), torch.randn(4, 2, requires_grad=True)
    detached = TeacherInputs(queries, refs).detached()
    assert not detached.teacher_emb.requires_grad and not detached.teacher_ref_emb.requires_grad
    assert TeacherInputs(queries).detached().teacher_ref_emb is None


@pytest.mark.parametrize("ref", [None, torch.randn(7, 5, dtype=torch.float64)])
def test_default_rows_equal_the_call(ref):
    teacher = torch.randn(9, 5, dtype=torch.float64)
    similarity = ShiftedCosine()
    full = similarity(teacher, ref)
    rows = similarity.rows(TeacherInputs(teacher, ref))
    torch.testing.assert_close(torch.cat([rows(0, 2), rows(2, 7), rows(7, 9)]), full)
    assert torch.equal(rows(0, 9), full)
    expected = (1 + F.normalize(teacher, dim=1) @ F.normalize(teacher if ref is None else ref, dim=1).t()) / 2
    torch.testing.assert_close(full, expected)


def test_a_subclass_with_inputs_works_in_a_loss():
    student, teacher = torch.randn(6, 4, requires_grad=True), torch.randn(6, 8)
    dense = RelaxedContrastiveLoss(similarity=ShiftedCosine(), block_size=0)(student, teacher_emb=teacher)
    blockwise = RelaxedContrastiveLoss(similarity=ShiftedCosine(), block_size=2)(student, teacher_emb=teacher)
    torch.testing.assert_close(blockwise, dense)


def test_the_old_four_argument_compute_mat_is_refused_at_class_definition():
    with pytest.raises(
        TypeError,
        match=r"OldCosine\.compute_mat must take one argument after self, inputs: TeacherInputs .*"
        r"got compute_mat\(self, teacher_emb, teacher_ref_emb, labels, ref_labels\): see docs/extend\.md, "
        r"'Migrating from the four-argument compute_mat'",
    ):

        class OldCosine(BaseSimilarity):
            def compute_mat(self, teacher_emb, teacher_ref_emb, labels, ref_labels):
                return teacher_emb @ teacher_emb.t()


@pytest.mark.parametrize("name", ["rows", "check_inputs"])
def test_old_rows_and_check_inputs_are_refused_too(name):
    def old(self, teacher_emb, teacher_ref_emb=None, labels=None, ref_labels=None):
        return None

    with pytest.raises(
        TypeError, match=rf"Old\.{name} must take one argument after self.*got {name}\(self, teacher_emb"
    ):
        type("Old", (BaseSimilarity,), {name: old})


def test_new_style_overrides_are_accepted():
    class Checked(LabelSimilarity):
        def check_inputs(self, inputs):
            super().check_inputs(inputs)

        def rows(self, inputs, *args):
            return super().rows(inputs)

    labels = torch.tensor([0, 1, 0])
    assert torch.equal(Checked()(torch.zeros(3, 1), labels=labels), LabelSimilarity()(torch.zeros(3, 1), labels=labels))
    assert isinstance(GaussianKernel().rows(TeacherInputs(torch.randn(3, 2)))(0, 3), torch.Tensor)
