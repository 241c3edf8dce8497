"""The data_prep profile's stage clock: exclusive times, every call counted, stages restored after."""

import time

from benchmarks.data_prep_profile import RANKER_STAGE, StageClock, instrument, load_package, restore


def _burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_stage_time_is_not_counted_in_its_parent():
    clock = StageClock()
    inner = clock.wrap(lambda: _burn(0.05), "inner")
    outer = clock.wrap(lambda: (_burn(0.05), inner(), inner()), "outer")
    outer()
    assert clock.calls == {"outer": 1, "inner": 2}
    assert 0.09 <= clock.seconds["inner"] < 0.2
    assert 0.04 <= clock.seconds["outer"] < 0.09  # its own 0.05 s only, not the 0.1 s of its children


def test_iterator_stage_times_each_next_and_keeps_the_items():
    clock = StageClock()

    def items():
        for i in range(3):
            _burn(0.02)
            yield i

    assert list(clock.wrap_iterator(items, "read")()) == [0, 1, 2]
    assert clock.calls["read"] == 4  # three items and the final StopIteration
    assert clock.seconds["read"] >= 0.05


def test_instrument_wraps_the_build_stages_and_restore_undoes_it():
    modules = load_package("data_prep")
    before = (modules["build"].example_row, modules["wikitext"].parse_wikitext, dict(modules["rankers"].RANKERS))
    clock = StageClock()
    undo = instrument(modules, clock)
    assert modules["build"].example_row is not before[0]
    paragraphs = ["the cat sat on the mat .", "a dog ran ."]
    assert modules["rankers"].RANKERS["tfidf"]("cat", paragraphs, "") == before[2]["tfidf"]("cat", paragraphs, "")
    assert clock.calls[RANKER_STAGE.format("tfidf")] == 1
    restore(undo)
    after = (modules["build"].example_row, modules["wikitext"].parse_wikitext, dict(modules["rankers"].RANKERS))
    assert after == before
