"""Where the Beam build's output goes, and how it is read back.

A local ``--out`` is published like the single-machine build's (:func:`data_prep.build_output.publish_build`:
lock, marked partial folder, manifest of the files and the inputs' fingerprints, rename). A remote one
(``gs://`` ...) cannot be renamed: :func:`publish_remote` writes in place, ``build_config.json`` last, after
deleting what an interrupted build left there. Beam writes one Parquet file for an empty split, which
``datasets`` rejects: :func:`drop_empty_shards`. :func:`load_beam_dataset` reads the shards back.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

from data_prep.beam.common import DUMP_ERRORS_DIR, WORK_DIR, FileSystems, is_remote, open_raw, read_text, write_text
from data_prep.beam.reading import input_files, store_file_list
from data_prep.build_output import file_fingerprint
from data_prep.config import CONFIG_FILE, DATASET_DIR, SPECIAL_TOKENS_FILE, TOKENIZER_FILE, BuildConfig
from data_prep.splits import SPLIT_NAMES

log = logging.getLogger(__name__)

# what a build writes in its output folder (a remote output is written in place)
_OUTPUT_PATTERNS = (
    f"{DATASET_DIR}/*.parquet",
    f"{WORK_DIR}/*",
    f"{WORK_DIR}/{DUMP_ERRORS_DIR}/*",
    TOKENIZER_FILE,
    SPECIAL_TOKENS_FILE,
    "data_card.*",
    "extractive_rouge.*",
)


def _fingerprint(path: str) -> dict:
    """A local file's :func:`~data_prep.build_output.file_fingerprint`; a remote one's size and update time."""
    if not is_remote(path):
        return file_fingerprint(path)
    metadata = FileSystems.match([path])[0].metadata_list[0]
    return {"path": path, "size": metadata.size_in_bytes, "mtime": metadata.last_updated_in_seconds}


def inputs_fingerprint(config: BuildConfig) -> list[dict]:
    """Fingerprints of every input: dumps or articles tables, reference store files, search results."""
    dumps, tables = input_files(config)
    files = (tables or dumps) + (store_file_list(config.reference_store) if config.reference_store else [])
    if config.search_results:
        files.append(config.search_results)
    return [_fingerprint(str(path)) for path in files]


def publish_remote(out: str, identity: dict, write: Callable[[str], dict]) -> dict | None:
    """A remote build written in place by ``write(out)``, ``build_config.json`` last; None when ``out``
    already holds a build of ``identity``, an error when it holds another configuration."""
    previous = read_text(f"{out}/{CONFIG_FILE}")
    if previous is not None:
        if json.loads(previous) == identity:
            log.info("%s is already built with this configuration: nothing to do", out)
            return None
        raise FileExistsError(f"{out} holds a build with another configuration; remove it or choose --out")
    remove_stale_outputs(out)
    card = write(out)
    write_text(f"{out}/{CONFIG_FILE}", json.dumps(identity, indent=2, sort_keys=True) + "\n")  # last
    return card


def remove_stale_outputs(work_dir: str) -> None:
    """Delete what an interrupted build left in a remote output (no ``build_config.json``): stale Parquet
    shards of another shard count would otherwise be loaded beside the new ones."""
    stale = [
        m.path
        for result in FileSystems.match([f"{work_dir}/{pattern}" for pattern in _OUTPUT_PATTERNS])
        for m in result.metadata_list
    ]
    if stale:
        log.warning("removing %d files left in %s by an interrupted build", len(stale), work_dir)
        FileSystems.delete(stale)


def drop_empty_shards(work_dir: str) -> int:
    """Delete Parquet shards with no row (Beam writes one for an empty split; ``datasets`` rejects a split
    of empty files). Returns how many were deleted."""
    import pyarrow.parquet as pq

    empty = []
    for match in FileSystems.match([f"{work_dir}/{DATASET_DIR}/*.parquet"])[0].metadata_list:
        with open_raw(match.path) as file:
            if pq.ParquetFile(io.BytesIO(file.read())).metadata.num_rows == 0:
                empty.append(match.path)
    if empty:
        FileSystems.delete(empty)
    return len(empty)


def load_beam_dataset(out: str):
    """The Parquet shards of a Beam build as a ``datasets.DatasetDict`` (the splits that have examples).

    Equivalent to ``datasets.load_dataset(OUT + "/dataset")``, which finds the splits by the file names.
    """
    import datasets

    base = f"{str(out).rstrip('/')}/{DATASET_DIR}"
    files = {split: f"{base}/{split}-*.parquet" for split in SPLIT_NAMES}
    files = {split: pattern for split, pattern in files.items() if FileSystems.match([pattern])[0].metadata_list}
    return datasets.load_dataset("parquet", data_files=files)
