"""The output projection and the label-smoothed cross-entropy in one pass over row chunks, never holding the
(tokens, V) logits: the training loss of the token-predicting models at large vocabularies.

The unfused loss writes the logits (tokens x V floats), then its log-softmax, the gradient of both and the
smoothing term's, each a pass over a tokens x V array: at LAMBADA's d 128 / 10k words that memory traffic is most
of a training step (``benchmarks/small_models.py``), and at WikiSum's L = 11000 / 32k subwords each copy is 1.4 GB.
Here a chunk of rows is projected, its loss AND its gradients (w.r.t. the hidden states and the weight) are
computed while the chunk is in cache, and the chunk's logits are dropped; backward only scales the stored
gradients by the incoming one. The same idea as Liger Kernel's fused linear cross-entropy (Hsu et al. 2024) and,
without the chunk's logits at all, Cut Cross-Entropy (Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary
Language Models"); here in plain PyTorch ops.

Math (:mod:`ut.lit.losses`' loss, per counted position i, z = W h_i, lse = log sum_v exp z_v):

    loss_i = (1 - eps) (lse - z_y) + eps (lse - mean_v z_v),     nll_i = lse - z_y
    d(mean_i loss_i) / dz = (softmax(z) - (1 - eps) onehot(y) - eps / V) / count

With p = softmax(z) the gradients are

    grad h_i = ((p W)_i - (1 - eps) W[y_i] - eps / V sum_v W_v) / count
    grad W   = (p^T h - (1 - eps) sum_i onehot(y_i) h_i^T - eps / V 1 (sum_i h_i)^T) / count

so the only passes over a chunk's (rows, V) values are the max (with the argmax, for the accuracy), the mean
(eps > 0) and one softmax (lse = max z - log max p); the one-hot and uniform terms are rank-one updates after
the loop. Without autocast the two (rows, V) buffers are allocated once (a fresh array per chunk costs page
faults); under autocast each chunk also allocates its low-precision logits and probabilities.

Deviations from autograd through the unfused loss: the gradients are computed in the forward pass whenever one is
needed (grad mode on and ``hidden`` / ``weight`` requiring it; a forward without a backward then pays for both),
only the loss is differentiable (a backward through the NLL raises), double backward raises (``once_differentiable``),
and the weight is read directly (under FSDP the training modules keep the unfused loss: a sharded output layer's
weight is only whole inside its own forward). The tied input embedding gets its own gradient as usual: autograd
adds the two. Under autocast the projections run in the autocast dtype and the softmax, the loss and the NLL in
float32, as autocast runs ``F.linear`` then ``log_softmax``; the loss and the NLL are at least float32 for
bf16 / fp16 states too. Measured against the peers' logits + ``F.cross_entropy``:
``benchmarks/results/<machine kind>/output_loss.md``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ut.lit.losses import SmoothedLoss

CHUNK_ELEMENTS = 1 << 21  # rows per chunk x V: two float32 buffers of 8 MB (V = 10k: 209 rows; 32k: 64)
# vocabularies from this size up are fused (benchmarks/results/<machine kind>/output_loss.md, d 128, 1440 tokens,
# one core): against the unfused loss the modules compute otherwise, 1.4x at V = 1024 and 1.8x at 10k; against
# the peers' plain F.cross_entropy 0.95x at V = 1024, 1.7x at 10k, 2.2x and 1/40 of the memory at WikiSum's 32k
FUSED_OUTPUT_LOSS_MIN_VOCAB = 1024


def output_loss_fusable(model: torch.nn.Module, min_vocab: int = FUSED_OUTPUT_LOSS_MIN_VOCAB) -> bool:
    """Whether a training step of ``model`` should take its final states (``project_output=False``) and compute
    the loss with :func:`linear_cross_entropy`: a token-predicting model (a bias-free ``output`` projection) at a
    vocabulary of at least ``min_vocab``, gradients on, and no per-step predictions (PonderNet's expected loss
    needs every step's logits)."""
    output = getattr(model, "output", None)
    return (torch.is_grad_enabled() and isinstance(output, torch.nn.Linear) and output.bias is None
            and output.out_features >= min_vocab
            and getattr(getattr(model, "cfg", None), "recurrence", "fixed") != "pondernet")


def chunk_rows(vocab_size: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that a chunk's logits hold about ``chunk_elements`` values (at least 16 rows)."""
    return max(16, chunk_elements // max(vocab_size, 1))


def _autocast_dtype(device: str) -> torch.dtype | None:
    """The autocast dtype active on ``device`` ("cpu", "cuda"), None when autocast is off there (torch >= 2.3)."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if device == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


class _LinearCrossEntropy(torch.autograd.Function):
    """(hidden Float[N, D], weight Float[V, D], target Long[N], eps, rows, grad_h?, grad_w?) -> (mean loss, mean
    nll, correct), loss and nll in at least float32."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, target: Tensor, eps: float, rows: int, need_grad_h: bool,
                need_grad_w: bool):
        n, vocab = hidden.shape[0], weight.shape[0]
        device = hidden.device.type
        mm_dtype = _autocast_dtype(device) or hidden.dtype
        ctx.set_materialize_grads(False)
        with torch.autocast(device, enabled=False):
            h_mm, w_mm = hidden.to(mm_dtype), weight.to(mm_dtype)
            acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
            loss = torch.zeros((), dtype=acc, device=hidden.device)
            nll = torch.zeros((), dtype=acc, device=hidden.device)
            correct = torch.zeros((), dtype=torch.long, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_grad_h else None
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_grad_w else None
            inv_count = 1.0 / n
            fast = mm_dtype == acc == hidden.dtype  # no casts: every (rows, V) array lives in the two buffers
            z_buf = torch.empty((min(rows, n), vocab), dtype=acc, device=hidden.device)
            p_buf = torch.empty_like(z_buf)
            for s in range(0, n, rows):
                h, y = h_mm[s:s + rows], target[s:s + rows]
                z, p = z_buf[:h.shape[0]], p_buf[:h.shape[0]]
                if fast:
                    torch.mm(h, w_mm.t(), out=z)
                else:
                    z.copy_(h @ w_mm.t())
                zmax, pred = z.max(-1)  # one pass: the stabiliser and the argmax
                correct += (pred == y).sum()
                z_y = z.gather(-1, y[:, None]).squeeze(-1)
                z_mean = z.mean(-1) if eps else None
                torch.ops.aten._softmax.out(z, -1, False, out=p)
                lse = zmax - p.gather(-1, pred[:, None]).squeeze(-1).log()  # p_max = exp(zmax - lse) >= 1 / V
                nll_rows = lse - z_y
                nll += nll_rows.sum()
                loss += ((1 - eps) * nll_rows + eps * (lse - z_mean) if eps else nll_rows).sum()
                # the softmax part of the gradients; the one-hot and uniform parts are rank-one, after the loop
                e = p if fast else p.to(mm_dtype)
                if need_grad_h and fast:
                    torch.mm(p, w_mm, out=grad_h[s:s + rows]).mul_(inv_count)
                elif need_grad_h:
                    grad_h[s:s + rows] = (e @ w_mm).to(acc).mul_(inv_count).to(hidden.dtype)
                if need_grad_w and fast:
                    grad_w.addmm_(p.t(), h, alpha=inv_count)
                elif need_grad_w:
                    grad_w += (e.t() @ h).to(acc).mul_(inv_count)
            if need_grad_h:  # - ((1 - eps) W[y_i] + eps / V sum_v W_v) / count
                w_acc = weight.to(acc)
                grad_h -= ((1 - eps) * inv_count * w_acc[target]).to(hidden.dtype)
                if eps:
                    grad_h -= (eps / vocab * inv_count * w_acc.sum(0)).to(hidden.dtype)
            if need_grad_w:  # - ((1 - eps) sum_i onehot(y_i) h_i^T + eps / V 1 (sum_i h_i)^T) / count
                h_acc = hidden.to(acc)
                grad_w.index_add_(0, target, h_acc, alpha=-(1 - eps) * inv_count)
                if eps:
                    grad_w -= (eps / vocab * inv_count) * h_acc.sum(0)[None, :]
                grad_w = grad_w.to(weight.dtype)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(correct)
        return loss * inv_count, nll * inv_count, correct

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: Tensor | None, grad_nll: Tensor | None, grad_correct: Tensor | None):
        grad_h, grad_w = ctx.saved_tensors
        if grad_nll is not None:
            raise RuntimeError("linear_cross_entropy: only the smoothed loss is differentiable, not the NLL")
        if grad_loss is None:
            return None, None, None, None, None, None, None
        return (None if grad_h is None else grad_h * grad_loss.to(grad_h.dtype),
                None if grad_w is None else grad_w * grad_loss.to(grad_w.dtype), None, None, None, None, None)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, target: Tensor, mask: Tensor | None = None,
                         smoothing: float = 0.1, chunk_size: int | None = None) -> tuple[SmoothedLoss, Tensor]:
    """The label-smoothed cross-entropy of the logits ``hidden @ weight.T`` without materialising them.

    hidden Float[..., D] (final states), weight Float[V, D] (the bias-free output projection), target Long[...],
    mask Bool[...] (True = counts; None: all) -> (:class:`ut.lit.losses.SmoothedLoss` -- the same values as
    ``smoothed_cross_entropy(hidden @ weight.T, target, mask, smoothing)`` --, the number of counted positions
    whose argmax is the target). Only the counted positions are projected. ``chunk_size``: rows per chunk (None:
    :func:`chunk_rows`). Only ``loss`` is differentiable (``nll`` and the count are for logging).
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    if hidden.shape[:-1] != target.shape or (mask is not None and mask.shape != target.shape):
        raise ValueError(f"linear_cross_entropy: hidden {tuple(hidden.shape)} must be (*target, D) and mask "
                         f"{None if mask is None else tuple(mask.shape)} the target's shape {tuple(target.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"linear_cross_entropy: weight {tuple(weight.shape)} must be (V, {hidden.shape[-1]})")
    if mask is None:
        h, y = hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1)
    else:  # one gather of the counted rows (also of a non-contiguous slice such as states[:, :-1])
        h, y = hidden[mask], target[mask]
    if h.shape[0] == 0:
        raise ValueError("linear_cross_entropy: the mask selects no position")
    rows = chunk_size or chunk_rows(weight.shape[0])
    grad_on = torch.is_grad_enabled()
    loss, nll, correct = _LinearCrossEntropy.apply(h, weight, y, float(smoothing), int(rows),
                                                   grad_on and h.requires_grad, grad_on and weight.requires_grad)
    return SmoothedLoss(loss, nll, torch.tensor(h.shape[0], device=hidden.device)), correct
