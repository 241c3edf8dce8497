"""Transformer encoder-decoder: causality, padding, cache == full forward, shared weights, config, learning."""

import pytest
import torch

from tests.ut.helpers import copy_batch, overfit_seq2seq, padded
from ut.decoding import greedy_decode
from ut.models import build_model
from ut.models.transformer import TransformerConfig, TransformerEncoderDecoder


def tiny(**kw):
    base = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2,
                n_decoder_layers=2, dropout=0.0)
    return TransformerEncoderDecoder(TransformerConfig(**{**base, **kw}))


@pytest.mark.parametrize("transition", ["ffn", "sepconv"])
def test_decoder_is_causal(transition):
    m = tiny(transition=transition).double().eval()
    src, src_mask = padded([[5, 6, 7, 8], [9, 10]])
    tgt = torch.randint(5, 13, (2, 7))
    ref = m(src, src_mask, tgt).logits
    for t in range(7):
        tgt2 = tgt.clone()
        tgt2[:, t + 1 :] = torch.randint(5, 13, tgt2[:, t + 1 :].shape)
        torch.testing.assert_close(m(src, src_mask, tgt2).logits[:, : t + 1], ref[:, : t + 1])


@pytest.mark.parametrize("transition", ["ffn", "sepconv"])
def test_source_padding_cannot_change_outputs(transition):
    m = tiny(transition=transition).double().eval()
    src, src_mask = padded([[5, 6, 7, 8, 9], [9, 10]])
    tgt = torch.randint(5, 13, (2, 4))
    ref = m(src, src_mask, tgt).logits
    src_longer = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], 1)
    mask_longer = torch.cat([src_mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    src_longer[1, 2:] = 11  # garbage under the padding
    torch.testing.assert_close(m(src_longer, mask_longer, tgt).logits, ref)
    # and row 1 alone, unpadded, gives the same
    torch.testing.assert_close(m(src[1:, :2], src_mask[1:, :2], tgt[1:]).logits, ref[1:])


@pytest.mark.parametrize("norm,transition", [("pre", "ffn"), ("post", "sepconv")])
def test_cached_decoding_equals_full_forward_at_every_step(norm, transition):
    m = tiny(norm=norm, transition=transition).double().eval()
    src, src_mask = padded([[5, 6, 7, 8, 9], [9, 10], [11, 12, 5]])
    tgt_in = torch.tensor([[1, 7, 8, 9, 10], [1, 5, 5, 6, 6], [1, 12, 11, 10, 9]])
    full = m(src, src_mask, tgt_in).logits
    state, first = m.start_decoding({"src": src, "src_mask": src_mask})
    assert torch.equal(first, tgt_in[:, 0])
    for t in range(tgt_in.shape[1]):
        torch.testing.assert_close(m.decode_step(tgt_in[:, t], state), full[:, t])


def test_position_offsets_shift_positions():
    m = tiny().double().eval()
    src, src_mask = padded([[5, 6, 7]])
    tgt = torch.tensor([[1, 5, 6]])
    a = m(src, src_mask, tgt).logits
    b = m(src, src_mask, tgt, src_pos_offset=torch.tensor([4]), tgt_pos_offset=torch.tensor([4])).logits
    assert not torch.allclose(a, b)
    state, _ = m.start_decoding({"src": src, "src_mask": src_mask, "src_pos_offset": torch.tensor([4]),
                                 "tgt_pos_offset": torch.tensor([4])})
    torch.testing.assert_close(m.decode_step(tgt[:, 0], state), b[:, 0])


def test_shared_embeddings_and_tied_softmax():
    m = tiny(share_embeddings=True, tie_output=True)
    assert m.src_embed is m.tgt_embed and m.output.weight is m.tgt_embed.weight
    n_shared = sum(p.numel() for p in m.parameters())
    n_separate = sum(p.numel() for p in tiny(share_embeddings=False).parameters())
    assert n_separate - n_shared == 13 * 32


def test_config_validation():
    with pytest.raises(ValueError, match="unknown config keys"):
        build_model("transformer", {"d_model": 32, "n_heads": 4, "bogus": 1})
    with pytest.raises(ValueError, match="divide"):
        TransformerConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="norm"):
        TransformerConfig(norm="sandwich")
    with pytest.raises(ValueError, match="share_embeddings"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=11, share_embeddings=True)


def test_attention_maps_are_returned_per_layer():
    m = tiny().eval()
    src, src_mask = padded([[5, 6, 7], [8, 9]])
    out = m(src, src_mask, torch.tensor([[1, 5], [1, 6]]), need_weights=True)
    assert len(out.attentions["encoder"]) == 2 and out.attentions["encoder"][0].shape == (2, 4, 3, 3)
    assert out.attentions["decoder_cross"][1].shape == (2, 4, 2, 3)
    assert torch.all(out.attentions["decoder_cross"][0][1, :, :, 2] == 0)  # padded source key gets no weight


def test_bf16_autocast_forward_and_backward():
    m = tiny()
    b = copy_batch(batch=2, length=4, vocab=13)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(b["src"], b["src_mask"], b["tgt_in"])
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), b["tgt_out"].flatten())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_tiny_transformer_overfits_a_copy_batch_and_greedy_decodes_it():
    torch.manual_seed(0)
    m = tiny(n_encoder_layers=1, n_decoder_layers=1)
    b = copy_batch(batch=8, length=5, vocab=13)
    assert overfit_seq2seq(m, b, steps=250) == 1.0
    out = greedy_decode(m, b, max_len=6, eos_id=2)
    assert torch.equal(out.sequences, b["tgt_out"])
