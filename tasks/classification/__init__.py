"""Text classification with attention (``task=classification``)."""

from tasks.classification.task import ClassificationConfig, ClassificationTask

__all__ = ["ClassificationConfig", "ClassificationTask"]
