"""``ut-train predict`` on trained tiny checkpoints of every task family (seq2seq copy, bAbI classification,
LAMBADA LM): the JSONL rows are what the decoding functions give for the same checkpoint and settings, inputs come
from texts, a file or a split, and the run's own config.yaml is left as fit wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ut
from tests.ut.lit.conftest import write_babi
from ut.cli import cli_main
from ut.decoding import beam_search, greedy_decode, sample_decode

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "experiments" / "ut_paper" / "configs"
QUIET = ["--run.logger", "none", "--trainer.callbacks", "[]", "--run.checkpoint_every_n_steps", "null",
         "--trainer.enable_progress_bar", "false"]


def fit(config: str, save_dir: Path, name: str, steps: int, *overrides: str) -> Path:
    cli_main(["fit", "--config", str(CONFIGS / config), "--run.save_dir", str(save_dir), "--run.name", name,
              "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
              "--trainer.limit_val_batches", "1", *QUIET, *overrides])
    run = next(save_dir.glob(f"*/{name}"))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


def predict(run: Path, output: Path, *args: str) -> list[dict]:
    cli_main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
              *QUIET, "--prediction.output", str(output), *args])
    return [json.loads(line) for line in output.read_text().splitlines()]


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    d, m = "--data.init_args.", "--model.init_args.model_config."
    return fit("algorithmic_transformer.yaml", tmp_path_factory.mktemp("runs"), "copy", 30,
               d + "train_max_len", "5", d + "eval_max_len", "6", d + "eval_length", "uniform",
               d + "position_offsets", "none", d + "val_size", "4", d + "test_size", "6", d + "batch_size", "16",
               d + "eval_batch_size", "4", m + "d_model", "16", m + "n_heads", "2", m + "d_ff", "32",
               m + "n_encoder_layers", "1", m + "n_decoder_layers", "1")


def test_predict_texts_equal_greedy_decoding_of_the_checkpoint(copy_run, tmp_path):
    fit_config = (copy_run / "config.yaml").read_text()
    texts = ["12345", "907", "3"]
    rows = predict(copy_run, tmp_path / "p.jsonl", "--prediction.texts", json.dumps(texts),
                   "--prediction.max_len", "8")
    assert [r["text"] for r in rows] == texts and [r["index"] for r in rows] == [0, 1, 2]
    model = ut.load(copy_run)
    batch = model.encode(texts)
    out = greedy_decode(model.model, batch, max_len=8, eos_id=2)
    expected = [model.text.decode(s[:n]) for s, n in zip(out.sequences.tolist(), out.lengths.tolist())]
    assert [r["prediction"] for r in rows] == expected == model.generate(texts, max_len=8)
    assert [r["score"] for r in rows] == pytest.approx(out.scores.tolist(), abs=1e-5)
    assert all(set(r["prediction"]) <= set("0123456789+") for r in rows)
    assert (copy_run / "config.yaml").read_text() == fit_config  # predict wrote predict_config.yaml instead
    assert (copy_run / "predict_config.yaml").is_file()


def test_predict_split_with_beam_search_and_a_limit(copy_run, tmp_path):
    rows = predict(copy_run, tmp_path / "p.jsonl", "--prediction.split", "test", "--prediction.limit", "4",
                   "--prediction.beam_size", "3", "--prediction.alpha", "0.6", "--prediction.max_len", "8",
                   "--prediction.no_repeat_ngram_size", "2")
    assert len(rows) == 4 and all({"input", "reference", "prediction", "score", "ended"} <= set(r) for r in rows)
    model = ut.load(copy_run / "checkpoints" / "last.ckpt")
    batch = model.encode([r["input"] for r in rows])
    out = beam_search(model.model, batch, beam_size=3, alpha=0.6, max_len=8, eos_id=2, no_repeat_ngram_size=2)
    expected = [model.text.decode(out.sequences[i, 0, : out.lengths[i, 0]].tolist()) for i in range(4)]
    assert [r["prediction"] for r in rows] == expected


def test_predict_a_jsonl_file_keeps_its_fields_and_bad_input_is_named(copy_run, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "42", "id": "a"}\n{"text": "7", "id": "b"}\n')
    rows = predict(copy_run, tmp_path / "out" / "p.jsonl", "--prediction.file", str(src))
    assert [r["id"] for r in rows] == ["a", "b"]
    src.write_text('{"text": "4x2"}\n')
    with pytest.raises(ValueError, match="x"):
        predict(copy_run, tmp_path / "p2.jsonl", "--prediction.file", str(src))


def test_the_writer_as_a_plain_callback(copy_run, tmp_path):
    out = tmp_path / "cb.jsonl"
    cli_main(["predict", "--config", str(copy_run / "config.yaml"), "--ckpt_path",
              str(copy_run / "checkpoints" / "last.ckpt"), "--run.logger", "none",
              "--trainer.callbacks+=ut.lit.callbacks.PredictionWriter", f"--trainer.callbacks.output={out}",
              "--trainer.callbacks.limit=2"])
    assert len(out.read_text().splitlines()) == 2
    assert not (copy_run / "predictions.jsonl").exists()  # the CLI added no second writer


def test_predictions_go_to_the_run_folder_by_default(copy_run):
    cli_main(["predict", "--config", str(copy_run / "config.yaml"), "--ckpt_path",
              str(copy_run / "checkpoints" / "last.ckpt"), *QUIET, "--prediction.limit", "1"])
    assert len((copy_run / "predictions.jsonl").read_text().splitlines()) == 1


def test_babi_classifier_predicts_answer_names(tmp_path_factory, tmp_path):
    root = write_babi(tmp_path_factory.mktemp("babi") / "babi", n_stories=6, tasks=(1,))
    m = "--model.init_args.model_config."
    run = fit("babi_1k_ut.yaml", tmp_path_factory.mktemp("runs"), "babi", 5, "--data.init_args.data_dir", str(root),
              "--data.init_args.batch_size", "8", m + "d_model", "16", m + "n_heads", "2", m + "d_ff", "32")
    texts = ["Mary went to the kitchen. John went to the garden. Where is Mary?", "Where is John?"]
    rows = predict(run, tmp_path / "p.jsonl", "--prediction.texts", json.dumps(texts))
    model = ut.load(run)
    assert [r["prediction"] for r in rows] == model.classify(texts)
    assert all(r["prediction"] in model.text.labels and 0 < r["score"] <= 1 for r in rows)
    probs = model(model.encode(texts)).logits.softmax(-1).max(-1).values
    assert [r["score"] for r in rows] == pytest.approx(probs.tolist(), abs=1e-6)
    split_rows = predict(run, tmp_path / "s.jsonl", "--prediction.limit", "3")
    assert [r["reference"] for r in split_rows] and all(r["prediction"] in model.text.labels for r in split_rows)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    lam = tmp_path_factory.mktemp("lambada") / "lambada.jsonl"
    lam.write_text("".join(json.dumps({"text": f"the cat sat on the mat number {i} and then the cat"}) + "\n"
                           for i in range(40)))
    m = "--model.init_args.model_config."
    return fit("lambada_decoder_only.yaml", tmp_path_factory.mktemp("runs"), "lm", 5,
               "--data.init_args.path", str(lam), "--data.init_args.batch_size", "8", "--data.init_args.max_len",
               "32", m + "d_model", "16", m + "n_heads", "2", m + "d_ff", "32", m + "n_layers", "1")


def test_lm_sampling_is_seeded_and_top_k_one_is_greedy(lm_run, tmp_path):
    args = ["--prediction.texts", json.dumps(["the cat sat on the", "and then"]), "--prediction.max_len", "6"]
    greedy = predict(lm_run, tmp_path / "g.jsonl", *args)
    sampled = [predict(lm_run, tmp_path / f"s{i}.jsonl", *args, "--prediction.sample", "true",
                       "--prediction.seed", "3", "--prediction.temperature", "2.0") for i in range(2)]
    top1 = predict(lm_run, tmp_path / "k.jsonl", *args, "--prediction.sample", "true", "--prediction.top_k", "1")
    assert sampled[0] == sampled[1]
    assert [r["prediction"] for r in top1] == [r["prediction"] for r in greedy]
    model = ut.load(lm_run)
    batch = model.encode(["the cat sat on the", "and then"])
    assert batch["input_ids"][0, 0].item() == 1  # LAMBADA LMs read BOS + context
    gen = torch.Generator().manual_seed(3)
    out = sample_decode(model.model, batch, max_len=6, eos_id=2, temperature=2.0, generator=gen)
    expected = [model.text.decode(s[:n]) for s, n in zip(out.sequences.tolist(), out.lengths.tolist())]
    assert [r["prediction"] for r in sampled[0]] == expected
    assert model.generate(["the cat sat on the", "and then"], max_len=6, temperature=2.0, seed=3) == expected


@pytest.mark.parametrize("fmt", ["lm", "seq2seq"])
def test_wikisum_predict_on_raw_text_and_the_checkpoint_generates_alone(tmp_path, fmt):
    import lightning as L

    from tests.experiments.wikisum_fixtures import build_tiny_wikisum
    from ut.data.wikisum import WikiSumDataModule
    from ut.lit import LanguageModelModule, Seq2SeqModule
    from ut.lit.callbacks import PredictionWriter

    build = build_tiny_wikisum(tmp_path / "wikisum")
    dm = WikiSumDataModule(str(build), format=fmt, input_length=32, target_length=16, batch_size=4)
    tiny = {"d_model": 16, "n_heads": 2, "d_ff": 32}
    if fmt == "lm":
        module = LanguageModelModule("decoder_only", {**tiny, "n_layers": 1, "layer_pattern": "loc", "block_size": 8})
    else:
        module = Seq2SeqModule("transformer", {**tiny, "n_encoder_layers": 1, "n_decoder_layers": 1})
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(module, dm)
    ckpt = tmp_path / "w.ckpt"
    trainer.save_checkpoint(ckpt)
    texts = ["Topic 3 is a Famous Castle, close to the old River.", "The Museum near the Bridge!"]
    writer = PredictionWriter(output=str(tmp_path / "p.jsonl"), texts=texts, max_len=6, beam_size=2)
    L.Trainer(logger=False, enable_progress_bar=False, callbacks=[writer]).predict(module, dm, return_predictions=False)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    model = ut.load(ckpt)  # the checkpoint carries the build's tokenizer: no data folder needed from here on
    assert model.text.tokenizer.to_str() == dm.tokenizer.to_str()
    assert [r["prediction"] for r in rows] == model.generate(texts, max_len=6, beam_size=2)
