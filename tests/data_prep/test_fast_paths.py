"""The fast per-article stages give exactly what the straightforward implementations give.

Each reference below is the plain form of the rule (t2t's regexes, a sum over every query token, a
search over all tokens, one ``tokenizer.encode`` per text); the optimised functions of data_prep must
match it bit for bit, since the build's outputs are compared byte for byte across revisions.
"""

import math
import random
import re
import string
import sys
from collections import Counter

import numpy as np
import pytest

from data_prep.dump import iter_dump_pages
from data_prep.embedded_dump import embedded_dump_path
from data_prep.example import SEPARATOR, ranked_input
from data_prep.paragraphs import document_paragraphs, is_good_paragraph, normalize_text
from data_prep.rankers import _query_tokens, sumbasic_order, tfidf_scores
from data_prep.tokenizer import WordCachedEncoder, train_tokenizer
from data_prep.wikitext import parse_article

WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def reference_normalize(text):
    text = text.lower()
    text = re.sub(f"[{re.escape(string.punctuation)}]", r" \g<0> ", text)
    return re.sub(r"\s+", " ", text).strip()


def reference_is_good(paragraph):
    tokens = paragraph.split()
    if len(tokens) < 6 or not re.search(r"[A-Za-z]", paragraph):
        return False
    last_period = num_alpha = 0
    for i, token in enumerate(tokens):
        if token == ".":
            if i - last_period > 3 and num_alpha >= 3:
                return True
            last_period, num_alpha = i, 0
        if re.match(r"^[A-Za-z]*$", token):
            num_alpha += 1
    return False


def reference_tfidf(query, paragraphs):
    query_tokens = _query_tokens(query)
    wanted = set(query_tokens)
    counts = [Counter(t for t in p.split() if t in wanted) for p in paragraphs]
    doc_freq = Counter(token for c in counts for token in c)
    n = len(paragraphs)
    return [sum(c[w] * math.log(n / max(doc_freq[w], 1)) for w in query_tokens) for c in counts]


def reference_sumbasic(paragraphs):
    words = [[t for t in p.split() if re.search("[a-z0-9]", t)] for p in paragraphs]
    vocabulary = {w: k for k, w in enumerate(sorted({w for ws in words for w in ws}))}
    if not vocabulary:
        return list(range(len(paragraphs)))
    token_ids = np.array([vocabulary[w] for ws in words for w in ws])
    owner = np.repeat(np.arange(len(words)), [len(ws) for ws in words])
    lengths = np.array([max(len(ws), 1) for ws in words], dtype=np.float64)
    probability = np.bincount(token_ids, minlength=len(vocabulary)) / len(token_ids)
    available = np.ones(len(words), dtype=bool)
    order = []
    for _ in range(len(words)):
        mean = np.bincount(owner, weights=probability[token_ids], minlength=len(words)) / lengths
        mean[~available] = -1.0
        best = int(np.argmax(mean))
        order.append(best)
        available[best] = False
        held = np.unique(token_ids[owner == best])
        probability[held] = probability[held] ** 2
    return order


def random_text(rng, n_words):
    alphabet = string.ascii_letters + string.digits + string.punctuation + "éßΣσςİıÅ中文ﬁ"
    words = []
    for _ in range(n_words):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
        words.append(word)
        words.append(rng.choice([" ", " ", " ", "\n", "\t", "  ", rng.choice(WHITESPACE)]))
    return rng.choice(["", " ", "\u3000"]) + "".join(words)


@pytest.fixture(scope="module")
def real_paragraphs():
    """Normalised paragraphs of some articles of the embedded enwiki excerpt, one list per article."""
    articles = []
    for page in iter_dump_pages(embedded_dump_path()):
        if page["namespace"] != 0 or page["redirect"] or len(articles) >= 12:
            continue
        article = parse_article(page["title"], page["wikitext"], page["namespaces"])
        paragraphs = [p for s in article["sections"][1:] for p in document_paragraphs(s["text"])[0]]
        if len(paragraphs) >= 3:
            lead = normalize_text(article["sections"][0]["text"])
            articles.append((normalize_text(page["title"]), lead, paragraphs))
    assert len(articles) >= 8
    return articles


