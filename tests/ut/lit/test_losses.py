"""Label smoothing against torch's own implementation, with a padding mask."""

import pytest
import torch
import torch.nn.functional as F

from ut.lit.losses import smoothed_cross_entropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_matches_torch_cross_entropy_with_ignore_index(eps):
    logits = torch.randn(3, 7, 11)
    target = torch.randint(0, 11, (3, 7))
    mask = torch.rand(3, 7) > 0.3
    mask[0, 0] = True
    ref_target = target.masked_fill(~mask, -100)
    ref = F.cross_entropy(logits.transpose(1, 2), ref_target, ignore_index=-100, label_smoothing=eps)
    out = smoothed_cross_entropy(logits, target, mask, eps)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    ref_nll = F.cross_entropy(logits.transpose(1, 2), ref_target, ignore_index=-100)
    assert out.nll.item() == pytest.approx(ref_nll.item(), rel=1e-5)  # nll is never smoothed
    assert int(out.count) == int(mask.sum())


def test_no_mask_and_classification_shape():
    logits, target = torch.randn(5, 4), torch.randint(0, 4, (5,))
    ref = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert smoothed_cross_entropy(logits, target, None, 0.1).loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_gradient_flows_and_errors():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    smoothed_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long)).loss.backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        smoothed_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError):
        smoothed_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), smoothing=1.0)
