import logging

import pytest

from ut.data.babi import (
    BabiDataModule,
    BabiFactCollator,
    babi_path,
    flatten,
    load_babi,
    parse_babi,
    resolve_babi_file,
    split_by_story,
    supporting_cut,
)
from ut.data.vocab import PAD_ID, SEP_ID

FIXTURE = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 John picked up the apple.
5 John grabbed the football.
6 What is John carrying? \tapple,football\t4 5
1 Sandra went to the garden.
2 Where is Sandra? \tgarden\t1
"""


def _write_layout(root, subset="en", tasks=(1, 8), splits=("train", "test"), n_copies=5):
    for t in tasks:
        for split in splits:
            p = babi_path(root, subset, t, split)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(FIXTURE * n_copies)


def test_parse_stories_supporting_facts_and_multiword_answers():
    ex = parse_babi(FIXTURE.splitlines(True), task=8)
    assert len(ex) == 3
    assert ex[0].story == [
        ["mary", "moved", "to", "the", "bathroom", "."],
        ["john", "went", "to", "the", "hallway", "."],
    ]
    assert ex[0].question == ["where", "is", "mary", "?"] and ex[0].answer == "bathroom"
    assert ex[0].supporting == [1] and ex[0].supporting_idx == [0]
    # the question line is not part of the later story; line ids keep the file's numbering
    assert ex[1].line_ids == [1, 2, 4, 5] and ex[1].supporting_idx == [2, 3]
    assert ex[1].answer == "apple,football"
    assert ex[2].story == [["sandra", "went", "to", "the", "garden", "."]] and ex[2].story_id == 1
    assert {e.task for e in ex} == {8}


def test_flatten_sep_between_sentences():
    e = parse_babi(FIXTURE.splitlines(True))[0]
    toks = flatten(e)
    assert toks == [*e.story[0], "<sep>", *e.story[1], "<sep>", *e.question]
    assert flatten(e, only_supporting=True) == [*e.story[0], "<sep>", *e.question]
    assert flatten(e, max_sentences=1) == [*e.story[1], "<sep>", *e.question]


def test_split_by_story_is_disjoint_and_ten_percent():
    ex = parse_babi((FIXTURE * 10).splitlines(True), task=1)  # 20 stories
    train, val = split_by_story(ex, 0.1, seed=0)
    assert len({e.story_id for e in val}) == 2
    assert not {e.story_id for e in train} & {e.story_id for e in val}
    assert len(train) + len(val) == len(ex)


def test_datamodule_joint_batches(tmp_path):
    _write_layout(tmp_path)
    dm = BabiDataModule(data_dir=str(tmp_path), tasks=[1, 8], batch_size=4, layout="flat")
    dm.setup()
    assert dm.fallbacks == {}
    assert set(dm.answers) == {"bathroom", "apple,football", "garden"} and dm.num_classes == 3
    b = next(iter(dm.train_dataloader()))
    assert set(b) == {"src", "src_mask", "label", "task"}
    assert b["src"].shape[0] == 4 and b["label"].shape == (4,) and set(b["task"].tolist()) <= {1, 8}
    assert (b["src"][~b["src_mask"]] == PAD_ID).all() and (b["src"] == SEP_ID).any()
    t = next(iter(dm.test_dataloader()))
    assert sorted(dm.answers, key=dm.answers.get)[t["label"][1]] == "apple,football"


def test_missing_file_error_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="qa2_two-supporting-facts_train.txt"):
        BabiDataModule(data_dir=str(tmp_path), tasks=2).setup()


def test_10k_fallback_recorded(tmp_path, caplog):
    _write_layout(tmp_path, "en", tasks=(3,), splits=("train",))
    _write_layout(tmp_path, "en-10k", tasks=(3,), splits=("test",))
    with caplog.at_level(logging.WARNING):
        dm = BabiDataModule(data_dir=str(tmp_path), subset="en-10k", tasks=3)
        dm.setup()
    assert 3 in dm.fallbacks and "missing" in dm.fallbacks[3] and "fallback" in caplog.text
    with pytest.raises(FileNotFoundError):
        resolve_babi_file(tmp_path, "en-10k", 3, "train", allow_fallback=False)


def test_real_babi_1k_task1(shared_data):
    root = shared_data / "babi" / "tasks_1-20_v1-2"
    train, fb = load_babi(root, "en", [1], "train")
    test, _ = load_babi(root, "en", [1], "test")
    assert len(train) == 1000 and len(test) == 1000 and fb == {}
    assert train[0].answer == "bathroom" and train[0].supporting == [1]
    assert all(len(e.supporting) == 1 for e in train)


def test_real_babi_10k_qa3_fallback(shared_data):
    root = shared_data / "babi" / "tasks_1-20_v1-2"
    assert not (root / "en-10k" / "qa3_three-supporting-facts_train.txt").exists()
    train, fb = load_babi(root, "en-10k", [3], "train")
    assert set(fb) == {3} and len(train) == 1000  # the 1k file stands in
    assert all(len(e.supporting) == 3 for e in train)
    other, fb2 = load_babi(root, "en-10k", [1], "train")
    assert fb2 == {} and len(other) == 10_000


def test_fact_layout_batch_rows_masks_and_order(tmp_path):
    _write_layout(tmp_path, tasks=(8,), n_copies=1)
    dm = BabiDataModule(data_dir=str(tmp_path), tasks=8, val_fraction=0.0, batch_size=3)
    dm.setup()
    b = dm._collate(dm.test_set)  # the 3 questions of FIXTURE: 2, 4 and 1 story sentences
    assert set(b) == {"facts", "fact_mask", "question", "src_mask", "label", "task"}
    assert b["facts"].shape == (3, 4, 6) and b["question"].shape == (3, 5)
    assert b["fact_mask"].tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert b["src_mask"].tolist() == [[True, *m] for m in b["fact_mask"].tolist()]
    assert (b["facts"][~b["fact_mask"]] == PAD_ID).all()
    v, e = dm.vocab, dm.test_set[1]
    decode = [v.decode(row.tolist()) for row in b["facts"][1]]
    assert decode == [e.story[3], e.story[2], e.story[1], e.story[0]]  # newest first (default)
    assert v.decode(b["question"][1].tolist()) == e.question
    old = BabiFactCollator(v, dm.answers, None, "oldest_first")([e])
    assert [v.decode(r.tolist()) for r in old["facts"][0]] == e.story
    win = BabiFactCollator(v, dm.answers, 2, "oldest_first")([e])
    assert [v.decode(r.tolist()) for r in win["facts"][0]] == e.story[2:]
    assert dm.max_words == 6 and dm.cut_supporting["test"] == (0, 3) and dm.split_note is None


def test_story_window_cuts_are_counted_and_named(tmp_path):
    e = parse_babi(FIXTURE.splitlines(True))[1]  # supporting facts: story sentences 2 and 3 of 4
    assert not supporting_cut(e, None) and not supporting_cut(e, 2) and supporting_cut(e, 1)
    _write_layout(tmp_path, tasks=(8,), n_copies=2)
    dm = BabiDataModule(data_dir=str(tmp_path), tasks=8, val_fraction=0.0, max_sentences=1)
    dm.setup()
    assert dm.cut_supporting["test"] == (4, 6)  # per copy: the first two questions (facts 1 back, 2-3 back)
    assert "cuts a supporting fact" in dm.split_note and "test 4/6" in dm.split_note


def test_bad_layout_options_fail_clearly():
    with pytest.raises(ValueError, match="layout"):
        BabiDataModule(layout="rows")
    with pytest.raises(ValueError, match="fact_order"):
        BabiDataModule(fact_order="random")
    with pytest.raises(ValueError, match="only_supporting"):
        BabiDataModule(only_supporting=True)
    with pytest.raises(ValueError, match="max_sentences"):
        BabiDataModule(max_sentences=0)


def test_real_babi_window_50_cuts_no_supporting_fact(shared_data):
    root = shared_data / "babi" / "tasks_1-20_v1-2"
    for task in (2, 3, 7, 8, 18):
        for split in ("train", "test"):
            ex, _ = load_babi(root, "en", [task], split)
            assert not any(supporting_cut(e, 50) for e in ex), (task, split)
    ex, _ = load_babi(root, "en", [3], "train")
    share = sum(supporting_cut(e, 20) for e in ex) / len(ex)
    assert 0.02 < share < 0.05  # the old window of 20 sentences cut ~3% of task 3's questions
