"""Local and memory-compressed attention against independent float64 references; causality; caches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ut.nn.attention import KVCache, MultiHeadAttention, key_padding_mask
from ut.nn.long_attention import LocalAttention, MemoryCompressedAttention

D, H = 16, 2


def band_mask(length: int, block: int, look_back: bool) -> torch.Tensor:
    """Written independently of the module: query i sees j <= i in its block (or the previous block too)."""
    m = torch.zeros(length, length, dtype=torch.bool)
    for i in range(length):
        lo = (i // block) * block - (block if look_back else 0)
        for j in range(max(lo, 0), i + 1):
            m[i, j] = True
    return m


def full_with_same_weights(attn: MultiHeadAttention) -> MultiHeadAttention:
    ref = MultiHeadAttention(attn.d_model, attn.n_heads).double()
    ref.load_state_dict({k: v for k, v in attn.state_dict().items() if k.split(".")[0] in
                         ("q_proj", "k_proj", "v_proj", "out_proj")})
    return ref


# ---------------------------------------------------------------------------------------------- local attention
@pytest.mark.parametrize("look_back", [False, True])
@pytest.mark.parametrize("length", [16, 13, 3])
def test_local_equals_full_attention_with_band_mask(look_back, length):
    attn = LocalAttention(D, H, block_size=4, look_back=look_back).double()
    ref = full_with_same_weights(attn)
    x = torch.randn(2, length, D, dtype=torch.float64)
    got = attn(x).out
    want = ref(x, mask=band_mask(length, 4, look_back)).out
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the manual path (returns the weights) agrees, and its weights are zero outside the band
    manual = attn(x, need_weights=True)
    torch.testing.assert_close(manual.out, want, rtol=1e-10, atol=1e-10)
    assert not bool(manual.weights[..., ~band_mask(length, 4, look_back)].any())


@pytest.mark.parametrize("look_back", [False, True])
def test_local_with_key_padding_equals_masked_full_attention(look_back):
    attn = LocalAttention(D, H, block_size=4, look_back=look_back).double()
    ref = full_with_same_weights(attn)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    real = torch.ones(2, 11, dtype=torch.bool)
    real[1, :5] = False  # left padding in row 1
    got = attn(x, mask=key_padding_mask(real)).out
    want = ref(x, mask=band_mask(11, 4, look_back) & key_padding_mask(real)).out
    torch.testing.assert_close(got[real], want[real], rtol=1e-10, atol=1e-10)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("look_back", [False, True])
def test_local_never_builds_a_sequence_long_score_matrix(monkeypatch, look_back):
    key_lengths = []
    real_sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        key_lengths.append(k.shape[-2])
        return real_sdpa(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    LocalAttention(D, H, block_size=4, look_back=look_back)(torch.randn(1, 40, D))
    assert key_lengths and max(key_lengths) <= 8


@pytest.mark.parametrize("look_back", [False, True])
def test_local_cache_equals_no_cache(look_back):
    attn = LocalAttention(D, H, block_size=4, look_back=look_back).double()
    x = torch.randn(2, 19, D, dtype=torch.float64)
    real = torch.ones(2, 19, dtype=torch.bool)
    real[0, :3] = False
    full = attn(x, mask=key_padding_mask(real)).out
    cache = attn.cache_factory()
    outs = [attn(x[:, :6], mask=key_padding_mask(real[:, :6]), cache=cache).out]  # a prefix, then one at a time
    for i in range(6, 19):
        outs.append(attn(x[:, i : i + 1], mask=key_padding_mask(real[:, : i + 1]), cache=cache).out)
        assert cache.k.shape[2] <= 4 * (2 if look_back else 1)  # only the current (and previous) block
    torch.testing.assert_close(torch.cat(outs, 1)[real], full[real], rtol=1e-10, atol=1e-10)


def test_long_attention_rejects_what_it_cannot_do():
    attn = LocalAttention(D, H, block_size=4)
    x = torch.randn(1, 5, D)
    with pytest.raises(ValueError, match="causal"):
        attn(x, causal=False)
    with pytest.raises(ValueError, match="key-padding"):
        attn(x, mask=torch.ones(5, 5, dtype=torch.bool).tril())
    with pytest.raises(ValueError, match="self-attention"):
        attn(x, x)
    with pytest.raises(ValueError, match="dropout"):
        MemoryCompressedAttention(D, H, dropout=0.1)


# ---------------------------------------------------------------------------------- memory-compressed attention
def reference_memory_compressed(attn: MemoryCompressedAttention, x: torch.Tensor, real=None) -> torch.Tensor:
    """Direct float64 implementation, one query at a time, with an explicit strided F.conv1d.

    Query i in block g = i // c sees the compressed blocks b < g and the raw tokens g*c .. i (padding excluded,
    padded tokens zeroed before the convolution, blocks without a real token not attended).
    """
    c, h = attn.compression, attn.n_heads
    bsz, length, d = x.shape
    real = torch.ones(bsz, length, dtype=torch.bool) if real is None else real

    def conv(lin: torch.nn.Linear, seq):  # (B, L, D) -> (B, L // c, D): Conv1d(D, D, kernel=c, stride=c)
        if seq.shape[1] < c:
            return seq.new_zeros(bsz, 0, d)
        weight = lin.weight.view(d, c, d).permute(0, 2, 1)  # Linear over [x_0; ..; x_{c-1}] -> conv (out, in, k)
        return F.conv1d(seq.transpose(1, 2), weight, lin.bias, stride=c).transpose(1, 2)

    z = real[..., None].to(x.dtype)
    k, v = attn.k_proj(x), attn.v_proj(x)
    if attn.order == "project_compress":
        kc, vc = conv(attn.compress_k, k * z), conv(attn.compress_v, v * z)
    else:
        mem = conv(attn.compress, x * z)
        kc, vc = attn.k_proj(mem), attn.v_proj(mem)
    block_real = real[:, : (length // c) * c].reshape(bsz, -1, c).any(-1)
    q = attn.q_proj(x)
    out = torch.zeros_like(x)
    for b in range(bsz):
        for i in range(length):
            g = i // c
            blocks = [j for j in range(g) if block_real[b, j]]
            tokens = [j for j in range(g * c, i + 1) if real[b, j]]
            keys = [kc[b, j] for j in blocks] + [k[b, j] for j in tokens]
            vals = [vc[b, j] for j in blocks] + [v[b, j] for j in tokens]
            if not keys:
                continue
            kk, vv = torch.stack(keys).view(-1, h, d // h), torch.stack(vals).view(-1, h, d // h)
            qq = q[b, i].view(h, d // h)
            w = torch.softmax(torch.einsum("hd,khd->hk", qq, kk) / math.sqrt(d // h), dim=-1)
            out[b, i] = torch.einsum("hk,khd->hd", w, vv).reshape(d)
    return attn.out_proj(out)


@pytest.mark.parametrize("order", ["project_compress", "compress_project"])
@pytest.mark.parametrize("length", [12, 14, 2])
def test_memory_compressed_equals_direct_reference(order, length):
    attn = MemoryCompressedAttention(D, H, compression=3, order=order).double()
    x = torch.randn(2, length, D, dtype=torch.float64)
    want = reference_memory_compressed(attn, x)
    torch.testing.assert_close(attn(x).out, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(attn(x, need_weights=True).out, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ["project_compress", "compress_project"])
def test_memory_compressed_with_left_padding_equals_reference(order):
    attn = MemoryCompressedAttention(D, H, compression=3, order=order).double()
    x = torch.randn(2, 13, D, dtype=torch.float64)
    real = torch.ones(2, 13, dtype=torch.bool)
    real[1, :7] = False
    want = reference_memory_compressed(attn, x, real)
    got = attn(x, mask=key_padding_mask(real)).out
    torch.testing.assert_close(got[real], want[real], rtol=1e-10, atol=1e-10)
    manual = attn(x, mask=key_padding_mask(real), need_weights=True).out
    torch.testing.assert_close(manual[real], want[real], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("order", ["project_compress", "compress_project"])
def test_memory_compressed_is_causal(order):
    attn = MemoryCompressedAttention(D, H, compression=3, order=order).double()
    x = torch.randn(1, 20, D, dtype=torch.float64)
    for p in (0, 4, 5, 11):  # first, middle and last position of a block
        y = x.clone()
        y[:, p + 1 :] = torch.randn_like(y[:, p + 1 :])
        a, b = attn(x).out, attn(y).out
        torch.testing.assert_close(a[:, : p + 1], b[:, : p + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(a[:, p + 1 :], b[:, p + 1 :])


def test_memory_compressed_sees_earlier_blocks():
    """Not trivially causal: changing block 0 changes the outputs of later blocks (through the compressed keys)."""
    attn = MemoryCompressedAttention(D, H, compression=3).double()
    x = torch.randn(1, 12, D, dtype=torch.float64)
    y = x.clone()
    y[:, 1] += 1.0
    diff = (attn(x).out - attn(y).out).abs().amax(-1)[0]
    assert bool((diff[3:] > 1e-8).all())


@pytest.mark.parametrize("order", ["project_compress", "compress_project"])
def test_memory_compressed_cache_equals_no_cache(order):
    attn = MemoryCompressedAttention(D, H, compression=3, order=order).double()
    x = torch.randn(2, 17, D, dtype=torch.float64)
    real = torch.ones(2, 17, dtype=torch.bool)
    real[0, :4] = False
    full = attn(x, mask=key_padding_mask(real)).out
    cache = attn.cache_factory()
    outs = [attn(x[:, :5], mask=key_padding_mask(real[:, :5]), cache=cache).out]
    for i in range(5, 17):
        outs.append(attn(x[:, i : i + 1], mask=key_padding_mask(real[:, : i + 1]), cache=cache).out)
        assert cache.v.shape[2] == (i + 1) // 3  # compressed values only; the unfinished block is < c inputs
    torch.testing.assert_close(torch.cat(outs, 1)[real], full[real], rtol=1e-10, atol=1e-10)


def test_memory_compressed_gradients_reach_every_parameter():
    attn = MemoryCompressedAttention(D, H, compression=3)
    attn(torch.randn(2, 10, D)).out.square().sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


@pytest.mark.parametrize("compression", [2, 4])
def test_memory_compressed_other_compressions_equal_reference(compression):
    attn = MemoryCompressedAttention(D, H, compression=compression).double()
    x = torch.randn(2, 11, D, dtype=torch.float64)
    torch.testing.assert_close(attn(x).out, reference_memory_compressed(attn, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ["project_compress", "compress_project"])
def test_memory_compressed_gradients_equal_reference(order):
    """The sentinel merge is differentiated through log Z_raw: input and weight gradients match the reference."""
    attn = MemoryCompressedAttention(D, H, compression=3, order=order).double()
    x = torch.randn(2, 13, D, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 13, D, dtype=torch.float64)
    grads = []
    for fn in (lambda: attn(x).out, lambda: reference_memory_compressed(attn, x)):
        attn.zero_grad()
        x.grad = None
        (fn() * w).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in attn.parameters()])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("look_back", [False, True])
def test_local_gradients_equal_masked_full_attention(look_back):
    attn = LocalAttention(D, H, block_size=4, look_back=look_back).double()
    ref = full_with_same_weights(attn)
    x = torch.randn(2, 14, D, dtype=torch.float64, requires_grad=True)
    (attn(x).out ** 2).sum().backward()
    got = x.grad.clone()
    x.grad = None
    (ref(x, mask=band_mask(14, 4, look_back)).out ** 2).sum().backward()
    torch.testing.assert_close(got, x.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(attn.q_proj.weight.grad, ref.q_proj.weight.grad, rtol=1e-9, atol=1e-10)


def test_long_attention_rejects_a_plain_kv_cache():
    for attn in (LocalAttention(D, H, block_size=4), MemoryCompressedAttention(D, H)):
        with pytest.raises(TypeError, match="LongAttentionCache"):
            attn(torch.randn(1, 3, D), cache=KVCache())


def test_memory_compressed_shorter_than_one_block_with_padding():
    """No finished block yet (L < c) with a key-padding mask: only the raw own-block keys are attended."""
    attn = MemoryCompressedAttention(D, H, compression=3).double()
    x = torch.randn(2, 2, D, dtype=torch.float64)
    real = torch.tensor([[True, True], [False, True]])
    out = attn(x, mask=key_padding_mask(real)).out
    ref = MultiHeadAttention.forward(attn, x, mask=key_padding_mask(real), causal=True).out
    torch.testing.assert_close(out[real], ref[real])


@pytest.mark.parametrize("look_back", [False, True])
def test_local_attention_dropout_runs_per_block_in_sdpa_not_the_chunked_back_end(monkeypatch, look_back):
    """Training with attention dropout: SDPA per block (quadratic in the block only), never ut.nn.attend's chunked
    back end (whose recomputation buys nothing for blocks this short)."""
    import ut.nn.attend as attend_module

    key_lengths, dropouts = [], []
    real_sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        key_lengths.append(k.shape[-2])
        dropouts.append(kw.get("dropout_p", 0.0))
        return real_sdpa(q, k, v, **kw)

    def no_chunked(*args, **kwargs):
        raise AssertionError("local attention took the chunked dropout back end")

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(attend_module, "dropout_attention", no_chunked)
    attn = LocalAttention(D, H, block_size=4, look_back=look_back, dropout=0.1).train()
    real = torch.ones(1, 41, dtype=torch.bool)
    real[0, :6] = False
    attn(torch.randn(1, 41, D), mask=key_padding_mask(real)).out.sum().backward()
    assert key_lengths and max(key_lengths) <= 8 and set(dropouts) == {0.1}


def test_long_attention_re_exports_the_objects_of_the_mechanism_files():
    """ut.nn.long_attention is one import for both mechanisms: it lists every public function and class of the two
    mechanism files, each the defining file's own object."""
    import ut.nn.local_attention as local
    import ut.nn.long_attention as long_attention
    import ut.nn.long_attention_common as common
    import ut.nn.memory_compressed_attention as compressed

    def defined(module):
        return {name for name, obj in vars(module).items()
                if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__}

    homes = {name: m for m in (local, compressed, common) for name in defined(m)} | {"COMPRESSION_ORDERS": compressed}
    internal = {"check_self_attention_call", "tokens_seen"}  # what the two mechanism files share, not an API
    assert set(homes) - internal == set(long_attention.__all__)
    for name in long_attention.__all__:
        assert getattr(long_attention, name) is getattr(homes[name], name), name
