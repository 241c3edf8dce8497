"""Publishing a build safely: one writer per output, a marker on every folder the build may delete, a
manifest that says when a build is finished and from which inputs.

Both engines (:mod:`data_prep.build`, :mod:`data_prep.beam.running` for a local ``--out``) publish through
:func:`publish_build`, which follows this protocol:

1. ``OUT`` must be a folder or absent (an existing file is an error); the writer takes an exclusive lock
   on ``OUT.lock`` (:mod:`filelock`, ``flock`` on POSIX) for the whole build, so a second build to the
   same ``OUT`` waits, then finds the first one's result;
2. the build writes under ``OUT.partial/``, which first receives the marker file :data:`MARKER_FILE`.
   A leftover ``OUT.partial/`` is deleted only when it carries the marker (a user's own folder of that
   name is an error, never deleted);
3. :data:`MANIFEST_FILE` is written last: every file of the build, and the fingerprint of every input
   file (path, size and modification time, as HF ``datasets`` fingerprints local data files). ``OUT`` is
   "already built" only when the manifest is there, every file it lists is there, and the inputs still
   have the recorded fingerprint; a changed dump at the same path rebuilds. (No file sizes: the data
   card names ``--out``, and two builds of the same inputs into different folders must stay
   byte-identical.)
4. ``build_config.json`` (:data:`data_prep.config.CONFIG_FILE`: the configuration) and the manifest are written
   last, after the build's own files;
5. publishing is a rename: ``OUT.partial`` -> ``OUT`` (an older build of ours at ``OUT`` is first moved
   aside under a marker-carrying name and deleted after), so ``OUT`` is never a half build.

Any ``OSError`` while writing (no permission, disk full) becomes a :class:`BuildOutputError` naming the
folder and the cause; the partial folder is removed and an earlier build at ``OUT`` is left intact. Any other
error of the build removes the partial folder too (an interrupt leaves it, for the next run to remove).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from data_prep.config import CONFIG_FILE

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKER_FILE = ".data_prep_build"
MARKER_TEXT = "written by `python -m data_prep build` (universal-transformers): this folder may be deleted by it\n"
MANIFEST_FILE = "build_manifest.json"


class BuildOutputError(RuntimeError):
    """The output folder cannot be used or written (names the folder and the cause)."""


def check_output_path(out: Path) -> None:
    """``OUT`` is usable: absent or a folder (a file is an error); raises :class:`BuildOutputError`."""
    if out.exists() and not out.is_dir():
        raise BuildOutputError(f"--out {out} is an existing file, not a folder: choose another --out")
    for sibling in (partial_path(out), lock_path(out)):
        if sibling.is_symlink():
            raise BuildOutputError(f"{sibling} is a symbolic link: remove it or choose another --out")


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def has_marker(folder: Path) -> bool:
    return (folder / MARKER_FILE).is_file()


@contextlib.contextmanager
def exclusive_lock(out: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``OUT`` (waits, with a log line, while another build holds it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(out)), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another build is writing %s (it holds %s): waiting for it to finish", out, lock_path(out))
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def file_fingerprint(path: str | Path) -> dict:
    """``{"path", "size", "mtime_ns"}`` of one input file (raises FileNotFoundError naming it)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"input file not found: {path}") from None
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def inputs_fingerprint(paths: Iterable[str | Path]) -> list[dict]:
    """The fingerprints of the input files, in the given order."""
    return [file_fingerprint(path) for path in paths]


def build_files(folder: Path) -> list[str]:
    """The relative path of every file under ``folder`` but the manifest itself, sorted."""
    files = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return sorted(name for name in files if name != MANIFEST_FILE)


def write_manifest(folder: Path, inputs: list[dict]) -> None:
    """The manifest (written last): the build's files and the inputs' fingerprints."""
    manifest = {"files": build_files(folder), "inputs": inputs}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def finished_build_problem(out: Path, inputs: list[dict]) -> str | None:
    """None when ``OUT`` is a finished build of these inputs, else what is wrong with it (one phrase)."""
    manifest_path = out / MANIFEST_FILE
    if not manifest_path.is_file():
        return f"it has no {MANIFEST_FILE} (an unfinished build, or one made by an older data_prep)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files, recorded = manifest["files"], manifest["inputs"]
    except (ValueError, KeyError, TypeError):
        return f"its {MANIFEST_FILE} is not readable"
    for name in files:
        if not (out / name).is_file():
            return f"{name} is missing"
    if recorded != inputs:
        changed = [new["path"] for old, new in zip(recorded, inputs) if old != new] or ["the list of inputs"]
        return f"its inputs changed since it was built ({', '.join(changed)})"
    return None


