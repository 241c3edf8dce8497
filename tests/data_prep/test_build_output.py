"""Builds that must not lose data or lie: concurrent builds, stale or foreign folders, changed inputs, a bad
--out, no permission, a full disk, `stats` on a missing folder (generated dumps; no shared data needed)."""

import errno
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from data_prep.__main__ import main
from data_prep.build import build_dataset
from data_prep.build_output import MANIFEST_FILE, MARKER_FILE, exclusive_lock, partial_path
from tests.data_prep.fixtures import standard_pages, write_dump

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(eval_lengths=(), rankers=("identity",), input_lengths=(32,))
SMALL_ARGS = ["--eval-lengths", "", "--rankers", "identity", "--input-lengths", "32"]


def _titles(out: Path) -> list[str]:
    ds = datasets.load_from_disk(str(out / "dataset"))
    return sorted(title for split in ds for title in ds[split]["title"])


def _error_lines(captured) -> list[str]:
    assert "Traceback" not in captured.err
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


def _rewrite(dump: Path, n_articles: int) -> None:
    """The same path, other content (and a later modification time)."""
    before = dump.stat().st_mtime_ns
    write_dump(dump, standard_pages(n_articles))
    os.utime(dump, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def dump(tmp_path):
    return write_dump(tmp_path / "d.xml", standard_pages(5))


def test_a_changed_dump_at_the_same_path_rebuilds(dump, tmp_path):
    out = build_dataset(out=str(tmp_path / "out"), dumps=[str(dump)], **SMALL)
    assert len(_titles(out)) == 5
    _rewrite(dump, 7)
    assert build_dataset(out=str(out), dumps=[str(dump)], **SMALL) == out
    assert len(_titles(out)) == 7  # the old build was returned as "already built"
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["inputs"] == [
        {"path": str(dump), "size": dump.stat().st_size, "mtime_ns": dump.stat().st_mtime_ns}
    ]


def test_already_built_checks_every_file_of_the_build(dump, tmp_path):
    out = build_dataset(out=str(tmp_path / "out"), dumps=[str(dump)], **SMALL)
    (out / "tokenizer.json").unlink()  # a build published without it used to count as finished
    build_dataset(out=str(out), dumps=[str(dump)], **SMALL)
    assert (out / "tokenizer.json").is_file()
    assert set(json.loads((out / MANIFEST_FILE).read_text())["files"]) >= {
        "tokenizer.json", "special_tokens.json", "build_config.json", "data_card.json", MARKER_FILE,
        "dataset/dataset_dict.json",
    }


def test_a_users_own_partial_folder_is_never_deleted(dump, tmp_path):
    mine = tmp_path / "out.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own work")
    with pytest.raises(RuntimeError, match=r"out.partial exists but was not made by data_prep"):
        build_dataset(out=str(tmp_path / "out"), dumps=[str(dump)], **SMALL)
    assert (mine / "notes.txt").read_text() == "my own work"
    assert not (tmp_path / "out").exists()


def test_a_foreign_folder_at_out_is_refused_and_kept(dump, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "build_manifest.json").write_text("{}")  # looks like a build, is not one of ours
    with pytest.raises(FileExistsError, match="not a finished build"):
        build_dataset(out=str(out), dumps=[str(dump)], **SMALL)
    assert (out / "build_manifest.json").read_text() == "{}"


def test_out_that_is_a_file_is_one_line_and_exit_2(dump, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert main(["build", "--dump", str(dump), "--out", str(target), *SMALL_ARGS]) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "is an existing file" in line and str(target) in line
    assert target.read_text() == "keep me"


def _deny_writes_under(monkeypatch, folder: Path) -> None:
    """Creating files or folders under ``folder`` fails with EACCES (as root too, unlike chmod)."""
    real_open, real_mkdir = os.open, os.mkdir

    def denied(path):
        return str(os.path.abspath(path)).startswith(str(folder) + os.sep)

    def guarded_open(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and denied(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if denied(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def test_no_write_permission_is_one_line_and_exit_2(dump, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "readonly"
    locked.mkdir()
    _deny_writes_under(monkeypatch, locked)
    assert main(["build", "--dump", str(dump), "--out", str(locked / "out"), *SMALL_ARGS]) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "Permission denied" in line and str(locked / "out") in line
    assert not (locked / "out").exists()


def test_disk_full_is_one_line_exit_2_and_the_earlier_build_is_intact(dump, tmp_path, capsys, monkeypatch):
    import data_prep.build as build_module

    out = tmp_path / "out"
    build_dataset(out=str(out), dumps=[str(dump)], **SMALL)
    before = _titles(out)
    _rewrite(dump, 7)  # a rebuild is due

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(partial_path(out) / "dataset"))

    monkeypatch.setattr(build_module, "_save_dataset", full)
    assert main(["build", "--dump", str(dump), "--out", str(out), *SMALL_ARGS]) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "No space left on device" in line and str(out) in line
    assert _titles(out) == before and (out / MANIFEST_FILE).is_file()  # the earlier build, whole
    assert not partial_path(out).exists()  # the half-written partial is removed (it holds the space)


def test_stats_on_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope")]) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "nope does not exist" in line
    (tmp_path / "empty").mkdir()
    assert main(["stats", str(tmp_path / "empty")]) == 2
    assert "not a finished build" in capsys.readouterr().err


def _cli_build(dump: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "data_prep", "build", "--dump", str(dump), "--out", str(out), *SMALL_ARGS]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_build_waits_for_the_lock_of_the_first(dump, tmp_path):
    out = tmp_path / "out"
    with exclusive_lock(out):  # a build in progress
        proc = _cli_build(dump, out)
        seen, deadline = "", time.monotonic() + 240
        while "waiting" not in seen and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += proc.stderr.readline()
        assert "another build is writing" in seen, (proc.poll(), seen)
        time.sleep(1.0)
        assert proc.poll() is None and not partial_path(out).exists() and not out.exists()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(_titles(out)) == 5 and (out / "tokenizer.json").is_file()


def test_two_builds_to_the_same_out_at_once_both_end_with_one_complete_build(dump, tmp_path):
    out = tmp_path / "out"
    procs = [_cli_build(dump, out), _cli_build(dump, out)]
    results = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert all("built" in stdout for stdout, _ in results)
    assert len(_titles(out)) == 5 and (out / "tokenizer.json").is_file() and (out / MANIFEST_FILE).is_file()
    assert not partial_path(out).exists()
