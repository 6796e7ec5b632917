"""Text classification with attention (``task=classification``)."""

from .task import ClassificationConfig, ClassificationTask

__all__ = ["ClassificationConfig", "ClassificationTask"]
