"""Image captioning over CNN region features, Show, Attend and Tell (``task=captioning``)."""

from .task import CaptioningConfig, CaptioningTask

__all__ = ["CaptioningConfig", "CaptioningTask"]
