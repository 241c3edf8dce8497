"""The fact-level bAbI models (UT paper §3.1): shapes, masks, padding invariance, the question as query."""

import pytest
import torch

from ut.models import build_model

SMALL = {"vocab_size": 15, "n_classes": 5, "max_words": 6, "d_model": 16, "n_heads": 2, "d_ff": 32,
         "dropout": 0.0}
MODELS = [("transformer_fact_qa", {**SMALL, "n_layers": 2}),
          ("universal_fact_qa", {**SMALL, "n_steps": 2}),
          ("universal_fact_qa", {**SMALL, "n_steps": 2, "recurrence": "act", "act_max_steps": 4,
                                 "act_halting_bias_init": -1.0}),
          ("universal_fact_qa", {**SMALL, "n_steps": 2, "pooling": "mean"})]


def batch(seed=0, b=3, f=4, w=5, wq=4):
    g = torch.Generator().manual_seed(seed)
    facts = torch.randint(1, 15, (b, f, w), generator=g)
    facts[:, :, -1] = 0  # every fact shorter than W
    facts[1, 2:] = 0  # example 1 has 2 facts
    question = torch.randint(1, 15, (b, wq), generator=g)
    question[0, -1] = 0
    return facts, question


@pytest.mark.parametrize("name,cfg", MODELS)
def test_shapes_attention_over_facts_and_ponder(name, cfg):
    torch.manual_seed(0)
    model = build_model(name, cfg).eval()
    facts, question = batch()
    out = model(facts, question, need_weights=True)
    assert out.logits.shape == (3, 5)
    att = out.attentions["encoder"]
    assert len(att) >= 2 and all(a.shape == (3, 2, 5, 5) for a in att)  # items: question + 4 facts
    for a in att:  # no item attends to example 1's padding facts (items 3, 4)
        assert a[1, :, :, 3:].abs().max() == 0
        torch.testing.assert_close(a.sum(-1), torch.ones(3, 2, 5))
    if cfg.get("recurrence") == "act":
        pt = model(facts, question).ponder_time["encoder"]
        assert pt.shape == (3, 5) and (pt[1, 3:] == 0).all() and (pt[1, :3] >= 1).all()
        assert out.aux_loss is not None and out.aux_loss > 0


@pytest.mark.parametrize("name,cfg", MODELS)
def test_padding_facts_and_words_do_not_change_the_answer(name, cfg):
    torch.manual_seed(1)
    model = build_model(name, cfg).eval()
    facts, question = batch(1)
    ref = model(facts, question).logits
    more_facts = torch.cat([facts, torch.zeros(3, 3, 5, dtype=torch.long)], 1)
    more_words = torch.cat([facts, torch.zeros(3, 4, 1, dtype=torch.long)], 2)
    longer_q = torch.cat([question, torch.zeros(3, 2, dtype=torch.long)], 1)
    for f, q in ((more_facts, question), (more_words, question), (facts, longer_q)):
        torch.testing.assert_close(model(f, q).logits, ref, rtol=1e-5, atol=1e-5)
    # example 1 alone (cut to its 2 real facts) gives its batch row's answer
    torch.testing.assert_close(model(facts[1:2, :2], question[1:2]).logits, ref[1:2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,cfg", MODELS)
def test_the_question_and_the_fact_order_are_used(name, cfg):
    torch.manual_seed(2)
    model = build_model(name, cfg).eval()
    facts, question = batch(2)
    ref = model(facts, question).logits
    assert not torch.allclose(model(facts, question.flip(0)).logits, ref)  # another question, another answer
    swapped = facts.clone()
    swapped[0, [0, 1]] = facts[0, [1, 0]]
    assert not torch.allclose(model(swapped, question).logits[0], ref[0])  # positions over facts


def test_bad_inputs_and_configs_fail_clearly():
    model = build_model("universal_fact_qa", {**SMALL, "n_steps": 1})
    with pytest.raises(ValueError, match="facts Long"):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="pooling"):
        build_model("transformer_fact_qa", {**SMALL, "pooling": "last"})
    with pytest.raises(ValueError, match="unknown config keys"):
        build_model("transformer_fact_qa", {**SMALL, "n_steps": 2})
