"""The ``references`` source (Liu et al. 2018, Section 2.1): the pages the article cites.

The URLs come from the article's ``<ref>`` tags and citation templates
(:func:`data_prep.wikitext.reference_urls`); each is resolved against a local reference store
(:class:`data_prep.reference_store.ReferenceStore`, or any ``url -> text | None`` callable).
Per-article coverage (cited vs found) is returned for the data card. Clone removal happens afterwards,
in :func:`data_prep.example.make_example`.
"""

from __future__ import annotations

from collections.abc import Callable


def reference_documents(article: dict, lookup: Callable[[str], str | None]) -> tuple[list[dict], dict]:
    """Documents ``{"url", "text"}`` for the article's cited URLs found by ``lookup``, and the counts."""
    urls = article.get("reference_urls") or []
    documents = []
    for url in urls:
        text = lookup(url)
        if text:
            documents.append({"url": url, "text": text})
    return documents, {"n_cited_urls": len(urls), "n_found_documents": len(documents)}
