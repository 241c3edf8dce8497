"""A trained model you can call: ``ut.load(checkpoint_or_folder)`` -> :class:`UTModel` with ``generate`` /
``classify`` on raw text or on batches, and ``save_pretrained`` / ``from_pretrained`` like any Hugging Face model.

    import ut
    model = ut.load("outputs/wikisum/t-d-seed0")                 # a run folder, a .ckpt, or a save_pretrained folder
    model.generate(["The Universal Transformer is ..."], beam_size=4, alpha=0.6, max_len=200, no_repeat_ngram_size=3)
    model.generate(texts, temperature=0.8, top_p=0.9, seed=0)    # sampling (language models)
    model.save_pretrained("exported/t-d")                        # model.safetensors + config.json + tokenizer.json
    ut.UTModel.from_pretrained("exported/t-d")

The export is huggingface_hub's ``PyTorchModelHubMixin``: ``config.json`` holds ``model_name`` (a key of
:data:`ut.models.MODEL_REGISTRY`), ``model_config`` (the model's typed config as a dict) and ``text_interface`` (how
raw text becomes an input, :class:`ut.data.predict.TextInterface`, without its tokenizer), ``model.safetensors`` the
weights (tied weights stored once), ``tokenizer.json`` the task's self-contained tokenizer (loadable by
``tokenizers.Tokenizer.from_file`` and ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)``).
``from_pretrained`` on a local folder never touches the network; a Hub repo id downloads as
``huggingface_hub.hf_hub_download`` does (and fails with ``HF_HUB_OFFLINE=1``). Loading is strict: a missing or
unexpected weight is an error.

Text generation uses the searches of :mod:`ut.decoding` (greedy, beam search with the GNMT length penalty,
sampling), so ``generate`` returns exactly what those functions return for the same settings.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import Tensor

from ut.data.predict import TextInterface
from ut.decoding import Generated, GenerationConfig, generate
from ut.models import build_model
from ut.models.outputs import ModelOutput

TOKENIZER_FILE = "tokenizer.json"
TEXT_INTERFACE_KEY = "text_interface"  # = ut.lit.base.TEXT_INTERFACE_KEY (the checkpoint key)
CLASSIFIERS = ("transformer_classifier", "universal_classifier", "transformer_fact_qa", "universal_fact_qa")
FACT_QA = ("transformer_fact_qa", "universal_fact_qa")  # bAbI over fact vectors: facts / question batches
LANGUAGE_MODELS = ("decoder_only", "universal_decoder_only")


class UTModel(torch.nn.Module, PyTorchModelHubMixin, library_name="universal-transformers",
              tags=["universal-transformer", "transformer"]):
    """One model of :data:`ut.models.MODEL_REGISTRY` with its text interface (module docstring).

    Args:
        model_name: registry name ("transformer", "universal", "decoder_only", ...).
        model_config: the model's config as a dict (every size given: a trained model's filled config).
        text_interface: :meth:`ut.data.predict.TextInterface.to_dict` without ``tokenizer_json`` (the tokenizer is
            ``tokenizer.json`` beside the weights); None: batches only.
    """

    def __init__(self, model_name: str, model_config: dict[str, Any], text_interface: dict[str, Any] | None = None):
        super().__init__()
        self.model_name = model_name
        self.model = build_model(model_name, dict(model_config))
        self._text_fields = dict(text_interface) if text_interface else None
        self.text: TextInterface | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def with_text(cls, model_name: str, model_config: dict[str, Any], text: TextInterface | None) -> UTModel:
        fields = None
        if text is not None:
            fields = {k: v for k, v in text.to_dict().items() if k != "tokenizer_json"}
        model = cls(model_name, model_config, fields)
        model.text = text
        return model

    def _attach_tokenizer(self, tokenizer_json: str | None) -> None:
        if self._text_fields is None:
            return
        if tokenizer_json is None:
            raise FileNotFoundError(f"this model's config has a text_interface but no {TOKENIZER_FILE} was found")
        self.text = TextInterface.from_dict({**self._text_fields, "tokenizer_json": tokenizer_json})

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        if self.text is not None:
            self.text.tokenizer.save(str(Path(save_directory) / TOKENIZER_FILE))

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs):
        model = super()._from_pretrained(model_id=model_id, revision=revision, cache_dir=cache_dir,
                                         force_download=force_download, local_files_only=local_files_only,
                                         token=token, map_location=map_location, strict=strict, **model_kwargs)
        if model._text_fields is not None:
            if os.path.isdir(model_id):
                path = Path(model_id) / TOKENIZER_FILE
                tokenizer_path = str(path) if path.is_file() else None
            else:
                tokenizer_path = hf_hub_download(repo_id=model_id, filename=TOKENIZER_FILE, revision=revision,
                                                 cache_dir=cache_dir, force_download=force_download, token=token,
                                                 local_files_only=local_files_only)
            model._attach_tokenizer(Path(tokenizer_path).read_text(encoding="utf-8") if tokenizer_path else None)
        return model

    # ------------------------------------------------------------------ use
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def cfg(self):
        return self.model.cfg

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        """Teacher-forced outputs of a batch in the model's format (CONTRIBUTING.md)."""
        if self.model_name in LANGUAGE_MODELS:
            return self.model(batch["input_ids"], batch.get("attention_mask"))
        if self.model_name in FACT_QA:
            return self.model(batch["facts"], batch["question"], batch["fact_mask"])
        if self.model_name in CLASSIFIERS:
            return self.model(batch["src"], batch.get("src_mask"))
        return self.model(batch["src"], batch.get("src_mask"), batch["tgt_in"], batch.get("tgt_mask"))

    def encode(self, texts: list[str]) -> dict[str, Tensor]:
        """The model-input batch of raw ``texts`` (its tokenizer and input format)."""
        if self.text is None:
            raise ValueError(f"this {self.model_name} model has no tokenizer (it was saved without a text interface): "
                             "pass a batch dict of token ids instead of text")
        batch = self.text.collate([(i, self.text.encode(t)) for i, t in enumerate(texts)])
        return {k: v.to(self.device) for k, v in batch.items() if k != "index"}

    @torch.no_grad()
    def generate(self, inputs: str | list[str] | dict[str, Tensor], beam_size: int = 1, alpha: float = 0.6,
                 max_len: int = 100, no_repeat_ngram_size: int = 0, min_len: int = 0,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> list[str] | Generated:
        """Decode ``inputs``: raw text (a string or a list: returns the decoded strings) or a batch dict of ids
        (returns :class:`ut.decoding.Generated`). Greedy by default; ``beam_size > 1`` beam search (GNMT length
        penalty ``alpha``); any of ``temperature`` / ``top_k`` / ``top_p`` samples (seeded by ``seed``)."""
        if self.model_name in CLASSIFIERS:
            raise TypeError(f"{self.model_name} is a classifier: use classify()")
        sample = temperature is not None or top_k is not None or top_p is not None
        config = GenerationConfig(beam_size=beam_size, alpha=alpha, max_len=max_len, min_len=min_len,
                                  no_repeat_ngram_size=no_repeat_ngram_size, sample=sample,
                                  temperature=1.0 if temperature is None else temperature, top_k=top_k or 0,
                                  top_p=1.0 if top_p is None else top_p, seed=seed)
        self.eval()
        if isinstance(inputs, dict):
            batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
            return generate(self.model, batch, config, eos_id=self.cfg.eos_id, pad_id=self.cfg.pad_id)
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        out = generate(self.model, self.encode(texts), config, eos_id=self.cfg.eos_id, pad_id=self.cfg.pad_id)
        decoded = [self.text.decode(seq[:n]) for seq, n in zip(out.sequences.tolist(), out.lengths.tolist())]
        return decoded[0] if isinstance(inputs, str) else decoded

    @torch.no_grad()
    def classify(self, inputs: str | list[str] | dict[str, Tensor]) -> list[str] | str | Tensor:
        """Class names of raw text (bAbI answers), or class ids Long[B] of a batch dict."""
        if self.model_name not in CLASSIFIERS:
            raise TypeError(f"{self.model_name} generates: use generate()")
        self.eval()
        batch = inputs if isinstance(inputs, dict) else self.encode([inputs] if isinstance(inputs, str) else inputs)
        ids = self.forward({k: v.to(self.device) for k, v in batch.items()}).logits.argmax(-1)
        if isinstance(inputs, dict):
            return ids
        names = [self.text.labels[i] for i in ids.tolist()]
        return names[0] if isinstance(inputs, str) else names


# ---------------------------------------------------------------------- loading
def _plain_config(config) -> dict[str, Any]:
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(vars(config))


def _text_from_run_config(config_yaml: Path) -> TextInterface | None:
    """The text interface of the DataModule named by a run's ``config.yaml`` (checkpoints written without one)."""
    import yaml

    data = (yaml.safe_load(config_yaml.read_text()) or {}).get("data") or {}
    if "class_path" not in data:
        return None
    module, _, name = data["class_path"].rpartition(".")
    dm = getattr(importlib.import_module(module), name)(**(data.get("init_args") or {}))
    from ut.data.predict import text_interface

    return text_interface(dm)


def from_checkpoint(path: str | Path, map_location: str = "cpu") -> UTModel:
    """A :class:`UTModel` from a Lightning checkpoint of :mod:`ut.lit` (a trusted file: it is unpickled)."""
    path = Path(path)
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    hp = ckpt.get("hyper_parameters") or {}
    if "model_name" not in hp or "model_config" not in hp:
        raise ValueError(f"{path}: not a checkpoint of ut.lit (no model_name / model_config in its hyper_parameters)")
    text = None
    if TEXT_INTERFACE_KEY in ckpt:
        text = TextInterface.from_dict(ckpt[TEXT_INTERFACE_KEY])
    else:
        run_config = path.parent.parent / "config.yaml"
        if run_config.is_file():
            text = _text_from_run_config(run_config)
    model = UTModel.with_text(hp["model_name"], _plain_config(hp["model_config"]), text)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.model.load_state_dict(state, strict=True)
    return model.eval()


def load(source: str | Path, map_location: str = "cpu") -> UTModel:
    """Load a trained model: a ``.ckpt`` file, a run folder (its ``checkpoints/last.ckpt``), a ``save_pretrained``
    folder, or a Hugging Face Hub repo id."""
    path = Path(source)
    if path.is_file():
        return from_checkpoint(path, map_location)
    if path.is_dir():
        if (path / "config.json").is_file():
            return UTModel.from_pretrained(path, map_location=map_location)
        last = path / "checkpoints" / "last.ckpt"
        if last.is_file():
            return from_checkpoint(last, map_location)
        raise FileNotFoundError(f"{path}: neither a save_pretrained folder (config.json) nor a run folder "
                                "(checkpoints/last.ckpt)")
    if str(source).count("/") == 1 and not str(source).startswith((".", "/")):
        return UTModel.from_pretrained(str(source), map_location=map_location)
    raise FileNotFoundError(f"no checkpoint, run folder or save_pretrained folder at {source}")
