"""Greedy and beam search on a model whose next-token distribution is known exactly (a Markov chain), plus the
GNMT length penalty."""

import math

import pytest
import torch

from ut.decoding import DecodeState, beam_search, gnmt_length_penalty, greedy_decode
from ut.nn.attention import DecodingCache

EOS, PAD = 2, 0


class MarkovModel:
    """Next-token log-probs depend only on the last token: ``table[last]`` (V x V log-probabilities).

    Implements the decoding protocol; the state holds the row index so that beam reordering is checked too.
    """

    def __init__(self, table: torch.Tensor, first: int = 1):
        self.table, self.first = table, first

    def start_decoding(self, batch):
        b = batch["n"]
        state = DecodeState(DecodingCache(), {"row": torch.arange(b)})
        return state, torch.full((b,), self.first, dtype=torch.long)

    def decode_step(self, tokens, state):
        state.step += 1
        return self.table[tokens]


def chain(v=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(v, v, generator=g) * 2, dim=-1)


def brute_force_best(table, max_len, alpha):
    """Enumerate every sequence up to max_len (ending at EOS or at max_len) and score it like beam search."""
    v = table.shape[0]
    best = []

    def rec(seq, last, score):
        if len(seq) == max_len:
            best.append((score / gnmt_length_penalty(len(seq), alpha), seq))
            return
        for tok in range(v):
            s = score + float(table[last, tok])
            if tok == EOS:
                best.append((s / gnmt_length_penalty(len(seq) + 1, alpha), seq + [tok]))
            else:
                rec(seq + [tok], tok, s)

    rec([], 1, 0.0)
    return sorted(best, key=lambda x: -x[0])


def test_gnmt_length_penalty():
    assert gnmt_length_penalty(1, 0.6) == pytest.approx(1.0)
    assert gnmt_length_penalty(7, 0.6) == pytest.approx((12 / 6) ** 0.6)
    assert gnmt_length_penalty(10, 0.0) == 1.0


def test_greedy_follows_argmax_and_stops_at_eos():
    table = torch.full((5, 5), -10.0)
    table[1, 3], table[3, 4], table[4, EOS] = 0.0, 0.0, 0.0  # 1 -> 3 -> 4 -> EOS
    out = greedy_decode(MarkovModel(table), {"n": 2}, max_len=6, eos_id=EOS)
    assert out.sequences.tolist() == [[3, 4, EOS]] * 2 and out.lengths.tolist() == [3, 3]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_one_equals_greedy(alpha):
    table = chain(seed=3)
    g = greedy_decode(MarkovModel(table), {"n": 3}, max_len=5, eos_id=EOS)
    b = beam_search(MarkovModel(table), {"n": 3}, beam_size=1, alpha=alpha, max_len=5, eos_id=EOS)
    assert torch.equal(b.sequences[:, 0, : g.sequences.shape[1]], g.sequences)
    torch.testing.assert_close(b.log_probs[:, 0], g.scores)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exhaustive_best(seed):
    table, max_len, alpha = chain(v=5, seed=seed), 4, 0.6
    best_score, best_seq = brute_force_best(table, max_len, alpha)[0]
    b = beam_search(MarkovModel(table), {"n": 1}, beam_size=200, alpha=alpha, max_len=max_len, eos_id=EOS)
    assert b.scores[0, 0].item() == pytest.approx(best_score, abs=1e-5)
    assert b.sequences[0, 0, : b.lengths[0, 0]].tolist() == best_seq


def test_hypotheses_sorted_by_penalised_score_and_end_at_eos():
    table = chain(seed=5)
    b = beam_search(MarkovModel(table), {"n": 2}, beam_size=4, alpha=0.6, max_len=6, eos_id=EOS)
    assert torch.all(b.scores[:, :-1] >= b.scores[:, 1:])
    for r in range(2):
        for j in range(4):
            n = int(b.lengths[r, j])
            seq = b.sequences[r, j, :n].tolist()
            assert EOS not in seq[:-1], "a hypothesis continued past EOS"
            assert seq[-1] == EOS or n == 6
            raw = 0.0
            last = 1
            for tok in seq:
                raw += float(table[last, tok])
                last = tok
            assert b.log_probs[r, j].item() == pytest.approx(raw, abs=1e-5)
            assert b.scores[r, j].item() == pytest.approx(raw / ((5 + n) / 6) ** 0.6, abs=1e-5)


