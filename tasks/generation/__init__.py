"""Text generation with a causal attention language model (``task=generation``)."""

from .task import GenerationConfig, GenerationTask

__all__ = ["GenerationConfig", "GenerationTask"]
