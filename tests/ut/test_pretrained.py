"""``from ut import load`` / :class:`ut.UTModel`: save_pretrained / from_pretrained round trips (safetensors + JSON
config + tokenizer.json, strict, offline), and generate() is exactly the decoding functions on the same inputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

import ut
from ut.data.predict import TextInterface
from ut.data.task_tokenizer import vocabulary_tokenizer
from ut.data.vocab import Vocabulary
from ut.decoding import beam_search, greedy_decode, sample_decode
from ut.pretrained import UTModel, from_checkpoint

WORDS = "the cat sat on mat and then a dog ran".split()
TINY = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0}
MODELS = {
    "decoder_only": {**TINY, "vocab_size": 16, "n_layers": 2},  # tied output weights
    "transformer": {**TINY, "src_vocab_size": 16, "tgt_vocab_size": 16, "n_encoder_layers": 1, "n_decoder_layers": 1},
    "universal": {**TINY, "src_vocab_size": 16, "tgt_vocab_size": 16, "n_steps": 2, "recurrence": "act"},
    "universal_classifier": {**TINY, "vocab_size": 16, "n_classes": 3, "n_steps": 2},
    "universal_decoder_only": {**TINY, "vocab_size": 16, "n_steps": 2, "layer_pattern": "loc", "block_size": 4},
}


def word_interface(task: str) -> TextInterface:
    tok = vocabulary_tokenizer(Vocabulary(WORDS), "lambada_word").to_str()
    if task == "classification":
        return TextInterface(task, tok, labels=["yes", "no", "maybe"])
    return TextInterface(task, tok, prefix_ids=[1] if task == "lm" else [])


def task_of(name: str) -> str:
    return "classification" if "classifier" in name else "lm" if "decoder_only" in name else "seq2seq"


def model_of(name: str, seed: int = 0) -> UTModel:
    torch.manual_seed(seed)
    return UTModel.with_text(name, MODELS[name], word_interface(task_of(name))).eval()


def teacher_forced_batch(model: UTModel) -> dict:
    batch = model.encode(["the cat sat on the mat", "a dog"])
    if task_of(model.model_name) == "seq2seq":
        batch["tgt_in"] = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 0]])
        batch["tgt_mask"] = batch["tgt_in"] != 0
    return batch


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the Hub: a download attempt fails the test."""
    import huggingface_hub

    import ut.pretrained as pretrained

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: hf_hub_download{args}{kwargs}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(pretrained, "hf_hub_download", refuse)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_and_load_give_the_same_logits(name, tmp_path):
    model = model_of(name)
    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_name"] == name and config["model_config"] == MODELS[name]
    assert config["text_interface"]["task"] == task_of(name) and "tokenizer_json" not in config["text_interface"]
    loaded = UTModel.from_pretrained(tmp_path / "m")
    a, b = loaded.text.to_dict(), model.text.to_dict()
    assert json.loads(a.pop("tokenizer_json")) == json.loads(b.pop("tokenizer_json")) and a == b
    batch = teacher_forced_batch(model)
    torch.testing.assert_close(loaded(batch).logits, model(batch).logits, rtol=0, atol=0)
    other = model_of(name, seed=1)
    assert not torch.equal(other(batch).logits, model(batch).logits)  # the weights really came from the file
    assert ut.load(tmp_path / "m").model_name == name


def test_tied_weights_stay_tied_and_loading_is_strict(tmp_path):
    model = model_of("decoder_only")
    model.save_pretrained(tmp_path / "m")
    loaded = UTModel.from_pretrained(tmp_path / "m")
    assert loaded.model.output.weight.data_ptr() == loaded.model.embed.weight.data_ptr()
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    weights.pop(next(k for k in weights if "layers.0" in k))
    save_file(weights, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="Missing"):
        UTModel.from_pretrained(tmp_path / "m")


