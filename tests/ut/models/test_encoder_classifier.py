"""Encoder-only classifiers (Transformer twin and UT): one shared head, pooling over real tokens, padding, learning."""

import pytest
import torch

from tests.ut.helpers import padded
from ut.models import build_model
from ut.models.encoder_classifier import (
    ClassificationHead,
    TransformerClassifierConfig,
    TransformerEncoderClassifier,
    pool,
)
from ut.models.universal import UniversalClassifierConfig, UniversalTransformerClassifier

BASE = dict(vocab_size=15, n_classes=4, d_model=32, n_heads=4, d_ff=64, dropout=0.0)


def transformer(**kw):
    return TransformerEncoderClassifier(TransformerClassifierConfig(**{**BASE, "n_layers": 2, **kw}))


def universal(**kw):
    return UniversalTransformerClassifier(UniversalClassifierConfig(**{**BASE, "n_steps": 2, **kw}))


MODELS = {
    "transformer": transformer,
    "ut_fixed": universal,
    "ut_act": lambda **kw: universal(recurrence="act", act_halting_bias_init=0.0, **kw),
}


def test_pooling_uses_real_tokens_only():
    h = torch.arange(2 * 4 * 3, dtype=torch.float64).view(2, 4, 3)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    torch.testing.assert_close(pool(h, mask, "mean"), torch.stack([h[0, :3].mean(0), h[1, :2].mean(0)]))
    torch.testing.assert_close(pool(h, mask, "first"), h[:, 0])
    torch.testing.assert_close(pool(h, mask, "last"), torch.stack([h[0, 2], h[1, 1]]))
    with pytest.raises(ValueError, match="pooling"):
        pool(h, mask, "max")


def test_both_models_use_the_one_head():
    assert type(transformer().head) is ClassificationHead and type(universal().head) is ClassificationHead


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_padding_cannot_change_the_logits(name, pooling):
    m = MODELS[name](pooling=pooling).double().eval()
    src, mask = padded([[5, 6, 7, 8, 9], [9, 10, 11]])
    out = m(src, mask)
    assert out.logits.shape == (2, 4)
    src2 = torch.cat([src, torch.full((2, 2), 13)], 1)
    src2[1, 3:] = 14  # garbage under the padding
    mask2 = torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], 1)
    torch.testing.assert_close(m(src2, mask2).logits, out.logits)
    torch.testing.assert_close(m(src[1:, :3], mask[1:, :3]).logits, out.logits[1:])
    if name == "ut_act":
        assert out.aux_loss is not None and (out.ponder_time["encoder"][~mask] == 0).all()


def test_attention_maps_per_layer_and_per_step():
    src, mask = padded([[5, 6, 7], [8, 9]])
    assert len(transformer(n_layers=3)(src, mask, need_weights=True).attentions["encoder"]) == 3
    assert len(universal(n_steps=4)(src, mask, need_weights=True).attentions["encoder"]) == 4


def test_registry_and_config_validation():
    m = build_model("transformer_classifier", {**BASE, "n_layers": 1})
    assert isinstance(m, TransformerEncoderClassifier)
    with pytest.raises(ValueError, match="unknown config keys"):
        build_model("transformer_classifier", {**BASE, "n_steps": 2})
    with pytest.raises(ValueError, match="pooling"):
        TransformerClassifierConfig(pooling="cls")
    with pytest.raises(ValueError, match="divide"):
        TransformerClassifierConfig(d_model=30, n_heads=4)


@pytest.mark.parametrize("name", list(MODELS))
def test_tiny_classifier_learns_a_tiny_batch(name):
    """Label = the token right before the padding, i.e. the classifier must read a position that varies."""
    torch.manual_seed(0)
    m = MODELS[name]()
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(5, 15, (int(n),), generator=g).tolist() for n in torch.randint(3, 7, (12,), generator=g)]
    src, mask = padded(rows)
    label = torch.tensor([r[-1] % 4 for r in rows])
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(150):
        out = m(src, mask)
        loss = torch.nn.functional.cross_entropy(out.logits, label)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        assert (m(src, mask).logits.argmax(-1) == label).all()
