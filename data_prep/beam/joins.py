"""The joins of the Beam build: articles' cited (or searched) URLs against the reference store's documents,
then the found documents back to their articles, then one example per title.

Liu et al. 2018 join ~2.33M articles against ~90M cited URLs from CommonCrawl; here the join is two
``CoGroupByKey`` steps: on the canonical URL (:func:`data_prep.reference_store.canonical_url`; of several
store documents with one URL the first in store order wins, as in
:class:`data_prep.reference_store.ReferenceStore`), then on the article key. The example of each article is
made by the single-machine build's :func:`data_prep.build.article_documents` and
:func:`data_prep.example.make_example`.
"""

from __future__ import annotations

from data_prep.beam.common import beam, count
from data_prep.build import SUMMED_COUNTS, article_documents
from data_prep.example import ExampleConfig, make_example
from data_prep.markup_check import example_markup_counters
from data_prep.reference_store import canonical_url
from data_prep.sources import load_search_results
from data_prep.splits import split_of_title


class _SourceDoFn(beam.DoFn):
    """A DoFn that knows the source; with ``search`` it loads the search results once per worker."""

    def __init__(self, source: str, search_results_path: str | None):
        self.source, self.search_results_path = source, search_results_path
        self.search_results = None

    def setup(self):
        if self.source == "search":
            self.search_results = load_search_results(self.search_results_path)


class CitedUrls(_SourceDoFn):
    """``(canonical_url, article key)`` for every URL an article looks up in the store."""

    def process(self, element):
        key, article = element
        if self.source == "references":
            urls = article.get("reference_urls") or []
        else:
            urls = [
                e["url"] for e in self.search_results.get(article["title"], []) if e.get("url") and not e.get("text")
            ]
        for url in sorted({canonical_url(u) for u in urls}):
            yield url, key


def match_documents(element):
    """One URL's citing articles and store documents in; ``(article key, (url, text))`` for each citer.

    Of several store documents with one URL the first in store order wins, as in ``ReferenceStore``.
    """
    url, groups = element
    keys = sorted(set(groups["cites"]))
    documents = list(groups["docs"])
    count("store_urls", int(bool(documents)))  # distinct URLs with a usable document (the store's size)
    if not keys:
        return
    if not documents:
        count("cited_urls_not_in_store", len(keys))
        return
    text = min(documents)[1]
    for key in keys:
        yield key, (url, text)


class _FoundDocuments:
    """The ``store.get`` that :func:`data_prep.build.article_documents` expects, over the joined documents."""

    def __init__(self, found: dict[str, str]):
        self.found = found

    def get(self, url: str) -> str | None:
        return self.found.get(canonical_url(url))


class MakeExample(_SourceDoFn):
    """``article_documents`` + ``make_example``: target, clone removal, paragraph filter, rankers."""

    def __init__(self, example_config: ExampleConfig, source: str, search_results_path: str | None):
        super().__init__(source, search_results_path)
        self.example_config = example_config

    def process(self, element):
        key, groups = element
        article = next(iter(groups["article"]))  # every key of the join comes from an article
        store = _FoundDocuments(dict(groups["found"]))
        documents, source_counts = article_documents(article, self.source, store, self.search_results)
        example, reason, counts = make_example(article, documents, source_counts, self.example_config)
        for name in SUMMED_COUNTS:
            count(name, counts.get(name, 0))
        if example is None:
            count(f"skip_{reason}")
        else:
            yield example["title"], (key, example)


def first_of_title(element):
    """Keep the first example of a title in dump order (the single-machine rule); count the others."""
    title, keyed = element
    keyed = sorted(keyed, key=lambda kv: kv[0])
    count("skip_duplicate_title", len(keyed) - 1)
    yield keyed[0]


def with_split(keyed, fractions, input_column: str):
    """The example's split; counts it (``examples``, ``split_<split>``) and its leftover markup."""
    key, example = keyed
    example = dict(example, split=split_of_title(example["title"], fractions))
    count("examples")
    count(f"split_{example['split']}")
    for name, n in example_markup_counters(example, input_column).items():
        count(name, n)
    return key, example
