"""The optimiser and schedule against the paper's formula (Vaswani et al. 2017, eq. 3)."""

import pytest
import torch

from ut.optim import OptimizerConfig, build_optimizer, inverse_sqrt_lr


def paper_lr(step, d, warmup, c):
    return c * d**-0.5 * min(step**-0.5, step * warmup**-1.5)


@pytest.mark.parametrize("step", [1, 2, 10, 99, 100, 101, 1000, 12345])
def test_inverse_sqrt_matches_formula(step):
    assert inverse_sqrt_lr(step, 64, 100, 2.0) == pytest.approx(paper_lr(step, 64, 100, 2.0), rel=1e-12)


def test_schedule_shape_peak_at_warmup():
    lrs = [inverse_sqrt_lr(s, 512, 4000) for s in range(1, 10001)]
    assert max(range(len(lrs)), key=lrs.__getitem__) + 1 == 4000
    assert lrs[0] < lrs[1999] < lrs[3999] and lrs[3999] > lrs[7999]  # rises linearly, then decays
    assert lrs[7999] == pytest.approx(lrs[3999] * (4000 / 8000) ** 0.5)  # 1/sqrt(step) decay


def test_scheduler_drives_adam_with_the_formula():
    p = torch.nn.Parameter(torch.zeros(3))
    cfg = OptimizerConfig(lr_scale=2.0, warmup_steps=5)
    opt, sched = build_optimizer([p], cfg, d_model=16)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["eps"] == 1e-9
    for step in range(1, 12):  # the lr used by optimiser step `step`
        assert opt.param_groups[0]["lr"] == pytest.approx(paper_lr(step, 16, 5, 2.0))
        p.grad = torch.ones(3)
        opt.step()
        sched.step()


def test_constant_schedule_and_weight_decay():
    cfg = OptimizerConfig(schedule="constant", lr=3e-4, weight_decay=0.1)
    opt, _ = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, d_model=8)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == pytest.approx(3e-4)


@pytest.mark.parametrize("bad", [{"schedule": "cosine"}, {"warmup_steps": 0}, {"beta2": 1.0}, {"lr_scale": 0}])
def test_bad_config_is_an_error(bad):
    with pytest.raises(ValueError):
        OptimizerConfig(**bad)


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unknown optimizer keys"):
        OptimizerConfig.from_dict({"warmup": 10})


@pytest.mark.parametrize("warmup,d", [(10, 64), (75, 64), (250, 16), (4000, 512)])
def test_peak_lr_is_the_largest_lr_whatever_the_warmup_and_width(warmup, d):
    from ut.optim import peak_lr

    cfg = OptimizerConfig(peak_lr=3e-3, warmup_steps=warmup, lr_scale=7.0)  # lr_scale is ignored
    lrs = [cfg.lr_at(s, d) for s in range(1, 4 * warmup + 1)]
    assert max(lrs) == pytest.approx(3e-3, rel=1e-12)
    assert max(range(len(lrs)), key=lrs.__getitem__) + 1 == warmup
    assert peak_lr(cfg, d) == pytest.approx(3e-3, rel=1e-12)
    # the same shape as the paper's formula: linear warmup, then 1/sqrt(step)
    assert lrs[warmup // 2 - 1] == pytest.approx(3e-3 * (warmup // 2) / warmup, rel=1e-12)
    assert lrs[4 * warmup - 1] == pytest.approx(3e-3 * 0.5, rel=1e-12)


def test_peak_lr_off_keeps_lr_scale_and_bad_value_is_an_error():
    cfg = OptimizerConfig(lr_scale=0.5, warmup_steps=200)
    assert cfg.lr_at(200, 64) == pytest.approx(paper_lr(200, 64, 200, 0.5), rel=1e-12)
    with pytest.raises(ValueError, match="peak_lr"):
        OptimizerConfig(peak_lr=0.0)
