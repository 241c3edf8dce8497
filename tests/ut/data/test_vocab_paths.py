from pathlib import Path

import pytest

from ut.data import paths
from ut.data.batching import pad
from ut.data.vocab import BOS_ID, EOS_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, UNK_ID, Vocabulary


def test_special_ids_match_contributing():
    assert (PAD_ID, BOS_ID, EOS_ID, SEP_ID, UNK_ID) == (0, 1, 2, 3, 4)
    v = Vocabulary(["a"])
    assert [v.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]


def test_vocab_build_encode_decode_roundtrip(tmp_path):
    v = Vocabulary.build([["b", "a", "b"], ["c", "b", "a"]], min_freq=2)
    assert v.tokens[5:] == ["b", "a"]  # most frequent first, "c" below min_freq
    assert v.encode(["a", "c"], add_bos=True, add_eos=True) == [BOS_ID, 6, UNK_ID, EOS_ID]
    assert v.decode([BOS_ID, 6, 5, EOS_ID]) == ["a", "b"]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == v


def test_pad_masks_true_on_real_tokens():
    ids, mask = pad([[7, 8, 9], [5]])
    assert ids.tolist() == [[7, 8, 9], [5, PAD_ID, PAD_ID]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_find_data_dir_env_and_error(tmp_path, monkeypatch):
    (tmp_path / "babi").mkdir()
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert paths.find_data_dir("babi") == tmp_path / "babi"
    monkeypatch.setattr(paths, "REPO_ROOT", Path(tmp_path) / "nowhere" / "repo")
    with pytest.raises(FileNotFoundError) as err:
        paths.find_data_dir("lambada")
    assert str(tmp_path / "lambada") in str(err.value) and "shared" in str(err.value)
