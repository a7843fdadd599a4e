"""Kept for existing imports: the signature inspection now lives in :mod:`pml_relaxed._teacher`, with the rest of
the teacher-routing rule."""

from ._teacher import takes_keyword, takes_teacher

__all__ = ["takes_keyword", "takes_teacher"]
