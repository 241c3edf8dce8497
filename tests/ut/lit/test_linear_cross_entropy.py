"""The fused output projection + label-smoothed cross-entropy against the unfused loss on materialised logits
(float64), under autocast, without gradients; and the training modules' fused path against their unfused one."""

import pytest
import torch

from ut.lit import LanguageModelModule, Seq2SeqModule
from ut.lit.linear_cross_entropy import chunk_rows, linear_cross_entropy
from ut.lit.losses import smoothed_cross_entropy


def _inputs(b=3, length=7, d=6, vocab=13, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, length, d, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(vocab, d, generator=g, dtype=dtype, requires_grad=True)
    target = torch.randint(0, vocab, (b, length), generator=g)
    mask = torch.rand(b, length, generator=g) > 0.3
    mask[0, 0] = True
    return hidden, weight, target, mask


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [1, 4, 7, 100])
@pytest.mark.parametrize("masked", [True, False])
def test_matches_the_unfused_loss_and_its_gradients_float64(eps, chunk, masked):
    hidden, weight, target, mask = _inputs()
    mask = mask if masked else None
    logits = hidden @ weight.t()
    ref = smoothed_cross_entropy(logits, target, mask, eps)
    ref_grads = torch.autograd.grad(ref.loss, (hidden, weight))
    out, correct = linear_cross_entropy(hidden, weight, target, mask, eps, chunk_size=chunk)
    grads = torch.autograd.grad(out.loss, (hidden, weight))
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.nll, ref.nll, rtol=1e-12, atol=1e-12)
    assert int(out.count) == int(ref.count)
    counted = torch.ones_like(target, dtype=torch.bool) if mask is None else mask
    assert int(correct) == int(((logits.argmax(-1) == target) & counted).sum())
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    if mask is not None:  # positions that do not count get no gradient
        assert grads[0][~mask].abs().max() == 0


def test_gradcheck_and_incoming_gradient_scale():
    hidden, weight, target, mask = _inputs(b=2, length=3, d=3, vocab=5)
    torch.autograd.gradcheck(lambda h, w: linear_cross_entropy(h, w, target, mask, 0.1, chunk_size=2)[0].loss,
                             (hidden, weight))
    out, _ = linear_cross_entropy(hidden, weight, target, mask, 0.1)
    (g1,) = torch.autograd.grad(out.loss, hidden, retain_graph=True)
    (g3,) = torch.autograd.grad(3.0 * out.loss, hidden)
    torch.testing.assert_close(g3, 3.0 * g1)


def test_tied_weight_gets_both_gradients():
    """The output weight tied to an input embedding: autograd adds the lookup's gradient to the loss's."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(11, 4).double()
    ids = torch.randint(0, 11, (2, 5))
    target = torch.randint(0, 11, (2, 5))
    grads = []
    for fused in (True, False):
        emb.zero_grad()
        h = torch.tanh(emb(ids))
        loss = (linear_cross_entropy(h, emb.weight, target, None, 0.1)[0].loss if fused else
                smoothed_cross_entropy(h @ emb.weight.t(), target, None, 0.1).loss)
        loss.backward()
        grads.append(emb.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


class _CountMatmuls(torch.overrides.TorchFunctionMode):
    """Counts the matrix products run inside the block (torch.mm, @, addmm_)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        self.n += name in ("mm", "matmul", "__matmul__", "addmm_", "addmm")
        return func(*args, **(kwargs or {}))


def test_no_grad_gives_the_loss_without_computing_gradients():
    hidden, weight, target, mask = _inputs()
    ref = smoothed_cross_entropy(hidden @ weight.t(), target, mask, 0.1)
    with torch.no_grad(), _CountMatmuls() as count:
        out, _ = linear_cross_entropy(hidden, weight, target, mask, 0.1, chunk_size=4)
    assert not out.loss.requires_grad
    torch.testing.assert_close(out.loss, ref.loss.detach())
    n_chunks = -(-int(mask.sum()) // 4)
    assert count.n == n_chunks  # the projection only: no gradient products
    with _CountMatmuls() as count:
        linear_cross_entropy(hidden.detach(), weight, target, mask, 0.1, chunk_size=4)
    assert count.n == 2 * n_chunks  # a frozen input gets no gradient: the weight's only


def test_only_the_loss_is_differentiable_once():
    hidden, weight, target, mask = _inputs()
    out, _ = linear_cross_entropy(hidden, weight, target, mask, 0.1)
    with pytest.raises(RuntimeError, match="only the smoothed loss"):
        (out.loss + out.nll).backward()
    out, _ = linear_cross_entropy(hidden, weight, target, mask, 0.1)
    (g,) = torch.autograd.grad(out.loss, hidden, create_graph=True)
    with pytest.raises(RuntimeError):  # once_differentiable: no silent zero second derivative
        g.sum().backward()


def test_low_precision_states_give_a_float32_loss():
    hidden, weight, target, mask = _inputs(b=2, length=16, d=32, vocab=300, dtype=torch.float32)
    ref = smoothed_cross_entropy(hidden.bfloat16() @ weight.bfloat16().t(), target, mask, 0.1)
    out, _ = linear_cross_entropy(hidden.bfloat16(), weight.bfloat16(), target, mask, 0.1)
    assert out.loss.dtype == out.nll.dtype == torch.float32
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out.nll, ref.nll, rtol=1e-2, atol=1e-2)


