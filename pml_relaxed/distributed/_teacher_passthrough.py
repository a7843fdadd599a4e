"""``_TeacherPassthrough``: the small private base of the two distributed wrappers."""

from __future__ import annotations

import torch

from .._teacher import takes_teacher


class _TeacherPassthrough(torch.nn.Module):
    """A module that wraps one loss or miner (the attribute ``wrapped_name`` names) and hands the teacher on only
    when what it wraps reads it: :func:`pml_relaxed._teacher.takes_teacher` looks through it to the wrapped
    module (``teacher_passthrough``)."""

    wrapped_name: str = ""

    @property
    def teacher_passthrough(self) -> torch.nn.Module:
        """The wrapped module: ``takes_teacher(wrapper)`` is ``takes_teacher(wrapped module)``."""
        return getattr(self, self.wrapped_name)

    @property
    def wrapped_takes_teacher(self) -> bool:
        """True if the wrapped module reads ``teacher_emb=`` (:func:`pml_relaxed._teacher.takes_teacher`)."""
        return takes_teacher(self.teacher_passthrough)
