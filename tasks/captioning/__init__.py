"""Image captioning over CNN region features, Show, Attend and Tell (``task=captioning``)."""

from tasks.captioning.task import CaptioningConfig, CaptioningTask

__all__ = ["CaptioningConfig", "CaptioningTask"]
