"""Opt-in ``torch.compile`` of the model a LightningModule trains.

    trainer:
      callbacks:
        - class_path: ut.lit.callbacks.CompileModel
          init_args: {mode: null, dynamic: null}

At ``on_fit_start`` (after ``configure_model`` built the model) the module's ``model`` is compiled in place with
``nn.Module.compile``. Its ``state_dict`` keys stay the same (no ``_orig_mod.`` prefix), so a checkpoint of a compiled
run loads into an eager model and the other way round. Only the model's ``forward`` (training and validation) is
compiled; cached decoding (``start_decoding`` / ``decode_step``) stays eager.

It is opt-in, not a default, because it does not pay on the CPUs this repo was measured on: a compiled training
step ran at 0.64x eager at d 64 and 0.80x at d 256 on an Intel AMX CPU, 0.69x and 0.81x on an AMD EPYC with
AVX-512 bf16 (``benchmarks/results/<machine kind>/suite.md``, the ``compile`` rows of ``python -m
benchmarks.run_all --only compile``). The first step pays
the compile time (tens of seconds on CPU) and every new input shape may recompile; ``dynamic: true`` asks for
shape-generic graphs.
"""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger(__name__)


class CompileModel(L.Callback):
    """``pl_module.model.compile(mode=..., dynamic=..., backend=...)`` at the start of ``fit``.

    Args:
        mode: ``torch.compile`` mode (None: its default; "reduce-overhead", "max-autotune", ...).
        dynamic: None lets torch decide, True compiles shape-generic graphs, False specialises on every shape.
        backend: the compile backend ("inductor", torch's default; "eager" runs dynamo alone, for checks).
    """

    def __init__(self, mode: str | None = None, dynamic: bool | None = None, backend: str = "inductor"):
        self.mode, self.dynamic, self.backend = mode, dynamic, backend

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = getattr(pl_module, "model", None)
        if model is None:
            raise RuntimeError(f"CompileModel: {type(pl_module).__name__} has no built `model` to compile")
        model.compile(mode=self.mode, dynamic=self.dynamic, backend=self.backend)
        log.info("torch.compile: %s (mode=%s, dynamic=%s, backend=%s)", type(model).__name__, self.mode,
                 self.dynamic, self.backend)
