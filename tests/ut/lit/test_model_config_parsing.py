"""``model_config`` is typed per training module (ut.lit.base.model_config_keys): LightningCLI (ut.cli) rejects a
misspelt key or a wrongly typed value while parsing, ``--print_config`` included, and documents every key."""

from __future__ import annotations

import re
import typing

import pytest
import yaml

from tests.test_cli import REPO
from ut.cli import cli_main
from ut.lit import ClassificationModule, LanguageModelModule, Seq2SeqModule
from ut.lit.classification import ClassificationModelConfig
from ut.lit.language_model import LanguageModelConfig
from ut.lit.seq2seq import Seq2SeqModelConfig
from ut.models import model_classes

CONFIG = REPO / "experiments/ut_paper/configs/algorithmic_ut_act.yaml"


def config_with(tmp_path, **model_config) -> str:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["model"]["init_args"]["model_config"].update(model_config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def parse(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args, run=False)
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


@pytest.mark.parametrize("print_config", [False, True])
def test_a_misspelt_key_fails_at_parse_time(tmp_path, capsys, print_config):
    path = config_with(tmp_path, d_modle=64)
    code, text = parse(["--config", path, *(["--print_config"] if print_config else [])], capsys)
    assert code == 2
    assert "Unexpected keys: {'d_modle'}" in text
    assert "Traceback" not in text


def test_a_wrongly_typed_value_fails_at_parse_time(tmp_path, capsys):
    code, text = parse(["--config", CONFIG.as_posix(), "--model.init_args.model_config.d_model=wide",
                        "--print_config"], capsys)
    assert code == 2 and "Expected a <class 'int'>. Got value: wide" in text


def test_a_valid_config_prints_and_keeps_only_the_given_keys(tmp_path, capsys):
    path = config_with(tmp_path, src_vocab_size=None)  # data-filled sizes may be null
    code, text = parse(["--config", path, "--print_config"], capsys)
    assert code == 0
    printed = yaml.safe_load(text)["model"]["init_args"]["model_config"]
    given = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]["model_config"]
    assert printed == {**given, "src_vocab_size": None}  # no defaults filled in: the data still fills the sizes


def test_every_key_has_help(capsys):
    code, text = parse(["fit", "--model.help", "ut.lit.Seq2SeqModule"], capsys)
    assert code == 0 and "--model.model_config.help" in text
    code, text = parse(["fit", "--model.help", "ut.lit.Seq2SeqModule", "--model.model_config.help",
                        "Seq2SeqModelConfig"], capsys)
    assert code == 0
    assert "--model.model_config.act_max_steps" in text and "ACT: most steps a position may run" in text
    assert "--model.model_config.n_encoder_layers" in text and "[TransformerConfig only]" in text


@pytest.mark.parametrize("module,keys", [(Seq2SeqModule, Seq2SeqModelConfig),
                                         (LanguageModelModule, LanguageModelConfig),
                                         (ClassificationModule, ClassificationModelConfig)])
def test_the_keys_are_the_fields_of_the_accepted_models(module, keys):
    fields = set()
    for name in module.ACCEPTED_MODELS:
        fields |= set(model_classes(name)[1].__dataclass_fields__)
    assert set(keys.__annotations__) == fields


@pytest.mark.parametrize("print_config", [False, True])
def test_a_value_outside_a_literal_fields_choices_fails_at_parse_time(tmp_path, capsys, print_config):
    path = config_with(tmp_path, recurrence="actt")
    code, text = parse(["--config", path, *(["--print_config"] if print_config else [])], capsys)
    assert code == 2
    assert "Expected a typing.Literal['fixed', 'act', 'pondernet', 'stick_breaking']. Got value: actt" in text
    assert "Traceback" not in text
    code, text = parse(["--config", CONFIG.as_posix(), "--run.logger=wand", "--print_config"], capsys)
    assert code == 2 and 'Parser key "run.logger"' in text and "Got value: wand" in text


def test_the_keys_carry_the_literal_types_of_the_configs():
    hints = typing.get_type_hints(Seq2SeqModelConfig)
    assert typing.get_args(hints["recurrence"]) == ("fixed", "act", "pondernet", "stick_breaking")  # the UT's alone
    assert set(typing.get_args(typing.get_type_hints(ClassificationModelConfig)["pooling"])) == {"mean", "first",
                                                                                                 "last"}


@pytest.mark.parametrize("module,name,config,message", [
    (Seq2SeqModule, "universal", {"recurrence": "actt"},
     "UniversalTransformerConfig: recurrence='actt' is not one of ('fixed', 'act', 'pondernet', 'stick_breaking')"),
    (ClassificationModule, "transformer_classifier", {"pooling": "max"},
     "TransformerClassifierConfig: pooling='max' is not one of ('mean', 'first', 'last')"),
    (LanguageModelModule, "decoder_only", {"moe_priority": "random", "vocab_size": None},
     "DecoderOnlyConfig: moe_priority='random' is not one of ('position', 'choice')"),
])
def test_a_bad_choice_fails_at_construction_even_before_the_data_fills_the_sizes(module, name, config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        module(name, config)
    assert module(name, {k: v for k, v in config.items() if v is None}).model is None  # the sizes are still missing


def test_ut_dmca_rejects_act_skip_halted_at_construction():
    with pytest.raises(ValueError, match="act_skip_halted=True cannot apply to UT-DMCA"):
        LanguageModelModule("universal_decoder_only", {"vocab_size": 16, "d_model": 16, "n_heads": 2, "d_ff": 32,
                                                       "n_steps": 1, "layer_pattern": "full",
                                                       "act_skip_halted": True})
