"""The ``wiki-body`` source: the article's own non-lead sections, one document per section.

STAND-IN, NOT THE PAPER'S TASK. Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences")
built inputs from the cited references and web search results and removed the article itself and its
clones. Offline (no way to fetch the cited pages) this is the only source available for every article, so
it is the default: the model then learns to write the lead from the body of the same article, a much
easier and different task. Use ``--source references`` with a local reference store for the paper's task.
No clone removal is applied (the documents ARE the article).
"""

from __future__ import annotations


def wiki_body_documents(article: dict) -> tuple[list[dict], dict]:
    """Non-lead sections of ``article`` as documents ``{"url": "#<section title>", "text"}``."""
    documents = [
        {"url": "#" + section["title"], "text": section["text"]}
        for section in article["sections"][1:]
        if section["text"].strip()
    ]
    return documents, {"n_cited_urls": 0, "n_found_documents": len(documents)}