def test_errors_and_chunk_rows():
    hidden, weight, target, mask = _inputs()
    with pytest.raises(ValueError, match="selects no position"):
        linear_cross_entropy(hidden, weight, target, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="must be"):
        linear_cross_entropy(hidden, weight, target[:, :-1], None)
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(hidden, weight[:, :-1], target, None)
    with pytest.raises(ValueError, match="smoothing"):
        linear_cross_entropy(hidden, weight, target, None, 1.0)
    assert chunk_rows(10_000) == 209 and chunk_rows(10**7) == 16


TINY_LM = {"vocab_size": 1100, "d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 2, "max_len": 32,
           "dropout": 0.0}
TINY_S2S = {"src_vocab_size": 1100, "tgt_vocab_size": 1100, "d_model": 16, "n_heads": 2, "d_ff": 32,
            "max_len": 32, "dropout": 0.0}


def _lm_batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1100, (3, 12), generator=g)
    attention = torch.ones_like(ids, dtype=torch.bool)
    attention[2, -3:] = False
    loss_mask = attention.clone()
    loss_mask[0, :4] = False
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": loss_mask}


def _s2s_batch():
    g = torch.Generator().manual_seed(2)
    src, tgt = torch.randint(5, 1100, (3, 9), generator=g), torch.randint(5, 1100, (3, 6), generator=g)
    src_mask, tgt_mask = torch.ones_like(src, dtype=torch.bool), torch.ones_like(tgt, dtype=torch.bool)
    src_mask[1, -2:] = False
    tgt_mask[2, -2:] = False
    return {"src": src, "src_mask": src_mask, "tgt_in": tgt, "tgt_out": tgt.roll(-1, 1), "tgt_mask": tgt_mask}


def _step_loss_and_grads(module, batch, fused):
    module.fused_output_loss = fused
    assert module.output_loss_fused() == fused
    out = module.forward_batch(batch, project_output=not fused)
    assert (out.logits is None) == fused and (out.final_states is None) != fused
    task, extra = module.task_loss(batch, out)
    loss = module._total_loss(task, out)
    params = [p for p in module.parameters() if p.requires_grad]
    return task, extra, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("module_cls,name,cfg,batch", [
    (LanguageModelModule, "decoder_only", TINY_LM, _lm_batch),
    (LanguageModelModule, "universal_decoder_only",
     {**{k: v for k, v in TINY_LM.items() if k != "n_layers"}, "n_steps": 2, "layer_pattern": "full",
      "recurrence": "act", "act_max_steps": 3}, _lm_batch),
    (Seq2SeqModule, "transformer", {**TINY_S2S, "n_encoder_layers": 2, "n_decoder_layers": 2}, _s2s_batch),
    (Seq2SeqModule, "universal", {**TINY_S2S, "n_steps": 2, "recurrence": "act", "act_max_steps": 3}, _s2s_batch),
])
def test_training_modules_fused_equals_unfused(module_cls, name, cfg, batch):
    torch.manual_seed(0)
    module = module_cls(name, cfg, label_smoothing=0.1).double()
    b = batch()
    fused_task, fused_extra, fused_grads = _step_loss_and_grads(module, b, True)
    task, extra, grads = _step_loss_and_grads(module, b, False)
    torch.testing.assert_close(fused_task.loss, task.loss)
    torch.testing.assert_close(fused_task.nll, task.nll)
    torch.testing.assert_close(fused_extra["token_acc"].double(), extra["token_acc"].double())
    for g, r in zip(fused_grads, grads):
        if r is None:
            assert g is None or g.abs().max() == 0
        else:
            torch.testing.assert_close(g, r)


def test_fused_only_where_it_pays_and_applies():
    small = LanguageModelModule("decoder_only", {**TINY_LM, "vocab_size": 64})
    assert not small.output_loss_fused()  # below FUSED_OUTPUT_LOSS_MIN_VOCAB: slower than unfused
    big = LanguageModelModule("decoder_only", TINY_LM)
    assert big.output_loss_fused()
    with torch.no_grad():
        assert not big.output_loss_fused()
    ponder = Seq2SeqModule("universal", {**TINY_S2S, "n_steps": 2, "recurrence": "pondernet"})
    assert not ponder.output_loss_fused()  # its expected loss needs every step's logits


def test_trainer_fit_is_the_same_fused_and_unfused(tmp_path):
    """Three Lightning training steps (Adam, schedule, clipping) at V = 1100: the same weights either way."""
    import lightning as L
    from torch.utils.data import DataLoader

    states = []
    for fused in (True, False):
        torch.manual_seed(0)
        module = LanguageModelModule("decoder_only", TINY_LM, label_smoothing=0.1)
        module.fused_output_loss = fused
        seen = []
        forward = module.training_forward
        module.training_forward = (lambda b, m=module, s=seen, f=forward:
                                   s.append(m.output_loss_fused()) or f(b))
        batches = [_lm_batch() for _ in range(3)]
        trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                            default_root_dir=tmp_path)
        trainer.fit(module, DataLoader(batches, batch_size=None))
        assert seen == [fused] * 3
        states.append({k: v.clone() for k, v in module.model.state_dict().items()})
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=1e-4, atol=1e-5)
