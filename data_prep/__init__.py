"""WikiSum-style data pipeline (Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences").

Pure per-record stages (reused unchanged by the Beam pipeline of issue 8):
- :func:`data_prep.dump.iter_dump_pages` (stream pages) -> :func:`data_prep.page_filter.page_skip_reason`
- :func:`data_prep.wikitext.parse_article` (sections + cited URLs)
- sources: :func:`data_prep.sources.wiki_body_documents`, :func:`~data_prep.sources.reference_documents`,
  :func:`~data_prep.sources.search_documents`; store records via
  :func:`data_prep.reference_store.warc_record_to_document` / ``json_line_to_document``, joined by
  :func:`data_prep.reference_store.canonical_url`
- :func:`data_prep.example.make_example` (target, clone removal, paragraphs, rankers)
- :func:`data_prep.splits.split_of_title`, :func:`data_prep.tokenizer.encode`
- shared by both builds (:mod:`data_prep.build`): ``page_to_article`` (page filter + parse),
  ``fit_tokenizer``, ``example_row`` (token ids), ``dataset_features`` (the schema), ``data_card``

- checks and safety shared by both builds: :mod:`data_prep.markup_check` (leftover markup in the data card),
  :mod:`data_prep.build_output` (lock, marker, manifest with the inputs' fingerprints, atomic publish)

Orchestration (single machine): :func:`data_prep.build.build_dataset`. Layout: data_prep/README.md.
"""
