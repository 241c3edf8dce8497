"""Where an article's input documents come from: ``wiki-body``, ``references``, ``search``.

Each source is a pure function from an article record (plus, for the web sources, a URL lookup) to a list
of ``{"url", "text"}`` documents and per-article counts. See the module of each source.
"""

from data_prep.sources.references import reference_documents
from data_prep.sources.search import load_search_results, search_documents
from data_prep.sources.wiki_body import wiki_body_documents

SOURCES = ("wiki-body", "references", "search")

__all__ = ["SOURCES", "wiki_body_documents", "reference_documents", "search_documents", "load_search_results"]
