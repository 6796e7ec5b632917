"""Sequence-to-sequence machine translation with attention (``task=translation``)."""

from tasks.translation.task import TranslationConfig, TranslationTask

__all__ = ["TranslationConfig", "TranslationTask"]