def test_length_penalty_prefers_longer_hypotheses():
    table = torch.full((5, 5), math.log(1e-6))
    table[1, EOS], table[1, 3] = math.log(0.6), math.log(0.4)  # stop now (p=.6) or continue (p=.4)
    table[3, 4] = 0.0
    table[4, EOS] = 0.0
    short = beam_search(MarkovModel(table), {"n": 1}, beam_size=2, alpha=0.0, max_len=4, eos_id=EOS)
    long = beam_search(MarkovModel(table), {"n": 1}, beam_size=2, alpha=3.0, max_len=4, eos_id=EOS)
    assert short.sequences[0, 0, :1].tolist() == [EOS]  # no penalty: the likelier short output wins
    assert long.sequences[0, 0, :3].tolist() == [3, 4, EOS]  # log .4 / lp(3) > log .6 / lp(1) for alpha 3


# ---------------------------------------------------------------- constraints and sampling
from ut.decoding import (  # noqa: E402
    GenerationConfig,
    constrain_log_probs,
    generate,
    sample_decode,
    top_k_filter,
    top_p_filter,
)


def repeating_chain(v=6):
    """A chain that wants to loop 3 -> 4 -> 3 -> 4 ... and rarely ends."""
    table = torch.full((v, v), math.log(1e-4))
    table[1, 3] = table[3, 4] = table[4, 3] = math.log(0.9)
    table[:, EOS] = math.log(1e-3)
    return torch.log_softmax(table, -1)


def ngrams(seq, n):
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_no_repeat_ngram_blocks_every_repeat(n, search):
    table = repeating_chain()
    model = MarkovModel(table)
    free = greedy_decode(model, {"n": 1}, max_len=8, eos_id=EOS)
    assert len(set(ngrams(free.sequences[0].tolist(), n))) < len(ngrams(free.sequences[0].tolist(), n))  # repeats
    if search == "greedy":
        out = greedy_decode(model, {"n": 2}, max_len=8, eos_id=EOS, no_repeat_ngram_size=n)
        seqs = [out.sequences[r, : out.lengths[r]].tolist() for r in range(2)]
    else:
        out = beam_search(model, {"n": 2}, beam_size=3, max_len=8, eos_id=EOS, no_repeat_ngram_size=n)
        seqs = [out.sequences[r, j, : out.lengths[r, j]].tolist() for r in range(2) for j in range(3)]
    for seq in seqs:
        body = [t for t in seq if t != EOS]
        grams = ngrams(body, n)
        assert len(grams) == len(set(grams)), f"repeated {n}-gram in {seq}"


def test_no_repeat_ngram_bans_exactly_the_completing_tokens():
    logp = torch.zeros(1, 8)
    out = constrain_log_probs(logp, torch.tensor([[5, 6, 7, 5, 6]]), EOS, no_repeat_ngram_size=3)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [7]  # "5 6" was followed by 7
    out = constrain_log_probs(logp, torch.tensor([[5, 6, 5, 7, 5]]), EOS, no_repeat_ngram_size=2)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [6, 7]


@pytest.mark.parametrize("search", ["greedy", "beam", "sample"])
def test_min_len_blocks_eos_before_min_len(search):
    table = torch.full((5, 5), math.log(1e-3))
    table[:, EOS] = 0.0  # EOS is by far the likeliest token everywhere
    table = torch.log_softmax(table, -1)
    model = MarkovModel(table)
    kw = {"max_len": 10, "eos_id": EOS, "min_len": 4}
    if search == "greedy":
        lengths = greedy_decode(model, {"n": 3}, **kw).lengths.flatten()
        assert greedy_decode(model, {"n": 3}, max_len=10, eos_id=EOS).lengths.tolist() == [1, 1, 1]
    elif search == "beam":
        lengths = beam_search(model, {"n": 3}, beam_size=3, **kw).lengths.flatten()
    else:
        lengths = sample_decode(model, {"n": 3}, generator=torch.Generator().manual_seed(0), **kw).lengths
    assert lengths.tolist() == [5] * len(lengths)  # 4 tokens, then EOS at once


def test_beam_one_equals_greedy_with_constraints():
    table = repeating_chain()
    kw = {"max_len": 7, "eos_id": EOS, "min_len": 2, "no_repeat_ngram_size": 2}
    g = greedy_decode(MarkovModel(table), {"n": 2}, **kw)
    b = beam_search(MarkovModel(table), {"n": 2}, beam_size=1, alpha=0.6, **kw)
    assert torch.equal(b.sequences[:, 0, : g.sequences.shape[1]], g.sequences)
    torch.testing.assert_close(b.log_probs[:, 0], g.scores)


