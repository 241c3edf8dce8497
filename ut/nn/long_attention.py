"""The long-input causal self-attentions of T-DMCA, in one import: local and memory-compressed attention.

Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences", §4.2.2. Each mechanism has its own file,
with its docstring and shape legend:

- ut/nn/local_attention.py: :class:`LocalAttention` (blockwise causal attention, O(L * block));
- ut/nn/memory_compressed_attention.py: :class:`MemoryCompressedAttention` (keys and values shortened by a strided
  convolution; one grouped-query SDPA call);
- ut/nn/long_attention_common.py: what both share (:class:`LongAttentionCache`, :func:`key_padding_from_mask`).
"""

from ut.nn.local_attention import (
    LocalAttention,
    blockwise_local_attention,
    blockwise_local_attention_parts,
    local_attention_mask,
)
from ut.nn.long_attention_common import LongAttentionCache, key_padding_from_mask
from ut.nn.memory_compressed_attention import (
    COMPRESSION_ORDERS,
    MemoryCompressedAttention,
    compressed_attention,
    memory_compressed_mask,
)

__all__ = [
    "COMPRESSION_ORDERS",
    "LocalAttention",
    "LongAttentionCache",
    "MemoryCompressedAttention",
    "blockwise_local_attention",
    "blockwise_local_attention_parts",
    "compressed_attention",
    "key_padding_from_mask",
    "local_attention_mask",
    "memory_compressed_mask",
]
