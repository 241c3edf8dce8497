"""Each ranker on a hand-computed example."""

import math

import pytest

from data_prep.rankers import RANKERS, get_ranker, sumbasic_order, textrank_scores, tfidf_scores

PARAGRAPHS = ["a b c . d e f", "a b x y", "q r s", "a b c d"]


def test_identity_keeps_order():
    assert RANKERS["identity"]("t", PARAGRAPHS, "") == [0, 1, 2, 3]


def test_tfidf_paper_formula_by_hand():
    # title tokens {a, c}; N = 4; df(a) = 3, df(c) = 2
    scores = tfidf_scores("a c", PARAGRAPHS)
    la, lc = math.log(4 / 3), math.log(4 / 2)
    assert scores == pytest.approx([la + lc, la, 0.0, la + lc])
    assert RANKERS["tfidf"]("a c", PARAGRAPHS, "") == [0, 3, 1, 2]  # ties keep the original order


def test_cheating_uses_the_lead_not_the_title():
    # lead tokens {q, x, y}: df = 1 each -> p1 scores 2 log 4, p2 scores log 4
    assert RANKERS["cheating"]("a c", PARAGRAPHS, "x y q") == [1, 2, 0, 3]


def test_sumbasic_by_hand():
    # p(a)=p(b)=3/17, p(c)=p(d)=2/17, others 1/17 ("." is not a word). Means: p3 2.5/17 > p0 = p1 2/17 > p2 1/17.
    # After p3, a..d are squared: p2 (1/17) > p1 ((2*9/289 + 2/17)/4) > p0.
    assert sumbasic_order(PARAGRAPHS) == [3, 2, 1, 0]


def test_textrank_by_hand():
    # three paragraphs: 0 and 1 share two tokens, 2 shares one token with 0 and nothing with 1.
    paragraphs = ["a b c", "a b d", "c e f"]
    s = textrank_scores(paragraphs)
    w01, w02 = 2 / (2 * math.log(3)), 1 / (2 * math.log(3))
    # closed form of PageRank on this weighted graph, solved here by the power method by hand
    transition = [[0, w01 / (w01 + w02), w02 / (w01 + w02)], [1, 0, 0], [1, 0, 0]]
    r = [1 / 3] * 3
    for _ in range(200):
        r = [0.05 + 0.85 * sum(transition[j][i] * r[j] for j in range(3)) for i in range(3)]
    assert s == pytest.approx(r, abs=1e-6)
    assert RANKERS["textrank"]("", paragraphs, "") == [0, 1, 2]


def test_unknown_ranker_is_rejected():
    with pytest.raises(ValueError, match="unknown ranker"):
        get_ranker("bm25")
