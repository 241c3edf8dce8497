"""T-DMCA: the decoder-only LM with local / memory-compressed / mixture-of-experts layers from a layer pattern."""

from __future__ import annotations

import pytest
import torch

from tests.ut.helpers import padded
from ut.decoding import left_align
from ut.models.decoder_only import DecoderOnlyConfig, DecoderOnlyLM
from ut.nn.long_attention import LocalAttention, MemoryCompressedAttention
from ut.nn.moe import MoEFeedForward

PATTERN = "locm/redm/locm_prev-moe/redm_cp"


def tiny(pattern: str = PATTERN, **kw) -> DecoderOnlyLM:
    cfg = dict(vocab_size=24, d_model=32, n_heads=4, d_ff=48, layer_pattern=pattern, dropout=0.0, block_size=4,
               compression=3, n_experts=4, moe_top_k=2, max_len=64)
    return DecoderOnlyLM(DecoderOnlyConfig(**{**cfg, **kw}))


def test_layer_pattern_builds_the_long_input_layers():
    m = tiny()
    attn = [type(layer.self_attn) for layer in m.layers]
    assert attn == [LocalAttention, MemoryCompressedAttention, LocalAttention, MemoryCompressedAttention]
    assert [layer.self_attn.look_back for layer in (m.layers[0], m.layers[2])] == [False, True]
    assert [m.layers[i].self_attn.order for i in (1, 3)] == ["project_compress", "compress_project"]
    assert isinstance(m.layers[2].transition, MoEFeedForward)
    assert m.layers[0].self_attn.block_size == 4 and m.layers[1].self_attn.compression == 3
    # t2t's shipped T-DMCA-MoE pattern is a config change
    assert len(tiny("locm/redm/locm-moe/redm/locm").layers) == 5


def test_forward_backward_with_moe_aux_loss():
    m = tiny().train()
    ids = torch.randint(5, 24, (2, 23))
    out = m(ids)
    assert out.logits.shape == (2, 23, 24) and out.aux_loss is not None and out.aux_loss.dim() == 0
    (out.logits.logsumexp(-1).mean() + out.aux_loss).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing


def test_t_dmca_is_causal():
    m = tiny().double().eval()
    ids = torch.randint(5, 24, (1, 21))
    other = ids.clone()
    other[:, 10:] = torch.randint(5, 24, (1, 11))
    a, b = m(ids).logits, m(other).logits
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=1e-10)


@pytest.mark.parametrize("pattern", [PATTERN, "redm/locm_prev"])
def test_cached_decoding_equals_full_forward(pattern):
    """Blocks count from index 0 of the left-aligned batch, so the reference is that batch's full forward."""
    m = tiny(pattern).double().eval()
    prefixes = [[5, 6, 7, 8, 9, 10, 11, 3], [9, 3], [10, 11, 12, 13, 3]]
    cont = torch.tensor([[12, 13, 14, 5, 6, 7, 8, 9, 10], [6, 7, 8, 9, 10, 11, 12, 13, 14],
                         [4, 5, 6, 7, 8, 9, 10, 11, 12]])
    ids, mask = padded(prefixes)
    state, tokens = m.start_decoding({"input_ids": ids, "attention_mask": mask})
    left_ids, left_mask = left_align(ids, mask, 0)
    for t in range(cont.shape[1]):
        step_logits = m.decode_step(tokens, state)
        seq = torch.cat([left_ids, cont[:, :t]], dim=1)
        seq_mask = torch.cat([left_mask, torch.ones(3, t, dtype=torch.bool)], dim=1)
        full = m(seq, seq_mask).logits[:, -1]
        torch.testing.assert_close(step_logits, full, rtol=1e-9, atol=1e-9)
        tokens = cont[:, t]


def test_config_rejects_bad_long_input_settings():
    with pytest.raises(ValueError, match="suffix"):
        DecoderOnlyConfig(d_model=32, n_heads=4, layer_pattern="locm-warp")
    with pytest.raises(ValueError, match="attention_dropout"):
        DecoderOnlyConfig(d_model=32, n_heads=4, layer_pattern="redm", attention_dropout=0.1)
    with pytest.raises(ValueError, match="moe_top_k"):
        DecoderOnlyConfig(d_model=32, n_heads=4, layer_pattern="locm-moe", n_experts=2, moe_top_k=3)
    with pytest.raises(ValueError, match="block_size"):
        DecoderOnlyConfig(d_model=32, n_heads=4, layer_pattern="locm", block_size=0)
