import numpy as np
import pytest
import torch

from ut.data.algorithmic import (
    DIGIT_OFFSET,
    PLUS_ID,
    AlgorithmicDataModule,
    generate_example,
    int_to_lower_endian,
    lower_endian_to_int,
)
from ut.data.vocab import BOS_ID, EOS_ID, PAD_ID


def _digits(ids, mask):
    return [int(i) - DIGIT_OFFSET for i in ids[mask]]


def _batch(task, **kw):
    dm = AlgorithmicDataModule(task, train_size=64, val_size=8, test_size=8, batch_size=32, **kw)
    return dm, next(iter(dm.train_dataloader()))


def test_lower_endian_roundtrip():
    assert int_to_lower_endian(1203) == [3, 0, 2, 1]
    assert lower_endian_to_int([3, 0, 2, 1]) == 1203


@pytest.mark.parametrize("task", ["copy", "reverse", "addition"])
def test_batch_format_and_targets(task):
    _, b = _batch(task)
    assert set(b) == {"src", "src_mask", "tgt_in", "tgt_out", "tgt_mask", "src_pos_offset", "tgt_pos_offset"}
    assert b["src"].dtype == torch.long and b["src_mask"].dtype == torch.bool
    assert (b["tgt_in"][:, 0] == BOS_ID).all()
    assert (b["src"][~b["src_mask"]] == PAD_ID).all()
    for i in range(b["src"].shape[0]):
        x = _digits(b["src"][i], b["src_mask"][i])
        n = int(b["tgt_mask"][i].sum())
        y_out = b["tgt_out"][i, :n].tolist()
        assert y_out[-1] == EOS_ID and b["tgt_in"][i, 1:n].tolist() == y_out[:-1]  # teacher forcing shift
        y = [v - DIGIT_OFFSET for v in y_out[:-1]]
        if task == "copy":
            assert y == x
        elif task == "reverse":
            assert y == x[::-1] and len(x) <= 40
        else:
            plus = x.index(PLUS_ID - DIGIT_OFFSET)
            n1, n2 = x[:plus], x[plus + 1 :]
            assert lower_endian_to_int(y) == lower_endian_to_int(n1) + lower_endian_to_int(n2)
            assert int("".join(map(str, y[::-1]))) == lower_endian_to_int(y)  # no leading zero


def test_addition_lengths_follow_t2t():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, _ = generate_example("addition", rng, 40)
        plus = x.index(10)
        assert 1 <= plus <= 20 and len(x) <= 40 and x.count(10) == 1
        assert plus == 1 or x[plus - 1] != 0  # most significant digit non-zero
    x, _ = generate_example("addition", rng, 400, fixed_length=True)
    assert len(x) == 400


def test_offsets_in_range_and_cover_long_positions():
    dm = AlgorithmicDataModule("copy", train_size=2000, batch_size=100, position_offsets="shared")
    offs, maxpos = [], 0
    for b in dm.train_dataloader():
        for key, seq in (("src_pos_offset", "src"), ("tgt_pos_offset", "tgt_in")):
            o = b[key]
            assert o.dtype == torch.long and o.shape == (b[seq].shape[0],)
            assert (o >= 0).all() and (o + b[seq].shape[1] <= dm.max_positions).all()
            maxpos = max(maxpos, int((o + b[seq].shape[1]).max()))
        offs.append(b["src_pos_offset"])
    assert maxpos > 380  # positions up to ~400 are seen while training on length <= 40
    assert torch.cat(offs).unique().numel() > 50
    eval_batch = next(iter(dm.val_dataloader()))
    assert (eval_batch["src_pos_offset"] == 0).all() and (eval_batch["tgt_pos_offset"] == 0).all()


def test_eval_lengths():
    dm = AlgorithmicDataModule("reverse", eval_length="fixed", val_size=4, test_size=4)
    b = next(iter(dm.test_dataloader()))
    assert b["src_mask"].sum(1).tolist() == [400] * 4
    assert b["tgt_in"].shape[1] == 401 <= dm.max_positions


def test_deterministic_and_seed_dependent():
    a = AlgorithmicDataModule("reverse", seed=3)
    b = AlgorithmicDataModule("reverse", seed=3)
    c = AlgorithmicDataModule("reverse", seed=4)
    assert a.train_set[5] == b.train_set[5] and a.test_set[2] == b.test_set[2]
    assert a.train_set[5] != c.train_set[5]
    assert a.val_set[0] != a.test_set[0]  # splits differ


def test_bad_task():
    with pytest.raises(ValueError, match="unknown algorithmic task"):
        AlgorithmicDataModule("sort")


@pytest.mark.parametrize("task", ["copy", "addition"])  # addition: source longer than target
def test_shared_offsets_one_per_example_within_bounds(task):
    dm = AlgorithmicDataModule(task, train_size=2000, batch_size=100, position_offsets="shared")
    assert dm.hparams.position_offsets == "shared"
    maxpos, offs = 0, []
    for b in dm.train_dataloader():
        so, to = b["src_pos_offset"], b["tgt_pos_offset"]
        assert so.dtype == torch.long and so.shape == to.shape == (b["src"].shape[0],)
        assert torch.equal(so, to)  # ONE offset per example, for source and target
        longest = max(b["src"].shape[1], b["tgt_in"].shape[1])
        assert (so >= 0).all() and (so + longest <= dm.max_positions).all()
        maxpos = max(maxpos, int((so + longest).max()))
        offs.append(so)
    assert maxpos > 380  # still covers positions up to ~400
    assert torch.cat(offs).unique().numel() > 50  # and varies across examples


def test_independent_offsets_when_not_shared():
    dm = AlgorithmicDataModule("addition", train_size=500, batch_size=100, position_offsets="independent")
    differ = 0
    for b in dm.train_dataloader():
        for key, seq in (("src_pos_offset", "src"), ("tgt_pos_offset", "tgt_in")):
            assert (b[key] >= 0).all() and (b[key] + b[seq].shape[1] <= dm.max_positions).all()
        differ += int((b["src_pos_offset"] != b["tgt_pos_offset"]).sum())
    assert differ > 400  # independent draws: almost never equal
    eval_batch = next(iter(dm.val_dataloader()))
    assert (eval_batch["src_pos_offset"] == 0).all() and (eval_batch["tgt_pos_offset"] == 0).all()


def test_default_policy_has_no_data_side_offsets():
    """t2t's policy: positions start at 0 in the data (the Transformer's positions are 0..L-1); the UT's random
    start index lives inside its steps (tests/ut/models/test_universal_position_start.py)."""
    dm = AlgorithmicDataModule("copy", train_size=300, batch_size=100)
    assert dm.hparams.position_offsets == "none"
    for b in dm.train_dataloader():
        assert (b["src_pos_offset"] == 0).all() and (b["tgt_pos_offset"] == 0).all()


def test_bad_offset_policy_is_named():
    with pytest.raises(ValueError, match="position_offsets must be one of"):
        AlgorithmicDataModule("copy", position_offsets="random")


def test_shipped_configs_use_t2t_offset_policy():
    import yaml

    for model, start in (("transformer", None), ("ut", "random"), ("ut_act", "random")):
        cfg = yaml.safe_load(open(f"experiments/ut_paper/configs/algorithmic_{model}.yaml"))
        assert cfg["data"]["init_args"]["position_offsets"] == "none"
        assert cfg["model"]["init_args"]["model_config"].get("position_start_index") == start
