"""experiments/depth/knobs.py and evaluation.py on tiny real models: a test-time depth override really changes the
executed steps (== a model built with that depth), a learned timestep table refuses steps beyond it, every halting
threshold sweep (ACT's included) is monotone in the executed steps, the cap is raised, the FLOPs per token match
benchmarks/flops.py's encoder-decoder count, and the bAbI evaluation's short / long split adds up."""

import pytest
import torch

from benchmarks.flops import EncoderDecoderShape, encoder_decoder_forward_flops, encoder_layer_macs
from experiments.depth import evaluation, knobs
from tests.ut.helpers import padded
from ut.models import build_model

SMALL = dict(d_model=16, n_heads=2, d_ff=16, dropout=0.0)
SRC = [[5, 6, 7, 8, 9, 10, 11], [9, 10, 5], [11, 12, 5, 6, 7]]
TGT = torch.tensor([[1, 7, 8, 9, 10, 5, 6, 7], [1, 5, 5, 6, 6, 7, 8, 9], [1, 12, 11, 10, 9, 8, 7, 6]])


def seq2seq(**kw):
    torch.manual_seed(0)
    return build_model("universal", {**SMALL, "src_vocab_size": 13, "tgt_vocab_size": 13, "n_steps": 2, **kw}).eval()


def varied(model, seed=3, scale=2.0):
    """Large random halting units, so that positions halt after different numbers of steps."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for loop in knobs.halting_loops(model):
            loop.halting.weight.normal_(0.0, scale)
            loop.halting.bias.zero_()
    return model


def layer_calls(model) -> dict[str, int]:
    """Forward-hook counters on the shared layer of each stack (one call per executed step)."""
    counts = {"encoder": 0, "decoder": 0}
    for name in counts:
        getattr(model, name).layer.register_forward_hook(lambda *_, n=name: counts.__setitem__(n, counts[n] + 1))
    return counts


def run(model):
    src, src_mask = padded(SRC)
    with torch.no_grad():
        return model(src, src_mask, TGT)


def test_set_fixed_depth_runs_that_many_steps_and_equals_a_model_built_with_that_depth():
    model = seq2seq()
    counts = layer_calls(model)
    at_2 = run(model).logits
    assert counts == {"encoder": 2, "decoder": 2}
    assert knobs.set_fixed_depth(model, 5) == 2
    counts.update(encoder=0, decoder=0)
    at_5 = run(model).logits
    assert counts == {"encoder": 5, "decoder": 5}
    assert not torch.allclose(at_2, at_5)
    ref = seq2seq(n_steps=5)  # the same shared weights in a model built for 5 steps
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(at_5, run(ref).logits)


def test_set_fixed_depth_on_the_fact_qa_encoder():
    torch.manual_seed(0)
    model = build_model("universal_fact_qa", {**SMALL, "vocab_size": 12, "n_classes": 4, "max_words": 3,
                                              "n_steps": 3}).eval()
    calls = []
    model.encoder.layer.register_forward_hook(lambda *_: calls.append(1))
    facts = torch.randint(1, 12, (2, 4, 3))
    question = torch.randint(1, 12, (2, 3))
    knobs.set_fixed_depth(model, 7)
    with torch.no_grad():
        model(facts, question)
    assert len(calls) == 7


def test_a_learned_timestep_table_refuses_steps_beyond_it():
    model = seq2seq(timestep="learned")  # a table of n_steps = 2 rows
    with pytest.raises(ValueError, match="learned timestep table has 2 rows"):
        knobs.set_fixed_depth(model, 3)
    assert [s.n_steps for s in knobs.universal_stacks(model)] == [2, 2]  # nothing changed
    assert knobs.set_fixed_depth(model, 1) == 2
    halting = seq2seq(timestep="learned", recurrence="stick_breaking", act_max_steps=4)
    with pytest.raises(ValueError, match="learned timestep table has 4 rows"):
        knobs.set_max_steps(halting, 5)
    assert knobs.set_max_steps(halting, 3) == 2


def test_each_knob_refuses_the_other_kind_of_model():
    with pytest.raises(ValueError, match="halts dynamically"):
        knobs.set_fixed_depth(seq2seq(recurrence="act"), 4)
    with pytest.raises(ValueError, match="no halting loop"):
        knobs.set_threshold(seq2seq(), 0.5)
    with pytest.raises(ValueError, match="no halting loop"):
        knobs.set_max_steps(seq2seq(), 4)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        knobs.set_threshold(seq2seq(recurrence="act"), 1.5)
    with pytest.raises(ValueError, match="no UniversalStack"):
        knobs.set_fixed_depth(torch.nn.Linear(2, 2), 3)


def executed(model) -> float:
    out = run(model)
    src, src_mask = padded(SRC)
    enc = out.n_updates["encoder"][src_mask].float().mean()
    dec = out.n_updates["decoder"].float().mean()
    return float((enc + dec) / 2)


@pytest.mark.parametrize("recurrence,thresholds", [
    ("act", (0.3, 0.6, 0.9, 0.99, 0.999)),
    ("pondernet", (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)),
    ("stick_breaking", (0.3, 0.6, 0.9, 0.99, 1.0)),
])
def test_a_threshold_sweep_is_monotone_in_the_executed_steps(recurrence, thresholds):
    model = varied(seq2seq(recurrence=recurrence, act_max_steps=8))
    steps = []
    for thr in thresholds:
        # PonderNet: the decoder only; the encoder's p-weighted memory keeps its 1 - eps (ut/nn/pondernet.py)
        assert knobs.set_threshold(model, thr) == (1 if recurrence == "pondernet" else 2)
        assert knobs.threshold_of(model) == thr
        if recurrence == "pondernet":
            assert model.encoder.halting.threshold == 0.999
        steps.append(executed(model))
    assert steps == sorted(steps), steps
    assert steps[0] < steps[-1], steps  # the threshold really moved the depth


def test_raising_the_cap_lets_a_halting_model_run_deeper():
    model = varied(seq2seq(recurrence="stick_breaking", act_max_steps=3), scale=0.1)
    knobs.set_threshold(model, 1.0)  # halts at the cap (or once the float stick is used up)
    assert executed(model) == pytest.approx(3.0)
    assert knobs.set_max_steps(model, 6) == 2
    assert 5.5 < executed(model) <= 6.0
    assert int(run(model).n_updates["encoder"].max()) == 6


def test_flops_per_token_match_the_benchmark_count_and_scale_with_the_steps():
    d, f, v, s, t = 64, 256, 16, 30, 31
    for steps in (2, 4, 9):
        ref = encoder_decoder_forward_flops(EncoderDecoderShape(d, f, steps, steps, v, 1, s, t)) / t
        assert evaluation.seq2seq_flops_per_token(d, f, v, steps, steps, s, t) == pytest.approx(ref)
    one = evaluation.seq2seq_flops_per_token(d, f, v, 1, 0, s, t) - evaluation.seq2seq_flops_per_token(
        d, f, v, 0, 0, s, t)
    assert evaluation.seq2seq_flops_per_token(d, f, v, 2.5, 0, s, t) == pytest.approx(
        evaluation.seq2seq_flops_per_token(d, f, v, 0, 0, s, t) + 2.5 * one)
    assert evaluation.encoder_flops_per_item(d, f, 3.0, 10) == pytest.approx(2 * 3 * encoder_layer_macs(d, f, 10) / 10)


class FactModule:
    """The part of FactQAModule that babi_eval uses: ``model``, ``forward_batch``, ``eval``."""

    def __init__(self, model):
        self.model = model

    def eval(self):
        self.model.eval()

    def forward_batch(self, batch):
        return self.model(batch["facts"], batch["question"], batch["fact_mask"])


@pytest.mark.parametrize("recurrence", ["fixed", "stick_breaking"])
def test_babi_eval_splits_the_error_at_the_median_story_length(tmp_path, recurrence):
    from tests.ut.lit.conftest import write_babi
    from ut.data.babi import BabiDataModule

    dm = BabiDataModule(data_dir=str(write_babi(tmp_path / "babi", n_stories=6)), tasks=1, eval_batch_size=5)
    dm.setup()
    torch.manual_seed(0)
    model = build_model("universal_fact_qa", {**SMALL, "vocab_size": dm.vocab_size, "n_classes": dm.num_classes,
                                              "max_words": dm.max_words, "n_steps": 3, "recurrence": recurrence,
                                              "act_max_steps": 5})
    m = evaluation.babi_eval(FactModule(model), dm)
    assert m["n"] == len(dm.test_set) and m["n_short"] + m["n_long"] == m["n"] and m["n_long"] > 0
    overall = (m["error_short"] * m["n_short"] + m["error_long"] * m["n_long"]) / m["n"]
    assert m["error"] == pytest.approx(overall)
    if recurrence == "fixed":
        assert m["steps_encoder"] == 3.0
    else:
        assert 1.0 <= m["steps_encoder"] <= 5.0
    knobs.set_fixed_depth(model, 6) if recurrence == "fixed" else knobs.set_threshold(model, 1.0)
    deeper = evaluation.babi_eval(FactModule(model), dm)
    assert deeper["steps_encoder"] == (6.0 if recurrence == "fixed" else 5.0)


@pytest.mark.parametrize("jobs", [1, 2])
def test_pool_map_returns_every_result(jobs):
    assert sorted(evaluation.pool_map(abs, [-3, -1, -2], jobs)) == [1, 2, 3]
