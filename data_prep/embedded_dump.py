"""The embedded default dump: the real enwiki excerpt that ships inside the ``gensim`` wheel.

``gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``
(206 pages, 106 articles, 1.7 MB; text CC BY-SA by Wikipedia contributors) is found in an installed
gensim (``pip install 'universal-transformers[sample]'``) or, in the development workplace, in
``../shared/data/wiki`` beside the checkout. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDED_DUMP_NAME = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_WIKI_DIR = _REPO_ROOT.parent / "shared" / "data" / "wiki"


def embedded_dump_candidates() -> list[Path]:
    """Where the excerpt may be: the installed gensim package first, then ../shared/data/wiki."""
    candidates = []
    spec = importlib.util.find_spec("gensim")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "test" / "test_data" / EMBEDDED_DUMP_NAME)
    candidates.append(SHARED_WIKI_DIR / EMBEDDED_DUMP_NAME)
    return candidates


def embedded_dump_path() -> Path:
    """The excerpt's path, or a FileNotFoundError that says how to get it."""
    candidates = embedded_dump_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the embedded enwiki excerpt {EMBEDDED_DUMP_NAME} was not found (looked in: "
        f"{', '.join(str(p) for p in candidates)}). Install it with "
        "`pip install 'universal-transformers[sample]'` (it ships inside the gensim wheel), "
        "or pass --dump PATH to a MediaWiki XML dump."
    )
