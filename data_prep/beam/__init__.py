"""The WikiSum build on Apache Beam: the same examples as :func:`data_prep.build.build_dataset`, on the
DirectRunner, Dataflow, Flink or Spark (docs/beam.md).

Liu et al. 2018 ("Generating Wikipedia by Summarizing Long Sequences", ICLR) built WikiSum by joining
~2.33M English articles against ~90M cited URLs found in CommonCrawl, on 1,000 VMs launched by a script of
their own (tensor2tensor ``data_generators/wikisum/parallel_launch.py``). This package expresses the same
build as one Beam pipeline; every per-record step is the single-machine build's own function (listed in
:mod:`data_prep`), these modules only wire them:

- :mod:`data_prep.beam.dump_shards` (no Beam import): cut a dump into chunks of whole pages, or a
  multistream ``.bz2`` into byte ranges by its index;
- :mod:`data_prep.beam.reading`: dumps, articles tables and reference store files on any Beam file system;
- :mod:`data_prep.beam.joins`: cited URLs ⋈ store documents ⋈ articles, one example per title, splits;
- :mod:`data_prep.beam.tokenizing`: the tokenizer on a sample of the train split, the token ids;
- :mod:`data_prep.beam.combiners`: the data card's length counts, the extractive ROUGE-L means;
- :mod:`data_prep.beam.pipeline`: the graph, one function per stage;
- :mod:`data_prep.beam.publishing`: local (shared protocol) and remote output, reading the shards back;
- :mod:`data_prep.beam.running`: options, the run and its checks, the data card (:func:`run_beam_build`);
- :mod:`data_prep.beam.options` (no Beam import): the Beam build's settings, read by :mod:`data_prep.cli`.

Deviations from the single-machine build (:mod:`data_prep.build`), each for scale:
- Parquet shards instead of ``save_to_disk``: ``datasets.load_dataset(str(OUT / "dataset"))`` loads them
  (or :func:`data_prep.beam.publishing.load_beam_dataset`). Row order within and across shards is the
  runner's, so files are not byte-identical across runs; the set of rows is (the same titles, targets,
  inputs and ids).
- A malformed XML page is a counted skip here; the single-machine reader stops the build with an error.
- ``--max-articles`` keeps the first N examples in dump order, like the single-machine build, but the whole
  input is still read (the counts cover all of it).
- The tokenizer is trained on a sample of the train split (:mod:`data_prep.beam.tokenizing`): with a
  sample at least as large as the train split, every token id is the single-machine build's.
- The search source (``--search-results``) is loaded by every worker (it must fit in a worker's memory);
  articles tables (``--articles``) are read by one reader per file. Dumps, dumps' chunks and store files
  may be local or on any Beam file system (``gs://``, ``s3://``, ``hdfs://``).
"""
