"""Kept for existing imports: the "teacher_emb is required" hint now lives in :mod:`pml_relaxed._teacher`, with the
rest of the teacher-routing rule."""

from ._teacher import calling_pml_wrapper, check_teacher_reached

__all__ = ["calling_pml_wrapper", "check_teacher_reached"]
