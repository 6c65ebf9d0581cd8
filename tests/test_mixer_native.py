"""The fused C mixer core and the channel-major network path against their PyTorch reference twins.

The twins: ``MambaMixer.forward`` (token-major, the "ref" and "chunked" scans), ``nn.LayerNorm`` and
``MambaSR.forward_features``. fp32 at the tolerance every fast path is held to (rtol 1e-5 with the
max-scaled floor of ``assert_close``), plus the shipped student on real pixels within 1e-5.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mambalitesr.errors import MissingDependency
from mambalitesr.models import mixer_native
from mambalitesr.models.config import SRConfig
from mambalitesr.models.mixer import MambaMixer
from mambalitesr.models.network import MambaSR
from mambalitesr.models.registry import create_model
from mambalitesr.testing import assert_close

try:
    mixer_native.load_library()
    _NOT_BUILT = None
except MissingDependency as exc:
    _NOT_BUILT = str(exc)
needs_native = pytest.mark.skipif(_NOT_BUILT is not None, reason=f"{_NOT_BUILT}")
X86_WIDTHS = platform.machine() in ("x86_64", "AMD64")  # x86-64 builds have every width; others only 4 lanes


@pytest.fixture(params=[4, 8, 16], ids=lambda w: f"w{w}")
def width(request):
    """Each vector width the kernel is built with. On x86-64 all three run on any CPU: a width wider than the
    CPU's registers runs its baseline clone (slow, the same arithmetic), so the 16-lane code is checked where no
    AVX-512 is; the CPU's widest stays the default (test_the_default_width_is_the_cpus_widest)."""
    if _NOT_BUILT is not None:
        pytest.skip(_NOT_BUILT)
    if request.param != 4 and not X86_WIDTHS:
        pytest.skip(f"{platform.machine()} builds the 4-lane kernels only (NEON's 128-bit registers)")
    assert mixer_native.use_width(request.param)
    assert mixer_native.vector_width() == request.param
    yield request.param
    assert mixer_native.use_width(0)


