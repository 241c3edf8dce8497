"""WikiSum evaluation (Liu et al. 2018 §5): log-perplexity on the target, beam decoding, ROUGE, diversity."""

from __future__ import annotations

import math

import pytest
import torch

from tests.experiments.wikisum_fixtures import build_tiny_wikisum
from ut.data.wikisum import WikiSumDataModule
from ut.eval.summarization import EXAMPLE_COLUMNS, evaluate_summarization, log_examples_table, target_log_perplexity
from ut.models import build_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_wikisum(tmp_path_factory.mktemp("wikisum_eval"))


def _model(dm):
    ids = dm.special_ids()
    if dm.format == "lm":
        return build_model("decoder_only", dict(vocab_size=dm.vocab_size, d_model=32, n_heads=2, d_ff=64, n_layers=2,
                                                dropout=0.0, **ids))
    ids.pop("sep_id")
    return build_model("transformer", dict(src_vocab_size=dm.vocab_size, tgt_vocab_size=dm.vocab_size, d_model=32,
                                           n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0,
                                           max_len=dm.max_positions, **ids))


@pytest.mark.parametrize("fmt", ["seq2seq", "lm"])
def test_log_ppl_matches_manual_nll(tiny, fmt):
    dm = WikiSumDataModule(str(tiny), format=fmt, input_length=32, target_length=10, eval_batch_size=2)
    model = _model(dm).eval()
    got = target_log_perplexity(model, dm, "test")
    total, count = 0.0, 0
    data = dm.split_data("test")
    for x, y in zip(data.inputs, data.targets):  # one example at a time, no padding
        with torch.no_grad():
            if fmt == "lm":
                ids = torch.tensor([x + [dm.sep_id] + y + [dm.eos_id]])
                logp = model(ids).logits.log_softmax(-1)[0]
                start = len(x)  # the separator predicts y[0]
                for i, tok in enumerate(y + [dm.eos_id]):
                    total -= float(logp[start + i, tok])
            else:
                src, tgt_in = torch.tensor([x]), torch.tensor([[dm.bos_id] + y])
                logp = model(src, None, tgt_in).logits.log_softmax(-1)[0]
                for i, tok in enumerate(y + [dm.eos_id]):
                    total -= float(logp[i, tok])
        count += len(y) + 1
    assert got["target_tokens"] == count
    assert got["log_ppl"] == pytest.approx(total / count, rel=1e-4)
    assert got["ppl"] == pytest.approx(math.exp(total / count), rel=1e-3)


@pytest.mark.parametrize("fmt", ["seq2seq", "lm"])
def test_evaluate_decodes_every_example(tiny, fmt):
    dm = WikiSumDataModule(str(tiny), format=fmt, input_length=32, target_length=8, eval_batch_size=2)
    res = evaluate_summarization(_model(dm), dm, "test", beam_size=2, progress=False)
    n = len(dm.split_data("test"))
    assert res.metrics["decoded_examples"] == n and len(res.examples) == n
    for key in ("log_ppl", "rouge1", "rouge2", "rougeL", "rougeLsum", "distinct_outputs", "repeated_sentences"):
        assert key in res.metrics
    assert 0 <= res.metrics["rougeL"] <= 100 and 0 < res.metrics["distinct_outputs"] <= 1
    assert [e["reference"] for e in res.examples] == dm.references("test")
    assert set(res.examples[0]) == set(EXAMPLE_COLUMNS)


def test_max_examples_and_wandb_table(tiny):
    dm = WikiSumDataModule(str(tiny), input_length=32, target_length=6)
    res = evaluate_summarization(_model(dm), dm, "validation", beam_size=1, max_examples=2, progress=False)
    assert len(res.examples) == 2

    class FakeWandb:
        def log_table(self, key, columns, data):
            self.logged = (key, columns, data)

    fake = FakeWandb()
    assert log_examples_table(fake, res.examples)
    assert fake.logged[1] == list(EXAMPLE_COLUMNS) and len(fake.logged[2]) == 2
    assert not log_examples_table(object(), res.examples)
