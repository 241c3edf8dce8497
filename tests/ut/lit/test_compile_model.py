"""The opt-in CompileModel callback: the model is compiled in place at fit start (dynamo runs on its forward), the
checkpoint keys stay those of the eager model, and training is unchanged (the "eager" backend: dynamo alone, no
inductor compile time in the test suite)."""

from __future__ import annotations

import lightning as L
import torch

from tests.ut.lit.test_modules import FAST_OPT, TINY, tiny_algorithmic, trainer
from ut.lit import Seq2SeqModule
from ut.lit.callbacks import CompileModel

CFG = {**TINY, "n_encoder_layers": 1, "n_decoder_layers": 1}


def fit(callbacks):
    L.seed_everything(0)
    module = Seq2SeqModule("transformer", CFG, FAST_OPT)
    trainer(max_steps=3, limit_val_batches=0, callbacks=callbacks).fit(module, tiny_algorithmic())
    return module


def test_compile_model_compiles_in_place_and_trains_the_same():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = fit([CompileModel(backend="eager")])
    assert compiled.model._compiled_call_impl is not None  # nn.Module.compile, in place
    assert torch._dynamo.utils.counters["stats"]["calls_captured"] > 0  # dynamo traced the forward
    eager = fit([])
    assert eager.model._compiled_call_impl is None
    # no "_orig_mod." prefix: checkpoints stay interchangeable
    assert list(compiled.state_dict()) == list(eager.state_dict()) and len(eager.state_dict()) > 0
    for (name, a), (_, b) in zip(compiled.state_dict().items(), eager.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    torch._dynamo.reset()
