"""Every ``Literal``-typed config field is validated once, by ``ConfigBase`` (ut/models/config.py): found here by
introspection over every config class (the registered models' and their bases, OptimizerConfig, RunConfig), a
wrong value fails naming the field, the value and the allowed values, and every allowed value passes -- and builds
the model, so that the choices a config allows are the ones its layers implement."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from ut.lit.run_config import RunConfig
from ut.models import MODEL_REGISTRY, build_model, model_classes
from ut.models.config import ConfigBase, MoEPriority, Norm, Pooling, PositionKind, Transition
from ut.models.encoder_classifier import POOLING
from ut.nn.act import COMBINE_MODES
from ut.nn.layers import NormPlacement
from ut.nn.moe import PRIORITIES
from ut.optim import OptimizerConfig


def all_config_classes() -> list[type]:
    for name in MODEL_REGISTRY:  # import every model module, so that every config class is defined
        model_classes(name)
    found, todo = [], list(ConfigBase.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("ut.") and cls not in found:
            found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: c.__qualname__)


CONFIGS = all_config_classes()
CHOICE_FIELDS = [(cls, name, allowed) for cls in CONFIGS for name, allowed in cls.choices().items()]
ids = [f"{cls.__name__}.{name}" for cls, name, _ in CHOICE_FIELDS]


def test_every_config_is_found_and_declares_its_choices_as_literals():
    names = {c.__name__ for c in CONFIGS}
    assert {model_classes(n)[1].__name__ for n in MODEL_REGISTRY} | {"OptimizerConfig", "RunConfig",
                                                                     "UniversalCommonConfig"} <= names
    assert len(CHOICE_FIELDS) >= 45  # 8 model configs with 4-9 choices each, plus schedule and logger
    for cls in CONFIGS:  # no field left a plain str whose comment lists its choices
        hints = typing.get_type_hints(cls)
        plain = [f.name for f in dataclasses.fields(cls) if hints[f.name] is str and f.name in
                 {"norm", "transition", "activation", "position", "timestep", "recurrence", "act_combine",
                  "position_start_index", "pooling", "moe_priority", "moe_balance", "schedule", "logger"}]
        assert not plain, f"{cls.__name__}: {plain} should be typed Literal[...]"


@pytest.mark.parametrize("cls,name,allowed", CHOICE_FIELDS, ids=ids)
def test_a_wrong_choice_names_the_field_the_value_and_the_allowed_values(cls, name, allowed):
    bad = "no_such_" + name
    expected = f"{cls.__name__}: {name}={bad!r} is not one of {allowed}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        cls(**{name: bad})
    with pytest.raises(ValueError, match=re.escape(expected)):
        cls.check_choices({name: bad})
    with pytest.raises(ValueError, match=re.escape(f"{name}={allowed[0].upper()!r} is not one of")):
        cls(**{name: allowed[0].upper()})  # choices are exact strings


@pytest.mark.parametrize("cls,name,allowed", CHOICE_FIELDS, ids=ids)
def test_every_allowed_choice_passes(cls, name, allowed):
    for value in allowed:
        config = cls(**{name: value})
        assert getattr(config, name) == value
        cls.check_choices({name: value})


def tiny(config_cls) -> dict:
    """Small sizes for every registered config (so that each choice also builds its model quickly)."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    sizes = {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1, "n_encoder_layers": 1, "n_decoder_layers": 1,
             "n_steps": 2, "n_experts": 2, "max_len": 64, "layer_pattern": "full/locm-moe", "block_size": 4}
    return {k: v for k, v in sizes.items() if k in fields}


MODEL_CHOICES = [(n, name, value) for n in MODEL_REGISTRY for name, allowed in model_classes(n)[1].choices().items()
                 for value in allowed]


@pytest.mark.parametrize("model_name,name,value", MODEL_CHOICES, ids=[f"{m}.{k}={v}" for m, k, v in MODEL_CHOICES])
def test_every_allowed_choice_builds_its_model(model_name, name, value):
    config_cls = model_classes(model_name)[1]
    model = build_model(model_name, {**tiny(config_cls), name: value})
    assert getattr(model.cfg, name) == value
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_shared_vocabularies_match_their_implementations():
    assert typing.get_args(Norm) == typing.get_args(NormPlacement)
    assert typing.get_args(Pooling) == POOLING
    assert typing.get_args(MoEPriority) == PRIORITIES
    assert model_classes("universal")[1].choices()["act_combine"] == COMBINE_MODES
    assert set(typing.get_args(Transition)) == {"ffn", "sepconv"}
    assert set(typing.get_args(PositionKind)) == {"sinusoidal", "learned"}
    assert OptimizerConfig.choices() == {"schedule": ("inverse_sqrt", "constant")}
    assert RunConfig.choices() == {"logger": ("wandb", "csv", "tensorboard", "none")}


def test_optional_literals_allow_none_and_other_unions_are_not_choices():
    @dataclasses.dataclass
    class Probe(ConfigBase):
        kind: typing.Literal["a", "b"] | None = None
        count: typing.Literal["all"] | int = 3
        name: str = "x"

    assert Probe.choices() == {"kind": ("a", "b", None)}
    assert [Probe(kind=None).kind, Probe(kind="b").kind, Probe(count=7).count] == [None, "b", 7]
    with pytest.raises(ValueError, match=re.escape("Probe: kind='c' is not one of ('a', 'b', None)")):
        Probe(kind="c")


def test_a_subclass_check_sees_valid_choices_first():
    """The base check runs before a subclass's cross-field checks (UT: random start needs sinusoidal positions)."""
    config_cls = model_classes("universal")[1]
    with pytest.raises(ValueError, match=re.escape("position='rope' is not one of ('sinusoidal', 'learned')")):
        config_cls(position="rope", position_start_index="random")
    with pytest.raises(ValueError, match="needs position='sinusoidal'"):
        config_cls(position="learned", position_start_index="random")


def test_ut_dmca_rejects_act_skip_halted_which_it_cannot_apply():
    config_cls = model_classes("universal_decoder_only")[1]
    assert config_cls().act_skip_halted is None
    with pytest.raises(ValueError, match="UniversalDecoderOnlyConfig: act_skip_halted=True cannot apply to UT-DMCA"):
        config_cls(act_skip_halted=True, recurrence="act")
    assert model_classes("universal")[1]().skips_halted is True  # the UT encoder-decoder applies it (ffn)


def test_ut_act_skip_halted_true_needs_the_ffn_transition():
    cls = model_classes("universal")[1]
    assert cls(transition="sepconv").skips_halted is False  # null: skipped where it applies, so not here
    assert cls(transition="sepconv", act_skip_halted=False).skips_halted is False
    assert cls(act_skip_halted=False).skips_halted is False
    with pytest.raises(ValueError, match="act_skip_halted=True needs transition='ffn'.*sepconv"):
        cls(transition="sepconv", act_skip_halted=True)


def test_configs_round_trip_through_json():
    import json

    for cls in CONFIGS:
        config = cls()
        again = cls.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config