def test_top_k_one_and_zero_temperature_equal_greedy():
    table = chain(v=7, seed=4)
    g = greedy_decode(MarkovModel(table), {"n": 4}, max_len=6, eos_id=EOS)
    for kw in ({"top_k": 1}, {"temperature": 0.0}):
        s = sample_decode(MarkovModel(table), {"n": 4}, max_len=6, eos_id=EOS,
                          generator=torch.Generator().manual_seed(1), **kw)
        assert torch.equal(s.sequences, g.sequences)
        torch.testing.assert_close(s.scores, g.scores)
    cold = sample_decode(MarkovModel(table), {"n": 4}, max_len=6, eos_id=EOS, temperature=1e-4,
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(cold.sequences, g.sequences)  # temperature -> 0 is the argmax


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: set(torch.isfinite(top_p_filter(logits, p))[0].nonzero().flatten().tolist())
    assert kept(0.35) == {1}  # the top token alone reaches 0.35
    assert kept(0.5) == {1, 3}  # 0.4 < 0.5 <= 0.7
    assert kept(0.7) == {1, 3}  # exactly 0.7 reached by two tokens
    assert kept(0.71) == {1, 3, 4}  # 0.85
    assert kept(0.9) == {1, 3, 4, 2}  # 0.95
    assert kept(1.0) == {0, 1, 2, 3, 4}
    assert set(torch.isfinite(top_k_filter(logits, 2))[0].nonzero().flatten().tolist()) == {1, 3}


def test_sampling_draws_only_from_the_nucleus_with_the_right_frequencies():
    v = 6
    row = torch.tensor([0.0, 0.0, 0.45, 0.3, 0.15, 0.1]).clamp(min=1e-9).log()
    table = row.expand(v, v).clone()  # same distribution after any token; EOS (2) has 0.45
    model = MarkovModel(table)
    gen = torch.Generator().manual_seed(0)
    out = sample_decode(model, {"n": 4000}, max_len=1, eos_id=EOS, top_p=0.7, generator=gen)
    drawn = out.sequences[:, 0]
    assert set(drawn.tolist()) == {2, 3}  # nucleus of 0.7: 0.45 + 0.3
    assert (drawn == 2).float().mean().item() == pytest.approx(0.45 / 0.75, abs=0.03)  # renormalised


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    table = chain(v=8, seed=2)
    run = lambda seed: sample_decode(MarkovModel(table), {"n": 16}, max_len=8, eos_id=EOS, top_k=5, top_p=0.9,
                                     generator=torch.Generator().manual_seed(seed)).sequences
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_generate_dispatches_to_the_named_search():
    table = chain(v=6, seed=7)
    model = MarkovModel(table)
    kw = {"max_len": 6, "min_len": 1, "no_repeat_ngram_size": 2}
    g = greedy_decode(model, {"n": 2}, eos_id=EOS, **kw)
    assert torch.equal(generate(model, {"n": 2}, GenerationConfig(**kw), EOS).sequences, g.sequences)
    b = beam_search(model, {"n": 2}, beam_size=3, alpha=0.6, eos_id=EOS, **kw)
    gb = generate(model, {"n": 2}, GenerationConfig(beam_size=3, **kw), EOS)
    assert torch.equal(gb.sequences, b.sequences[:, 0]) and torch.equal(gb.scores, b.scores[:, 0])
    s = sample_decode(model, {"n": 2}, eos_id=EOS, top_k=3, generator=torch.Generator().manual_seed(5), **kw)
    gs = generate(model, {"n": 2}, GenerationConfig(sample=True, top_k=3, seed=5, **kw), EOS)
    assert torch.equal(gs.sequences, s.sequences)


@pytest.mark.parametrize("bad", [{"beam_size": 0}, {"min_len": 200}, {"top_p": 0.0}, {"temperature": -1.0},
                                 {"sample": True, "beam_size": 2}, {"no_repeat_ngram_size": -1}])
def test_generation_config_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="GenerationConfig"):
        GenerationConfig(**bad)


# ------------------------------------------------------------------------------------------ caches over long decodes
def _reference_kv(chunks_and_reorders, b=3):
    """What the KV cache must hold: plain concatenation and index_select, one tensor per step."""
    k = None
    for kind, value in chunks_and_reorders:
        if kind == "append":
            k = value if k is None else torch.cat([k, value], 2)
        elif kind == "reorder":
            k = k.index_select(0, value)
        else:  # "assign": code that sets k itself (the long-input attentions)
            k = value
    return k


def test_kv_cache_in_place_appends_equal_concatenation_across_growth_reorders_and_assignment():
    from ut.nn.attention import KVCache

    g = torch.Generator().manual_seed(0)
    ops, b = [], 3
    for i in range(60):
        n = 1 if i % 7 else 5  # one token per step, sometimes a chunk: the buffers are reallocated several times
        ops.append(("append", torch.randn(b, 2, n, 4, generator=g)))
        if i % 9 == 4:
            ops.append(("reorder", torch.randint(0, b, (b,), generator=g)))
        if i == 30:
            ops.append(("assign", torch.randn(b, 2, 7, 4, generator=g)))
    cache, views = KVCache(), []
    for step, (kind, value) in enumerate(ops):
        if kind == "append":
            k, v = cache.append(value, -value)
            views.append((step, k.clone(), k))
        elif kind == "reorder":
            cache.reorder_(value)
        else:
            cache.k, cache.v = value, -value
        want = _reference_kv(ops[: step + 1])
        assert torch.equal(cache.k, want) and torch.equal(cache.v, -want) and len(cache) == want.shape[2]
    for _, copy, view in views:  # views handed out earlier are never written over
        assert torch.equal(copy, view)