def is_current_build(out: Path, identity: dict, inputs: list[dict], config_file: str) -> bool:
    """True when ``out`` is a finished build of this configuration (``identity``, as saved in
    ``config_file``) and these inputs; False when there is nothing, or only a stale build of ours to
    replace; raises ``FileExistsError`` when ``out`` holds another configuration or is not ours."""
    if not out.exists() or not any(out.iterdir()):
        return False
    saved = out / config_file
    if saved.is_file() and json.loads(saved.read_text()) != identity:
        raise FileExistsError(f"{out} holds a build with another configuration; remove it or choose --out")
    problem = finished_build_problem(out, inputs)
    if problem is None:
        return True
    if has_marker(out):
        log.warning("rebuilding %s: %s", out, problem)
        return False
    raise FileExistsError(f"{out} exists and is not a finished build ({problem}); remove it or choose another --out")


def prepare_partial(out: Path) -> Path:
    """A fresh ``OUT.partial/`` carrying the marker; a leftover one is deleted only if it carries it."""
    partial = partial_path(out)
    if partial.exists():
        if not partial.is_dir() or not has_marker(partial):
            raise BuildOutputError(
                f"{partial} exists but was not made by data_prep (no {MARKER_FILE} in it): "
                "it is left alone; move it away or choose another --out"
            )
        log.warning("removing %s left by an interrupted build", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / MARKER_FILE).write_text(MARKER_TEXT)
    return partial


def publish(partial: Path, out: Path) -> None:
    """Move the finished ``partial`` to ``out``; an older build of ours there is replaced, never mixed."""
    if out.exists():
        if not any(out.iterdir()):
            out.rmdir()
        elif has_marker(out):
            old = out.with_name(out.name + ".replaced")
            if old.exists():
                if not has_marker(old):
                    raise BuildOutputError(f"{old} exists but was not made by data_prep: move it away")
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(partial, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        else:
            raise BuildOutputError(f"{out} exists, is not empty and was not made by data_prep: choose another --out")
    os.replace(partial, out)


def describe_os_error(out: Path, err: OSError) -> str:
    """One line for an ``OSError`` met while writing the build to ``out``."""
    where = f" ({err.filename})" if err.filename else ""
    return (
        f"cannot write the build to {out}: {err.strerror or err}{where}; "
        "nothing was published (an earlier build there is unchanged)"
    )


@contextlib.contextmanager
def writing(out: Path, partial: Path | None = None) -> Iterator[None]:
    """Turn an ``OSError`` of the writing phase into a :class:`BuildOutputError`, removing ``partial``
    (an ``OSError`` that data_prep raises itself with a message, such as a missing input, is kept)."""
    try:
        yield
    except OSError as err:
        if partial is not None and has_marker(partial):
            shutil.rmtree(partial, ignore_errors=True)
        if err.errno is None:
            raise  # raised by data_prep itself (a missing input, a folder in the way) with its own message
        raise BuildOutputError(describe_os_error(out, err)) from err


def publish_build(
    out: Path, identity: dict, fingerprints: Callable[[], list[dict]], write: Callable[[Path], T]
) -> T | None:
    """One build of configuration ``identity`` published to ``out`` by the protocol of this module.

    ``fingerprints()`` gives the inputs' fingerprints (:func:`inputs_fingerprint`; called after ``out`` is
    checked), ``write(partial)`` writes the build's files into the marked partial folder and returns what the
    caller needs (the data card); then ``build_config.json`` and the manifest are written and the folder is
    renamed to ``out``. Returns None, writing nothing, when ``out`` is already a finished build of
    ``identity`` from these inputs.
    """
    check_output_path(out)
    inputs = fingerprints()
    with writing(out), exclusive_lock(out):
        if is_current_build(out, identity, inputs, CONFIG_FILE):
            log.info("%s is already built with this configuration and these inputs: nothing to do", out)
            return None
        partial = prepare_partial(out)
        with writing(out, partial):
            try:
                result = write(partial)
            except Exception:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            (partial / CONFIG_FILE).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
            write_manifest(partial, inputs)  # last: the files and the inputs' fingerprints mark completion
            publish(partial, out)
    return result
