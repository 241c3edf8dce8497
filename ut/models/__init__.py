"""One model per file, each with its typed config. :func:`build_model` builds any of them by name.

| name                      | class (file)                                                   |
|---------------------------|----------------------------------------------------------------|
| transformer               | TransformerEncoderDecoder (transformer.py)                     |
| decoder_only              | DecoderOnlyLM (decoder_only.py): T-D, and T-DMCA by layer_pattern |
| universal                 | UniversalTransformerEncoderDecoder (universal.py)             |
| transformer_classifier    | TransformerEncoderClassifier (encoder_classifier.py)           |
| universal_classifier      | UniversalTransformerClassifier (universal.py)                 |
| universal_decoder_only    | UniversalDecoderOnlyLM (universal_decoder_only.py): UT-DMCA   |
| transformer_fact_qa       | TransformerFactQA (fact_qa.py): bAbI over fact vectors         |
| universal_fact_qa         | UniversalFactQA (fact_qa.py): bAbI over fact vectors, UT / ACT |
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, model class, config class); imported lazily so that one model's file stays independent
MODEL_REGISTRY: dict[str, tuple[str, str, str]] = {
    "transformer": ("ut.models.transformer", "TransformerEncoderDecoder", "TransformerConfig"),
    "decoder_only": ("ut.models.decoder_only", "DecoderOnlyLM", "DecoderOnlyConfig"),
    "universal": ("ut.models.universal", "UniversalTransformerEncoderDecoder", "UniversalTransformerConfig"),
    "transformer_classifier": ("ut.models.encoder_classifier", "TransformerEncoderClassifier",
                               "TransformerClassifierConfig"),
    "universal_classifier": ("ut.models.universal", "UniversalTransformerClassifier",
                             "UniversalClassifierConfig"),
    "universal_decoder_only": ("ut.models.universal_decoder_only", "UniversalDecoderOnlyLM",
                               "UniversalDecoderOnlyConfig"),
    "transformer_fact_qa": ("ut.models.fact_qa", "TransformerFactQA", "TransformerFactQAConfig"),
    "universal_fact_qa": ("ut.models.fact_qa", "UniversalFactQA", "UniversalFactQAConfig"),
}


def model_classes(name: str):
    """(model class, config class) for a registered model name."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    module, model_cls, config_cls = MODEL_REGISTRY[name]
    mod = importlib.import_module(module)
    return getattr(mod, model_cls), getattr(mod, config_cls)


def build_model(name: str, config: dict[str, Any]):
    """Build model ``name`` from a plain dict (unknown keys are an error)."""
    model_cls, config_cls = model_classes(name)
    return model_cls(config_cls.from_dict(config))
