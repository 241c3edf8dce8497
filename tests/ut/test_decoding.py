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
