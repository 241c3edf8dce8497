"""Helpers of the Apache Beam pipeline (:mod:`data_prep.beam_pipeline`, issue 8) that need no Beam import.

- :mod:`data_prep.beam.dump_shards`: cut a MediaWiki dump into independent XML chunks of whole pages
  (from one decompressed stream, or from byte ranges of a multistream ``.bz2`` via its index), and read
  the pages of a chunk with the single-machine reader :func:`data_prep.dump.iter_dump_pages`.
"""
