"""The fact encoder (UT paper §3.1; MemN2N position encoding) against an independent float64 loop."""

import math

import pytest
import torch

from ut.nn.fact_encoder import FactEncoder, memn2n_position_encoding


def reference(enc: FactEncoder, words: torch.Tensor, stream: str) -> torch.Tensor:
    """sum_j m_j * e(w_j) * sqrt(D) over the non-padding words, one fact at a time, in float64."""
    emb = enc.words.weight.detach().double()
    mask = enc.masks[stream].detach().double()
    flat = words.reshape(-1, words.shape[-1])
    out = torch.zeros(flat.shape[0], enc.d_model, dtype=torch.float64)
    for i in range(flat.shape[0]):
        for j in range(flat.shape[1]):
            w = int(flat[i, j])
            if w != enc.pad_id:
                for k in range(enc.d_model):
                    out[i, k] += emb[w, k] * math.sqrt(enc.d_model) * mask[j, k]
    return out.reshape(*words.shape[:-1], enc.d_model)


def random_encoder(seed=0, vocab=13, d=8, max_words=7):
    torch.manual_seed(seed)
    enc = FactEncoder(vocab, d, max_words).eval()
    with torch.no_grad():
        for p in enc.masks.values():
            p.normal_()  # away from the PE init, so the test sees any position mix-up
    return enc


def test_matches_float64_reference_for_both_streams():
    enc = random_encoder()
    words = torch.randint(1, 13, (3, 4, 6))
    words[0, 1, 3:] = 0  # a short fact
    words[2, 3] = 0  # a padding fact
    for stream in ("fact", "question"):
        got = enc(words, stream).double()
        torch.testing.assert_close(got, reference(enc, words, stream), rtol=1e-5, atol=1e-5)
    assert enc(words)[2, 3].abs().max() == 0  # a padding fact is the zero vector
    # the two streams have their own masks
    assert not torch.allclose(enc(words, "fact"), enc(words, "question"))


def test_word_order_matters_and_padding_words_do_not():
    enc = random_encoder(1)
    w = torch.tensor([[5, 6, 7, 0]])
    longer = torch.tensor([[5, 6, 7, 0, 0, 0]])
    torch.testing.assert_close(enc(w), enc(longer))
    assert not torch.allclose(enc(w), enc(torch.tensor([[7, 6, 5, 0]])))  # not a bag of words
    # an explicit word mask drops a real word exactly like padding does
    m = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(enc(w, word_mask=m), enc(torch.tensor([[5, 6, 0, 0]])))


def test_mask_init_is_memn2n_position_encoding():
    pe = memn2n_position_encoding(4, 2)
    # l_kj = (1 - j/J) - (k/d)(1 - 2j/J), 1-based (Sukhbaatar et al. 2015, §4.1)
    assert pe[0, 0] == pytest.approx(0.75 - 0.5 * 0.5)
    assert pe[3, 1] == pytest.approx(0.0 - 1.0 * (1 - 2.0))
    enc = FactEncoder(10, 2, 4)
    torch.testing.assert_close(enc.masks["fact"].detach(), pe)
    assert all(p.requires_grad for p in enc.masks.values())  # learned


def test_masks_receive_gradients_and_bad_inputs_fail():
    enc = random_encoder(2)
    enc(torch.randint(1, 13, (2, 3, 5))).sum().backward()
    assert enc.masks["fact"].grad[:5].abs().sum() > 0 and enc.masks["fact"].grad[5:].abs().sum() == 0
    with pytest.raises(ValueError, match="max_words"):
        enc(torch.ones(1, 2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="stream"):
        enc(torch.ones(1, 2, dtype=torch.long), "story")