def test_normalize_text_equals_t2t_regexes_on_every_whitespace_and_punctuation():
    rng = random.Random(0)
    texts = [random_text(rng, rng.randint(0, 40)) for _ in range(400)]
    texts += ["".join(WHITESPACE) + "a" + "".join(WHITESPACE), string.punctuation, "ΣΑΣ Σ. İstanbul"]
    for text in texts:
        assert normalize_text(text) == reference_normalize(text), repr(text)


def test_paragraph_filter_equals_t2t_rule():
    rng = random.Random(1)
    for _ in range(2000):
        tokens = [rng.choice(["the", "a", "b2", ".", "Ab", "é", "x-y", ",", "."]) for _ in range(rng.randint(0, 14))]
        paragraph = " ".join(tokens)
        assert is_good_paragraph(paragraph) == reference_is_good(paragraph), paragraph


def test_tfidf_and_cheating_scores_are_bit_identical(real_paragraphs):
    for title, lead, paragraphs in real_paragraphs:
        for query in (title, lead, "", "zzz unknown"):
            assert tfidf_scores(query, paragraphs) == reference_tfidf(query, paragraphs)


def test_sumbasic_order_is_identical(real_paragraphs):
    rng = random.Random(2)
    cases = [p for _, _, p in real_paragraphs] + [
        [" ".join(rng.choice("a b c d e f , .".split()) for _ in range(rng.randint(1, 12))) for _ in range(15)]
        for _ in range(20)
    ]
    for paragraphs in cases:
        assert sumbasic_order(paragraphs) == reference_sumbasic(paragraphs)


def test_ranked_input_with_word_counts_is_the_same_text(real_paragraphs):
    rng = random.Random(3)
    for title, _, paragraphs in real_paragraphs:
        counts = [len(p.split()) for p in paragraphs]
        order = list(range(len(paragraphs)))
        rng.shuffle(order)
        boundaries = list(np.cumsum([counts[i] for i in order]))
        for max_words in [1, 5, boundaries[0], boundaries[0] + 1, boundaries[-1], boundaries[-1] + 7, 11000]:
            slow = ranked_input(title, paragraphs, order, max_words)
            assert ranked_input(title, paragraphs, order, max_words, counts) == slow
            assert len(slow.split(f" {SEPARATOR} ", 1)[1].split()) == min(max_words, boundaries[-1])
    assert ranked_input("t", ["a b"], [], 5, [2]) == ranked_input("t", ["a b"], [], 5)


def test_word_cached_encoder_gives_the_tokenizer_ids(real_paragraphs):
    rng = random.Random(4)
    corpus = [" ".join(p) for _, _, p in real_paragraphs]
    tokenizer = train_tokenizer(corpus, 2048)
    encoder = WordCachedEncoder(tokenizer)
    texts = corpus[:4] + [random_text(rng, rng.randint(0, 60)) for _ in range(200)]
    texts += ["x<sep>y <sep> <pad>z", "ΑΣ ΣΑ aΣ. Σ", "the " + SEPARATOR + " the cat", "", "   "]
    for text in texts + texts:  # the second pass reads every word from the cache
        expected = tokenizer.encode(text).ids
        assert encoder.encode(text) == expected, repr(text)
        assert encoder.encode(text, 7) == expected[:7]


def test_word_cached_encoder_refuses_another_tokenizer_and_bounds_its_cache():
    from tokenizers import Tokenizer, models, pre_tokenizers

    other = Tokenizer(models.BPE(unk_token="<unk>"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(ValueError, match="train_tokenizer"):
        WordCachedEncoder(other)
    tokenizer = train_tokenizer(["a b c d e f g"] * 5, 600)
    encoder = WordCachedEncoder(tokenizer, max_cached_words=3)
    for text in ["a b", "c d e f", "g a"]:
        assert encoder.encode(text) == tokenizer.encode(text).ids
        assert len(encoder._ids) <= 4


def test_article_without_reference_urls_has_the_same_sections():
    page = next(p for p in iter_dump_pages(embedded_dump_path()) if p["namespace"] == 0 and not p["redirect"])
    full = parse_article(page["title"], page["wikitext"], page["namespaces"])
    lean = parse_article(page["title"], page["wikitext"], page["namespaces"], with_reference_urls=False)
    assert lean["sections"] == full["sections"] and lean["reference_urls"] is None and full["reference_urls"]