def test_the_saved_tokenizer_is_self_contained(tmp_path):
    model = model_of("decoder_only")
    model.save_pretrained(tmp_path / "m")
    alone = Tokenizer.from_file(str(tmp_path / "m" / "tokenizer.json"))
    assert alone.encode("The Cat, sat!").ids == model.text.tokenize("The Cat, sat!")
    assert alone.token_to_id("<pad>") == 0 and alone.token_to_id("<sep>") == 3
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "m" / "tokenizer.json"))
    assert fast.pad_token == "<pad>" and fast.encode("The Cat, sat!") == model.text.tokenize("The Cat, sat!")


@pytest.mark.parametrize("name", ["decoder_only", "transformer", "universal", "universal_decoder_only"])
def test_generate_on_text_is_the_decoding_functions(name):
    model = model_of(name)
    texts = ["the cat sat on", "a dog ran and then the"]
    batch = model.encode(texts)
    decode = lambda out: [model.text.decode(s[:n]) for s, n in zip(out.sequences.tolist(), out.lengths.tolist())]
    kw = {"max_len": 7, "eos_id": 2, "min_len": 2, "no_repeat_ngram_size": 2}
    assert model.generate(texts, max_len=7, min_len=2, no_repeat_ngram_size=2) == decode(
        greedy_decode(model.model, batch, **kw))
    beam = beam_search(model.model, batch, beam_size=3, alpha=0.6, **kw)
    expected = [model.text.decode(beam.sequences[i, 0, : beam.lengths[i, 0]].tolist()) for i in range(2)]
    assert model.generate(texts, beam_size=3, alpha=0.6, max_len=7, min_len=2, no_repeat_ngram_size=2) == expected
    sampled = sample_decode(model.model, batch, top_k=4, top_p=0.9, temperature=0.7,
                            generator=torch.Generator().manual_seed(11), **kw)
    assert model.generate(texts, temperature=0.7, top_k=4, top_p=0.9, seed=11, max_len=7, min_len=2,
                          no_repeat_ngram_size=2) == decode(sampled)
    assert model.generate(texts[0], max_len=7) == model.generate(texts, max_len=7)[0]


def test_generate_on_a_batch_returns_ids_and_sampling_controls():
    model = model_of("decoder_only")
    batch = model.encode(["the cat", "a dog ran"])
    out = model.generate(batch, max_len=6)
    ref = greedy_decode(model.model, batch, max_len=6, eos_id=2)
    assert torch.equal(out.sequences, ref.sequences) and torch.equal(out.lengths, ref.lengths)
    assert torch.equal(model.generate(batch, max_len=6, top_k=1).sequences, ref.sequences)
    assert torch.equal(model.generate(batch, max_len=6, temperature=0.0).sequences, ref.sequences)
    a = model.generate(batch, max_len=6, temperature=1.5, seed=4).sequences
    assert torch.equal(a, model.generate(batch, max_len=6, temperature=1.5, seed=4).sequences)


def test_classifier_classify_and_wrong_calls_are_named():
    model = model_of("universal_classifier")
    names = model.classify(["the cat sat", "a dog"])
    logits = model(model.encode(["the cat sat", "a dog"])).logits
    assert names == [model.text.labels[i] for i in logits.argmax(-1).tolist()]
    with pytest.raises(TypeError, match="classify"):
        model.generate("the cat")
    with pytest.raises(TypeError, match="generate"):
        model_of("decoder_only").classify("the cat")
    bare = UTModel("decoder_only", MODELS["decoder_only"])
    with pytest.raises(ValueError, match="no tokenizer"):
        bare.generate("the cat")


def test_load_a_checkpoint_without_a_text_interface(tmp_path):
    model = model_of("transformer")
    ckpt = {"hyper_parameters": {"model_name": "transformer", "model_config": MODELS["transformer"]},
            "state_dict": {f"model.{k}": v for k, v in model.model.state_dict().items()}}
    torch.save(ckpt, tmp_path / "x.ckpt")
    loaded = from_checkpoint(tmp_path / "x.ckpt")
    assert loaded.text is None
    batch = teacher_forced_batch(model)
    torch.testing.assert_close(loaded(batch).logits, model(batch).logits, rtol=0, atol=0)
    torch.save({"state_dict": {}}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="bad.ckpt"):
        ut.load(tmp_path / "bad.ckpt")
    with pytest.raises(FileNotFoundError, match="neither"):
        ut.load(tmp_path)
