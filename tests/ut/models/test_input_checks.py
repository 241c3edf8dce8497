"""Every model checks its input at the entry point (ut/models/inputs.py, ut/nn/embedding.py, ut/nn/attention.py):
masks are inferred the same way for sources and targets, wrong shapes and padding holes are errors even when the
mask allows everything, ids outside the vocabulary name its size, an empty batch gives a zero ACT ponder loss."""

from __future__ import annotations

import pytest
import torch

from ut.models import build_model
from ut.nn.act import masked_mean
from ut.nn.attention import MultiHeadAttention

V = 20
BASE = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0}
ACT = {"n_steps": 2, "recurrence": "act", "act_max_steps": 4, "act_halting_bias_init": -1.0}
ENC_DEC = {
    "transformer": {**BASE, "src_vocab_size": V, "tgt_vocab_size": V, "n_encoder_layers": 1, "n_decoder_layers": 1},
    "universal": {**BASE, **ACT, "src_vocab_size": V, "tgt_vocab_size": V},
}
CLASSIFIERS = {
    "transformer_classifier": {**BASE, "vocab_size": V, "n_classes": 5, "n_layers": 1},
    "universal_classifier": {**BASE, **ACT, "vocab_size": V, "n_classes": 5},
}
LMS = {
    "decoder_only": {**BASE, "vocab_size": V, "n_layers": 1},
    "universal_decoder_only": {**BASE, **ACT, "vocab_size": V, "layer_pattern": "full", "max_len": 64},
}


def model(name):
    torch.manual_seed(0)
    return build_model(name, {**ENC_DEC, **CLASSIFIERS, **LMS}[name]).eval()


def ids(b=2, n=6):
    return torch.randint(5, V, (b, n))


def call(name, m, x, mask=None):
    """The model's forward with ``x`` as its (first) token input and ``mask`` as that input's mask."""
    if name in ENC_DEC:
        return m(x, mask, ids(x.shape[0], 4))
    if name in CLASSIFIERS:
        return m(x, mask)
    return m(x, mask)


ALL = [*ENC_DEC, *CLASSIFIERS, *LMS]


# ---------------------------------------------------------------------------------------------- target padding
def test_universal_infers_the_target_mask_so_padding_takes_no_part_in_act():
    m = model("universal")
    src, tgt = ids(2, 5), ids(2, 4)
    padded = torch.cat([tgt, torch.zeros(2, 3, dtype=torch.long)], 1)  # pad_id 0 after the real targets
    short = m(src, None, tgt)
    long = m(src, None, padded)  # no tgt_mask: inferred from pad_id, as src_mask is
    torch.testing.assert_close(long.aux_loss, short.aux_loss)
    torch.testing.assert_close(long.logits[:, :4], short.logits)
    assert bool((long.ponder_time["decoder"][:, 4:] == 0).all())
    explicit = m(src, None, padded, padded != 0)
    torch.testing.assert_close(long.aux_loss, explicit.aux_loss)


@pytest.mark.parametrize("name", list(ENC_DEC))
def test_a_target_mask_with_a_hole_is_rejected(name):
    m = model(name)
    tgt_mask = torch.ones(2, 4, dtype=torch.bool)
    tgt_mask[1, 1] = False
    with pytest.raises(ValueError, match="tgt_mask must be right-padded.*rows \\[1\\]"):
        m(ids(), None, ids(2, 4), tgt_mask)


# ---------------------------------------------------------------------------------------------- mask shapes
@pytest.mark.parametrize("name", ALL)
def test_an_all_true_mask_of_the_wrong_length_is_rejected(name):
    m, x = model(name), ids()
    with pytest.raises(ValueError, match="must have the shape of"):
        call(name, m, x, torch.ones(2, 7, dtype=torch.bool))


@pytest.mark.parametrize("name", ALL)
def test_a_1d_mask_and_a_zero_length_input_are_clear_errors(name):
    m, x = model(name), ids()
    with pytest.raises(ValueError, match=r"must have the shape of .*got \[6\]"):
        call(name, m, x, torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="has length 0"):
        call(name, m, ids(2, 0))
    with pytest.raises(ValueError, match=r"shape \[B, L\]"):
        call(name, m, ids(2, 6)[0])
    with pytest.raises(TypeError, match="bool"):
        call(name, m, x, torch.ones(2, 6, dtype=torch.long))


def test_target_mask_of_the_wrong_length_is_rejected():
    m = model("universal")
    with pytest.raises(ValueError, match="tgt_mask must have the shape of tgt_in"):
        m(ids(), None, ids(2, 4), torch.ones(2, 5, dtype=torch.bool))


def test_attention_checks_the_mask_shape_before_eliding_an_all_true_mask():
    attn = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 5, 16)
    attn(x, mask=torch.ones(2, 1, 1, 5, dtype=torch.bool))  # right shape: fine
    attn(x, mask=torch.ones(5, 5, dtype=torch.bool))  # broadcastable (Lq, Lk): fine
    for bad in [(2, 1, 1, 6), (3, 1, 1, 5), (2, 1, 4, 5), (1, 2, 1, 1, 5)]:
        with pytest.raises(ValueError, match="not broadcastable"):
            attn(x, mask=torch.ones(bad, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------- padding holes
@pytest.mark.parametrize("name", list(LMS))
def test_decoder_only_rejects_a_mask_with_a_hole_and_takes_left_or_right_padding(name):
    m, x = model(name), ids(2, 6)
    hole = torch.ones(2, 6, dtype=torch.bool)
    hole[0, 2] = False  # every row starts with a real token: the key mask would be dropped and the hole attended
    with pytest.raises(ValueError, match=r"left- or right-padded.*rows \[0\]"):
        m(x, hole)
    right = torch.ones(2, 6, dtype=torch.bool)
    right[0, 4:] = False
    left = right.flip(1)
    for mask in (right, left):
        out = m(x.masked_fill(~mask, 0), mask)
        assert bool(out.logits.isfinite().all())


# ---------------------------------------------------------------------------------------------- ids
@pytest.mark.parametrize("name", ALL)
def test_ids_outside_the_vocabulary_name_its_size(name):
    m = model(name)
    for bad in (V, -1):
        x = ids()
        x[1, 2] = bad
        with pytest.raises(ValueError, match=rf"token id {bad} is outside the vocabulary of size {V}"):
            call(name, m, x, torch.ones(2, 6, dtype=torch.bool))


def test_target_ids_outside_the_vocabulary_are_caught_too():
    m = model("transformer")
    tgt = ids(2, 4)
    tgt[0, 0] = V + 3
    with pytest.raises(ValueError, match=f"token id {V + 3} is outside the vocabulary of size {V}"):
        m(ids(), None, tgt)


def test_float_ids_are_a_type_error():
    with pytest.raises(TypeError, match="integer"):
        model("decoder_only")(ids().float())


# ---------------------------------------------------------------------------------------------- empty batch
@pytest.mark.parametrize("name", ["universal", "universal_classifier", "universal_decoder_only"])
def test_an_empty_batch_gives_a_zero_act_ponder_loss(name):
    m = model(name).train()
    out = call(name, m, ids(0, 6))
    assert out.aux_loss is not None and float(out.aux_loss) == 0.0


def test_masked_mean_of_nothing_is_zero():
    empty = torch.zeros(0, 5, requires_grad=True)
    assert float(masked_mean(empty, None).detach()) == 0.0
    masked_mean(empty, None).backward()  # still differentiable
    assert float(masked_mean(torch.ones(2, 3), None)) == 1.0
