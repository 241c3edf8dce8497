"""build_optimizer runs torch's fused Adam where a kernel exists, and its updates equal the per-parameter loop's."""

import pytest
import torch

from ut.optim import OptimizerConfig, build_optimizer, fused_adam_supported


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_fused_adam_matches_the_loop_over_a_warmup_schedule(weight_decay):
    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3, 2, 4)]
    a = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    start = [p.detach().clone() for p in a]
    cfg = OptimizerConfig(peak_lr=3e-3, warmup_steps=4, weight_decay=weight_decay)
    opt_a, sched_a = build_optimizer(a, cfg, d_model=16)
    assert opt_a.defaults["fused"] is True
    kw = dict(lr=1.0, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, foreach=False)
    ref_cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    opt_b = ref_cls(b, weight_decay=weight_decay, **kw) if weight_decay else ref_cls(b, **kw)
    sched_b = torch.optim.lr_scheduler.LambdaLR(opt_b, lambda i: cfg.lr_at(i + 1, 16))
    for _ in range(10):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step(), opt_b.step(), sched_a.step(), sched_b.step()
    assert min((p - p0).abs().max().item() for p, p0 in zip(a, start)) > 1e-3  # the steps moved every tensor
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_fused_only_where_a_kernel_exists():
    assert fused_adam_supported([torch.nn.Parameter(torch.zeros(2))])
    assert fused_adam_supported([torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))])
    assert not fused_adam_supported([torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))])  # CUDA only
    assert not fused_adam_supported([])
    opt, _ = build_optimizer([torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))], OptimizerConfig(), 8)
    assert not opt.defaults["fused"]
