"""General (bilinear) attention (Luong, Pham & Manning 2015, the *general* score).

    score(q, k) = q^T W k      (W is ``query_size x key_size``, so the sizes may differ)

``W k`` does not depend on the query and is precomputed once per source (:meth:`project_keys`).

The "seed model" of our docs -- a layer that projects queries and keys to a common size ``c`` with
two bias-free linear maps ``A (c x d_q)``, ``B (c x d_k)`` and takes softmax-normalised dot products
``(A q) . (B k)`` -- is exactly this variant with ``W = A^T B``
(``tests/attention/test_variants.py::test_general_reproduces_seed_projection_model``).
"""

from __future__ import annotations

from torch import Tensor, nn

from attnapps.attention.base import Attention
from attnapps.attention.registry import register_attention


@register_attention("general")
class GeneralAttention(Attention):
    """Luong *general* attention with a learned bilinear form."""

    def __init__(self, query_size: int, key_size: int, value_size: int | None = None):
        super().__init__(query_size, key_size, value_size)
        self.weight = nn.Linear(key_size, query_size, bias=False)  # W, applied to keys

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.weight(keys)  # (batch, k_len, d_q)

    def score(self, query: Tensor, projected_keys: Tensor) -> Tensor:
        return query @ projected_keys.transpose(1, 2)  # (batch, q_len, k_len)
