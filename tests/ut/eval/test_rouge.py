import pytest
from rouge_score import rouge_scorer

from ut.eval.rouge import (
    distinct_output_share,
    lsum_format,
    repeated_sentence_share,
    rouge_scores,
    split_sentences,
)

PREDS = [
    "The cat sat on the mat. It was happy! Dogs barked loudly.",
    "Paris is the capital of France. It has many museums.",
]
REFS = [
    "A cat was sitting on the mat. The cat was happy. Dogs were barking.",
    "Paris is France's capital city. Many museums are in Paris.",
]


def test_split_sentences():
    assert split_sentences("A b. C d! E f?\nG h") == ["A b.", "C d!", "E f?", "G h"]
    assert lsum_format("A b. C d.") == "A b.\nC d."


def test_rouge_matches_rouge_score_directly():
    got = rouge_scores(PREDS, REFS)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    for t in ("rouge1", "rouge2", "rougeL"):
        want = sum(scorer.score(r, p)[t].fmeasure for p, r in zip(PREDS, REFS)) / 2
        assert got[t] == pytest.approx(want)
        want_r = sum(scorer.score(r, p)[t].recall for p, r in zip(PREDS, REFS)) / 2
        assert got[f"{t}_r"] == pytest.approx(want_r)
    want_lsum = (
        sum(scorer.score(lsum_format(r), lsum_format(p))["rougeLsum"].fmeasure for p, r in zip(PREDS, REFS))
        / 2
    )
    assert got["rougeLsum"] == pytest.approx(want_lsum)
    # without sentence splitting Lsum would equal L on these texts; the split makes a difference
    raw_lsum = sum(scorer.score(r, p)["rougeLsum"].fmeasure for p, r in zip(PREDS, REFS)) / 2
    assert got["rougeLsum"] != pytest.approx(raw_lsum)


def test_rouge_identity_and_errors():
    assert rouge_scores(["a b c. d e."], ["a b c. d e."])["rouge2"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        rouge_scores(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="unknown ROUGE"):
        rouge_scores(["a"], ["a"], rouge_types=["rouge9"])


def test_diversity_guards():
    assert distinct_output_share(["x y", "x  y", "z"]) == pytest.approx(2 / 3)
    assert distinct_output_share(["same"] * 4) == 0.25
    assert repeated_sentence_share(["It is. It is. New one.", "Fine."]) == pytest.approx(1 / 4)
    assert repeated_sentence_share(["A. B.", "A."]) == 0.0  # repeats across outputs are not counted