def test_kv_cache_spare_room_is_bounded_after_a_long_prefix():
    from ut.nn.attention import KVCache

    cache = KVCache()
    prefix = torch.randn(1, 2, 3000, 4)
    cache.append(prefix, prefix)
    k, _ = cache.append(torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    assert torch.equal(k[:, :, :3000], prefix) and (k[:, :, 3000] == 1).all()
    assert cache._buffers[0].shape[2] == 3001 + KVCache.MAX_GROWTH - 1


def test_decoding_cache_reorders_within_examples_and_shared_sites_once():
    from ut.nn.attention import KVCache

    cache = DecodingCache()
    own = cache.get("self")
    own.append(torch.arange(2.0).view(2, 1, 1, 1), torch.arange(2.0).view(2, 1, 1, 1))
    cross = cache.get_shared(("step0", "cross"), "layer", lambda: KVCache(static=True))
    assert cache.get_shared(("step1", "cross"), "layer") is cross and set(cache.sites) == {
        "self", ("step0", "cross"), ("step1", "cross")}
    cross.append(torch.arange(2.0).view(2, 1, 1, 1), torch.arange(2.0).view(2, 1, 1, 1))
    cache.reorder_(torch.tensor([0, 0, 1, 1]))  # expansion to beams: every site, the shared one once
    assert cross.k.flatten().tolist() == [0, 0, 1, 1] and own.k.flatten().tolist() == [0, 0, 1, 1]
    cache.reorder_(torch.tensor([1, 1, 3, 2]), within_examples=True)  # a beam step: per-example sites stay
    assert cross.k.flatten().tolist() == [0, 0, 1, 1] and own.k.flatten().tolist() == [0, 0, 1, 1]
    own.k = own.v = torch.tensor([5.0, 6.0, 7.0, 8.0]).view(4, 1, 1, 1)
    cache.reorder_(torch.tensor([1, 1, 3, 2]), within_examples=True)
    assert own.k.flatten().tolist() == [6, 6, 8, 7] and cross.k.flatten().tolist() == [0, 0, 1, 1]


def _tiny_seq2seq(kind: str):
    from ut.models.transformer import TransformerConfig, TransformerEncoderDecoder
    from ut.models.universal import UniversalTransformerConfig, UniversalTransformerEncoderDecoder

    torch.manual_seed(0)
    dims = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=32, n_heads=4, d_ff=64, dropout=0.0)
    if kind == "transformer":
        return TransformerEncoderDecoder(TransformerConfig(**dims, n_encoder_layers=2, n_decoder_layers=2)).double()
    m = UniversalTransformerEncoderDecoder(UniversalTransformerConfig(
        **dims, n_steps=3, recurrence=kind, act_halting_bias_init=0.0)).double()
    if kind == "act":
        with torch.no_grad():
            m.decoder.act.halting.weight.mul_(3.0)  # positions halt after different numbers of steps
    return m


@pytest.mark.parametrize("kind", ["transformer", "fixed", "act"])
def test_long_cached_greedy_and_beam_agree_with_the_full_forward_pass(kind):
    """40 tokens (the KV buffers grow at 16 and 32) with padded sources: each greedy token is the argmax of the full
    forward pass over its prefix, and the best beam's reported log-probability is the full pass's."""
    m = _tiny_seq2seq(kind).eval()
    src = torch.tensor([[5, 6, 7, 8, 9], [9, 10, 0, 0, 0], [11, 12, 5, 0, 0]])
    batch = {"src": src, "src_mask": src != 0}
    n = 40
    g = greedy_decode(m, batch, n, eos_id=-1)
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), g.sequences[:, :-1]], 1)
    with torch.no_grad():
        logp = torch.log_softmax(m(src, src != 0, tgt_in, torch.ones_like(tgt_in, dtype=torch.bool)).logits, -1)
    assert torch.equal(logp.argmax(-1), g.sequences)
    torch.testing.assert_close(logp.gather(2, g.sequences[..., None]).sum((1, 2)).float(), g.scores)
    b = beam_search(m, batch, 3, alpha=0.0, max_len=n, eos_id=-1)
    best = b.sequences[:, 0]
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), best[:, :-1]], 1)
    with torch.no_grad():
        logp = torch.log_softmax(m(src, src != 0, tgt_in, torch.ones_like(tgt_in, dtype=torch.bool)).logits, -1)
    torch.testing.assert_close(logp.gather(2, best[..., None]).sum((1, 2)).float(), b.log_probs[:, 0].float())
