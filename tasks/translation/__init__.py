"""Sequence-to-sequence machine translation with attention (``task=translation``)."""

from .task import TranslationConfig, TranslationTask

__all__ = ["TranslationConfig", "TranslationTask"]
