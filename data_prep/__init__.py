"""WikiSum-style data pipeline (Liu et al. 2018, "Generating Wikipedia by Summarizing Long Sequences").

Pure per-record stages (reused unchanged by the Beam build, :mod:`data_prep.beam`):
- :func:`data_prep.dump.iter_dump_pages` (stream pages) -> :func:`data_prep.page_filter.page_skip_reason`
- :func:`data_prep.wikitext.parse_article` (sections + cited URLs)
- sources: :func:`data_prep.sources.wiki_body_documents`, :func:`~data_prep.sources.reference_documents`,
  :func:`~data_prep.sources.search_documents`; store records via
  :func:`data_prep.reference_store.warc_record_to_document` / ``json_line_to_document``, joined by
  :func:`data_prep.reference_store.canonical_url`
- :func:`data_prep.example.make_example` (target, clone removal, paragraphs, rankers)
- :func:`data_prep.splits.split_of_title`, :func:`data_prep.tokenizer.encode`
- shared by both builds (:mod:`data_prep.build`): ``page_to_article`` (page filter + parse),
  ``article_documents``, ``fit_tokenizer``, ``example_row`` (token ids), ``dataset_features`` (the schema);
  the card :func:`data_prep.data_card.data_card`; :class:`data_prep.config.BuildConfig` (the configuration);
  :mod:`data_prep.cli` (the one command line of both builds, and the data card's command derived from it)

- checks and safety shared by both builds: :mod:`data_prep.markup_check` (leftover markup in the data card),
  :mod:`data_prep.build_output` (lock, marker, manifest with the inputs' fingerprints, atomic publish:
  :func:`~data_prep.build_output.publish_build`)

Orchestration: :func:`data_prep.build.build_dataset` (single machine, one function per stage),
:func:`data_prep.beam.running.run_beam_build` (Apache Beam, :mod:`data_prep.beam`). Layout: data_prep/README.md.
"""
