"""The output-loss benchmark's contenders compute the same loss and gradients; its row and report render."""

import pytest
import torch

from benchmarks import output_loss


def test_contenders_agree_on_loss_and_gradients():
    states, weight, target = output_loss.make_inputs(50, 8, 1100)
    losses = {n: output_loss.contender_loss(n, states, weight, target) for n in output_loss.CONTENDERS}
    grads = {n: torch.autograd.grad(v, (states, weight)) for n, v in losses.items()}
    peers = output_loss.CONTENDERS[0]
    for name in output_loss.CONTENDERS[1:]:
        torch.testing.assert_close(losses[name], losses[peers], rtol=1e-5, atol=1e-6)
        for g, r in zip(grads[name], grads[peers]):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)
    for name in output_loss.CONTENDERS:
        output_loss.contender_fn(name, states, weight, target)()  # forward + backward, gradients dropped after
        assert states.grad is None and weight.grad is None
    with pytest.raises(ValueError, match="unknown contender"):
        output_loss.contender_loss("nope", states, weight, target)


def test_measure_and_markdown_at_a_tiny_shape(monkeypatch):
    monkeypatch.setattr(output_loss, "SHAPES", {"tiny": (40, 8, 1100)})
    monkeypatch.setattr(output_loss, "run_child", lambda shape, name: output_loss.child(shape, name))
    result = output_loss.measure(["tiny"], repeats=1)
    row = result["rows"][0]
    assert set(row["seconds"]) == set(output_loss.CONTENDERS) == set(row["peak_increase_mb"])
    assert row["logits_mb"] == pytest.approx(40 * 1100 * 4 / 2 ** 20)
    text = output_loss.markdown(result, "python -m benchmarks.output_loss", {"cpu_model": "x", "machine_kind": "y"})
    assert "| tiny | 40 x 8 x 1100 |" in text and "fused vs peers" in text
