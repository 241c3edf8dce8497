"""Decoder-only T-D model: loss mask, causality, left/right padding, cached decoding == full forward."""

import pytest
import torch

from tests.ut.helpers import padded
from ut.data.lm_batches import pack_input_target
from ut.decoding import beam_search, greedy_decode, left_align
from ut.models.decoder_only import DecoderOnlyConfig, DecoderOnlyLM

SEP, EOS = 3, 2


def tiny(**kw):
    base = dict(vocab_size=15, d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.0)
    return DecoderOnlyLM(DecoderOnlyConfig(**{**base, **kw}))


def test_pack_input_target_builds_sequence_and_target_only_loss_mask():
    b = pack_input_target([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], SEP, EOS, 0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 3, 9, 10, 2], [8, 3, 11, 12, 13, 2, 0]]
    # position i predicts token i+1: the separator predicts the first target token, the last target token EOS
    assert b["loss_mask"].tolist() == [[0, 0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 0, 0]]
    everything = pack_input_target([[5, 6, 7]], [[9]], SEP, EOS, 0, loss_on="all")
    assert everything["loss_mask"].tolist() == [[1, 1, 1, 1, 1, 0]]


def test_left_align_keeps_order():
    ids, mask = padded([[5, 6, 7], [8]])
    la, lm = left_align(ids, mask, 0)
    assert la.tolist() == [[5, 6, 7], [0, 0, 8]] and lm.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("transition", ["ffn", "sepconv"])
def test_causal(transition):
    m = tiny(transition=transition).double().eval()
    x = torch.randint(4, 15, (2, 9))
    ref = m(x).logits
    for t in range(8):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randint(4, 15, x2[:, t + 1 :].shape)
        torch.testing.assert_close(m(x2).logits[:, : t + 1], ref[:, : t + 1])


@pytest.mark.parametrize("transition", ["ffn", "sepconv"])
def test_left_and_right_padding_give_the_unpadded_outputs(transition):
    m = tiny(transition=transition).double().eval()
    rows = [[5, 6, 7, 8, 3, 9], [10, 3, 11]]
    ids, mask = padded(rows)
    right = m(ids, mask).logits
    lids, lmask = left_align(ids, mask, 0)
    left = m(lids, lmask).logits
    for i, r in enumerate(rows):
        alone = m(torch.tensor([r])).logits[0]
        torch.testing.assert_close(right[i, : len(r)], alone)
        torch.testing.assert_close(left[i, -len(r) :], alone)


@pytest.mark.parametrize("transition", ["ffn", "sepconv"])
def test_cached_decoding_equals_full_forward_at_every_step(transition):
    m = tiny(transition=transition).double().eval()
    prefixes = [[5, 6, 7, 8, 3], [9, 3], [10, 11, 3]]
    continuation = torch.tensor([[12, 13, 14, 5], [6, 7, 8, 9], [4, 5, 6, 7]])
    ids, mask = padded(prefixes)
    state, first = m.start_decoding({"input_ids": ids, "attention_mask": mask})
    assert first.tolist() == [3, 3, 3]
    tokens = first
    for t in range(continuation.shape[1]):
        step_logits = m.decode_step(tokens, state)
        for i, p in enumerate(prefixes):
            full = m(torch.tensor([p + continuation[i, :t].tolist()])).logits[0, -1]
            torch.testing.assert_close(step_logits[i], full)
        tokens = continuation[:, t]


def test_greedy_and_beam_on_decoder_only():
    m = tiny().eval()
    ids, mask = padded([[5, 6, 3], [7, 3]])
    g = greedy_decode(m, {"input_ids": ids, "attention_mask": mask}, max_len=5, eos_id=EOS)
    b = beam_search(m, {"input_ids": ids, "attention_mask": mask}, beam_size=1, alpha=0.6, max_len=5, eos_id=EOS)
    assert torch.equal(b.sequences[:, 0, : g.sequences.shape[1]], g.sequences)


def test_unknown_layer_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown layer kind"):
        DecoderOnlyConfig(d_model=32, n_heads=4, layer_pattern="full/warp")
    with pytest.raises(ValueError, match="unknown config keys"):
        DecoderOnlyConfig.from_dict({"loss_on": "all"})  # a data choice: WikiSumDataModule(loss_on=...)


def test_tiny_decoder_only_overfits_copy_with_target_only_loss():
    """T-D learns to copy its input after the separator (loss on the target only)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    xs = torch.randint(5, 15, (8, 5), generator=g).tolist()
    batch = pack_input_target(xs, xs, SEP, EOS, 0)
    m = tiny(n_layers=2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    ids, lm = batch["input_ids"], batch["loss_mask"]
    for _ in range(250):
        logits = m(ids, batch["attention_mask"]).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits[lm[:, :-1]], ids[:, 1:][lm[:, :-1]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    prefix_ids = torch.tensor([x + [SEP] for x in xs])
    out = greedy_decode(m, {"input_ids": prefix_ids}, max_len=6, eos_id=EOS)
    assert out.sequences.tolist() == [x + [EOS] for x in xs]


@pytest.mark.parametrize("pattern", ["locm/redm", "full/full"])
def test_batched_decoding_equals_each_row_alone(pattern):
    """Prefixes of different lengths: batched greedy and beam outputs equal decoding every example alone, also for
    T-DMCA, whose local / memory-compressed blocks follow the tensor index (decoded row by row)."""
    torch.manual_seed(0)
    m = tiny(layer_pattern=pattern, block_size=4, compression=2).eval()
    assert m.exact_with_padded_prefixes == (pattern == "full/full")
    prefixes = [[5, 6, 7, 8, 9, 10, 3], [9, 3], [10, 11, 12, 3]]
    ids, mask = padded(prefixes)
    batch = {"input_ids": ids, "attention_mask": mask}
    g = greedy_decode(m, batch, max_len=5, eos_id=EOS)
    b = beam_search(m, batch, beam_size=2, alpha=0.6, max_len=5, eos_id=EOS)
    for i, p in enumerate(prefixes):
        alone = {"input_ids": torch.tensor([p])}
        ga = greedy_decode(m, alone, max_len=5, eos_id=EOS)
        assert g.sequences[i, : ga.sequences.shape[1]].tolist() == ga.sequences[0].tolist()
        torch.testing.assert_close(g.scores[i], ga.scores[0])
        ba = beam_search(m, alone, beam_size=2, alpha=0.6, max_len=5, eos_id=EOS)
        torch.testing.assert_close(b.scores[i], ba.scores[0])
