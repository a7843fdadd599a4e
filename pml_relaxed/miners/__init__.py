"""PML miners fed by the teacher."""

from .teacher_similarity_miner import TeacherSimilarityMiner

__all__ = ["TeacherSimilarityMiner"]