def _cpu_widest() -> int:
    """The widest width from the CPU's flags, read independently of the kernel's own check."""
    if not X86_WIDTHS:
        return 4
    flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags:
        return 16
    return 8 if {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"} <= flags else 4


def trained_like(mixer: MambaMixer, seed: int) -> MambaMixer:
    """Randomise every parameter away from its initial value (A_log, D, conv, biases), as training does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in mixer.named_parameters():
            if name == "A_log":
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
            else:
                p.copy_(p + torch.randn(p.shape, generator=g) * 0.2)
    return mixer


def reference(mixer: MambaMixer, tokens_cm: torch.Tensor, backend: str) -> torch.Tensor:
    mixer.scan_backend = backend
    length = tokens_cm.shape[-1]
    return mixer(tokens_cm.transpose(1, 2), 1, length).transpose(1, 2)  # (B, C, L)


@needs_native
@pytest.mark.parametrize("fuse", [False, True], ids=["torch-projections", "kernel-projections"])
@pytest.mark.parametrize(
    "embed,d_state,rank,d_conv,length,batch",
    [
        (8, 4, 4, 4, 1, 1),  # one token: every conv tap but the last reads the zero padding
        (8, 4, 4, 4, 63, 2),  # one partial tile
        (8, 16, None, 3, 200, 1),  # full-rank projections, d_conv 3, tiles plus a tail
        (16, 16, 8, 4, 1024 + 64 * 3 + 5, 2),  # a whole block, then a partial block with a partial tile
        (8, 4, 4, 4, 2048 + 3, 1),  # three blocks: the conv history carried across two block edges
        (12, 20, None, 4, 300, 1),  # N = 20: two state vectors, 12 padding lanes
        (60, 16, None, 4, 2100, 1),  # the teacher's width
    ],
)
def test_mixer_core_matches_reference(embed, d_state, rank, d_conv, length, batch, fuse, width):
    cfg = SRConfig(embed_dim=embed, d_state=d_state, rank=rank, d_conv=d_conv, groups=1, mixers=1)
    mixer = trained_like(MambaMixer(cfg), seed=length)
    tokens = torch.randn(batch, embed, length, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused = mixer.forward_channel_major(tokens, fuse_projections=fuse)
        ref = reference(mixer, tokens, "ref" if length <= 300 else "chunked")
    assert fused.shape == ref.shape
    assert_close(fused, ref, what="mixer out")


@needs_native
@pytest.mark.parametrize("fuse", [False, True])
def test_mixer_core_same_result_for_every_thread_count(fuse):
    cfg = SRConfig(embed_dim=16, d_state=16, rank=8, groups=1, mixers=1)
    mixer = trained_like(MambaMixer(cfg), seed=3)
    tokens = torch.randn(1, 16, 3000, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            with torch.no_grad():
                outs.append(mixer.forward_channel_major(tokens, fuse_projections=fuse))
    finally:
        torch.set_num_threads(threads)
    for o in outs[1:]:
        assert torch.equal(o, outs[0])


@needs_native
def test_mixer_core_rejects_cross_scan():
    mixer = MambaMixer(SRConfig(embed_dim=8, d_state=4, directions=4, groups=1, mixers=1))
    with pytest.raises(ValueError, match="one direction"):
        mixer.forward_channel_major(torch.zeros(1, 8, 4))


@needs_native
@pytest.mark.parametrize("channels,length", [(32, 64 * 5), (60, 1000), (8, 7)])
def test_channel_layernorm_matches_torch(channels, length, width):
    ln = nn.LayerNorm(channels)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, channels, length) * 3 + 1
    with torch.no_grad():
        ref = ln(x.transpose(1, 2)).transpose(1, 2)
    got = mixer_native.channel_layernorm(x, ln.weight, ln.bias, ln.eps)
    assert_close(got, ref, what="layernorm")


@needs_native
@pytest.mark.parametrize("name", ["test_x4", "mambalitesr_x4"])
def test_network_fused_path_matches_token_path(name, width):
    model = create_model(name, scan_backend="native", pretrained=name == "mambalitesr_x4")
    x = torch.rand(1, 3, 23, 37, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert model.uses_fused_path(x)
        fused = model(x)
        model.set_scan_backend("chunked")
        assert not model.uses_fused_path(x)
        ref = model(x)
    assert_close(fused, ref, what=f"{name} SR")
    assert (fused - ref).abs().max().item() <= 1e-5  # the shipped outputs are unchanged within 1e-5


@needs_native
def test_the_default_width_is_the_cpus_widest():
    widest = _cpu_widest()
    assert mixer_native.use_width(0) and mixer_native.vector_width() == widest
    assert not mixer_native.use_width(5) and mixer_native.vector_width() == widest  # refused: nothing changed
    probe = "from mambalitesr.models import mixer_native as m; print(m.vector_width())"
    for env, want in (({"MAMBALITESR_MIXER_WIDTH": "4"}, 4), ({}, widest), ({"MAMBALITESR_MIXER_WIDTH": "7"}, widest)):
        got = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True, text=True,
                             check=True).stdout.strip()
        assert got == str(want), (env, got)


@needs_native
def test_fused_path_only_for_inference():
    model = MambaSR(SRConfig(embed_dim=8, groups=1, mixers=1, d_state=4, rank=4)).set_scan_backend("native")
    x = torch.rand(1, 3, 8, 8)
    assert not model.uses_fused_path(x)  # autograd on: the token path (differentiable native scan)
    with torch.no_grad():
        assert model.uses_fused_path(x)
        assert not model.uses_fused_path(x.double())


@needs_native
@pytest.mark.parametrize("softplus,with_dz", [(True, True), (False, False)])
@pytest.mark.parametrize("dim,n,length,batch", [(8, 4, 1, 1), (16, 16, 1024 + 70, 2), (12, 20, 300, 1)])
def test_channel_major_scan_matches_reference(dim, n, length, batch, softplus, with_dz, width):
    """The scan-only entry (numpy, no torch inside) against the sequential oracle."""
    from mambalitesr.models.scan_ref import selective_scan_ref

    g = torch.Generator().manual_seed(dim + length)
    u, z = torch.randn(batch, dim, length, generator=g), torch.randn(batch, dim, length, generator=g)
    delta = torch.rand(batch, dim, length, generator=g) * 2 - 1 if softplus else torch.rand(batch, dim, length,
                                                                                           generator=g) * 0.5
    A = -torch.rand(dim, n, generator=g) * 2 - 0.05
    B, C = torch.randn(batch, n, length, generator=g), torch.randn(batch, n, length, generator=g)
    D, bias = torch.randn(dim, generator=g), torch.randn(dim, generator=g) * 0.5
    extra = (D, z, bias) if with_dz else (None, None, None)
    ref = selective_scan_ref(u, delta, A, B, C, *extra, softplus)
    got = mixer_native.selective_scan_channel_major(*(t.numpy() if t is not None else None
                                                      for t in (u, delta, A, B, C, *extra)), delta_softplus=softplus)
    assert_close(got, ref.numpy(), what="y")


@needs_native
def test_long_memory_decays_stay_exact(width):
    """Decays exp(Delta A) a hair below 1 over thousands of tokens: an exp whose error at 0 is not 0 compounds
    here (a polynomial with p(0) = 1 + 1.2e-7 put the teacher's output 1.5e-4 off float64)."""
    from mambalitesr.models.scan_ref import selective_scan_ref

    g = torch.Generator().manual_seed(7)
    batch, dim, n, length = 1, 8, 16, 6000
    u = torch.randn(batch, dim, length, generator=g, dtype=torch.float64)
    delta = torch.full((batch, dim, length), -7.0, dtype=torch.float64)  # softplus(-7) ~ 9e-4
    A = -torch.rand(dim, n, generator=g, dtype=torch.float64) * 0.5 - 0.01  # |Delta A| ~ 1e-5 .. 5e-4
    B, C = (torch.randn(batch, n, length, generator=g, dtype=torch.float64) for _ in range(2))
    ref = selective_scan_ref(u, delta, A, B, C, None, None, None, True).numpy()  # float64 oracle
    fp32 = selective_scan_ref(*(t.float() for t in (u, delta, A, B, C)), None, None, None, True).numpy()
    got = mixer_native.selective_scan_channel_major(*(t.float().numpy() for t in (u, delta, A, B, C)),
                                                    delta_softplus=True)
    # fp32 itself drifts over such memories (8e-5 of max|y| here): the kernel may not drift more than it
    err, err_fp32 = np.abs(got - ref).max(), np.abs(fp32 - ref).max()
    assert err <= 1.5 * err_fp32, f"kernel {err:.3g} from float64, torch fp32 {err_fp32:.3g}"
