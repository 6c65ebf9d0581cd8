"""The Mamba mixer over image tokens (one direction, or the 4-direction cross-scan).

Glossary (code name -> paper symbol; shape letters):
    B batch, L = H * W tokens, C embed_dim, D = E * C d_inner, N d_state, R dt_rank, K directions, r rank
    in_proj   W_in  (2D x C), optionally low-rank U V     x, z   the two halves of W_in u
    conv1d    causal depthwise conv over the token sequence (kernel d_conv)
    x_proj    W_x  (K(R + 2N) x D): per direction Delta_low, B_t, C_t
    dt_proj   W_Delta (K D x R) and its bias (the scan's delta_bias)
    A_log     A = -exp(A_log)  (K D x N)          D   skip term (K D)
    out_proj  W_out (C x D), optionally low-rank
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from mambalitesr.models.config import SRConfig
from mambalitesr.models.lowrank import make_projection
from mambalitesr.models.scan import selective_scan


def _in_onnx_export() -> bool:
    # torch.onnx is imported lazily and its import costs seconds (a slow first frame in the runtime);
    # when nobody has imported it, nothing is being exported.
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


def _building_graph() -> bool:
    """True while torch.jit traces or torch.onnx exports this module: the graph, not the numbers, is the output."""
    return torch.jit.is_tracing() or _in_onnx_export()


class MambaMixer(nn.Module):
    """Tokens (B, L, C) -> (B, L, C). With K = 1 its state_dict keys are those of the reference Mamba block."""

    def __init__(self, cfg: SRConfig):
        super().__init__()
        C, D, N, R, K = cfg.embed_dim, cfg.d_inner, cfg.d_state, cfg.dt_rank_, cfg.directions
        self.d_inner, self.d_state, self.dt_rank, self.directions = D, N, R, K
        self.scan_backend = "chunked"
        # "tokens": forward() as written below; "channel_major": the same math with every matmul writing the
        # layout its consumer reads (forward_graph_channel_major), what the plugin-form export traces;
        # "fused_node": the core as one call (forward_graph_fused) on the core named by core_backend
        # (models/mixer_fused.py), what the fused-form export traces
        self.graph_layout = "tokens"
        self.core_backend = "reference"
        self.in_proj = make_projection(C, 2 * D, cfg.rank)
        self.conv1d = nn.Conv1d(D, D, cfg.d_conv, groups=D, padding=cfg.d_conv - 1)
        if K == 1:
            self.x_proj = nn.Linear(D, R + 2 * N, bias=False)
            self.dt_proj = nn.Linear(R, D, bias=True)
        else:
            self.x_proj_weight = nn.Parameter(torch.empty(K, R + 2 * N, D))
            self.dt_projs_weight = nn.Parameter(torch.empty(K, D, R))
            self.dt_projs_bias = nn.Parameter(torch.empty(K, D))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(K * D, 1))
        self.D = nn.Parameter(torch.ones(K * D))
        self.out_proj = make_projection(D, C, cfg.rank)
        self._init_projections()

    @torch.no_grad()
    def _init_projections(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """Mamba's initialisation: delta starts log-uniform in [dt_min, dt_max] through the bias."""
        K, D, R = self.directions, self.d_inner, self.dt_rank
        dt = torch.exp(torch.rand(K * D) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        inv_softplus = dt + torch.log(-torch.expm1(-dt))
        std = R**-0.5
        if K == 1:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            self.dt_proj.bias.copy_(inv_softplus)
        else:
            nn.init.uniform_(self.dt_projs_weight, -std, std)
            self.dt_projs_bias.copy_(inv_softplus.view(K, D))
            nn.init.uniform_(self.x_proj_weight, -(D**-0.5), D**-0.5)

    def _projections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_x (K(R+2N), D), W_Delta (K, D, R), delta_bias (K D))."""
        if self.directions == 1:
            return self.x_proj.weight, self.dt_proj.weight.unsqueeze(0), self.dt_proj.bias
        K = self.directions
        return self.x_proj_weight.reshape(-1, self.d_inner), self.dt_projs_weight, self.dt_projs_bias.reshape(K * self.d_inner)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if self.graph_layout == "channel_major":
            return self.forward_graph_channel_major(tokens, height, width)
        if self.graph_layout == "fused_node":
            return self.forward_graph_fused(tokens, height, width)
        batch, length, _ = tokens.shape
        K, D, N, R = self.directions, self.d_inner, self.d_state, self.dt_rank
        xz = self.in_proj(tokens)  # (B, L, 2D)
        x, z = xz.transpose(1, 2).chunk(2, dim=1)  # (B, D, L) each
        x = F.silu(self.conv1d(x)[..., :length])  # causal: keep the first L outputs
        w_x, w_dt, dt_bias = self._projections()
        x_dbl = torch.matmul(w_x, x).reshape(batch, K, R + 2 * N, length)  # (B, K, R+2N, L)
        dt_low, Bm, Cm = torch.split(x_dbl, [R, N, N], dim=2)  # (B, K, R, L), (B, K, N, L) x2
        delta = torch.matmul(w_dt, dt_low).reshape(batch, K * D, length)  # (B, K D, L)
        y = self._scan(x, delta, Bm, Cm, z, dt_bias, height, width)  # (B, D, L)
        return self.out_proj(y.transpose(1, 2))  # (B, L, C)

    def _scan(self, x, delta, Bm, Cm, z, dt_bias, height: int, width: int) -> torch.Tensor:
        """The selective scan on the mixer's backend: x, z (B, D, L), delta (B, K D, L), Bm, Cm (B, K, N, L)."""
        return selective_scan(
            x, delta, -torch.exp(self.A_log.float()), Bm, Cm, self.D.float(), z, dt_bias.float(), True,
            directions=self.directions, height=height, width=width, backend=self.scan_backend,
            check=not _building_graph(),
        )  # (B, D, L)

    def forward_graph_channel_major(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``forward`` in plain torch operators laid out for a graph: tokens (B, L, C) -> (B, L, C).

        One transpose in (C rows, the narrowest tensor of the mixer) and one out; in between every matmul is
        W @ (B, in, L) and writes the (B, out, L) rows its consumer reads: x and z from the two halves of W_in
        (no split of a (B, 2D, L) tensor), the causal conv1d with its history padded on the left (no slice),
        Delta_low, B_t and C_t from one W_x GEMM, the scan on (B, D, L), W_out back to (B, C, L).
        Exported, this graph has no (B, L, 2D) <-> (B, 2D, L) transposes (the token-major graph spends about a
        quarter of its ONNX Runtime time on them). Same math as ``forward``; tests/test_models.py compares them.
        """
        batch, length, _ = tokens.shape
        K, D, N, R = self.directions, self.d_inner, self.d_state, self.dt_rank
        u = tokens.transpose(1, 2)  # (B, C, L)
        # an exported graph holds one broadcasting MatMul node per projection; eager runs write (B, out, L) in place
        mm = torch.matmul if _building_graph() else _left_matmul
        if hasattr(self.in_proj, "down"):  # W_in = U V: V u once, then U's two row blocks
            u, w_in = mm(self.in_proj.down.weight, u), self.in_proj.up.weight  # (B, r, L), (2D, r)
        else:
            w_in = self.in_proj.weight  # (2D, C)
        x = mm(w_in[:D], u)  # (B, D, L)
        z = mm(w_in[D:], u)  # (B, D, L)
        kc = self.conv1d.kernel_size[0]
        x = F.silu(F.conv1d(F.pad(x, (kc - 1, 0)), self.conv1d.weight, self.conv1d.bias, groups=D))  # (B, D, L)
        w_x, w_dt, dt_bias = self._projections()
        # one GEMM reads x' once; splitting its narrow (R + 2N) rows costs less than reading x' three times
        # (measured in ONNX Runtime: 3-8 % of the frame)
        x_dbl = mm(w_x.reshape(K * (R + 2 * N), D), x).reshape(batch, K, R + 2 * N, length)
        dt_low, Bm, Cm = torch.split(x_dbl, [R, N, N], dim=2)  # (B, K, R, L), (B, K, N, L) x2
        # not folded into one (K D, D) W_Delta W_x,low: measured slower in ONNX Runtime (D^2 MACs for R = 2)
        delta = torch.matmul(w_dt, dt_low).reshape(batch, K * D, length)  # (B, K D, L): a batched GEMM, no copy
        y = self._scan(x, delta, Bm, Cm, z, dt_bias, height, width)  # (B, D, L)
        if hasattr(self.out_proj, "down"):
            y = mm(self.out_proj.up.weight, mm(self.out_proj.down.weight, y))  # (B, C, L)
        else:
            y = mm(self.out_proj.weight, y)  # (B, C, L)
        return y.transpose(1, 2)  # (B, L, C)

    def forward_graph_fused(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``forward`` with the core as one call (K = 1): tokens (B, L, C) -> (B, L, C).

        A low-rank W_in's thin V and W_out's thin U stay outside the core (as in forward_channel_major): the
        core reads the r rows of V u and writes the r rows U reads. The core is the one registered under
        ``core_backend`` (models/mixer_fused.py): the torch reference by default, export's ONNX node while
        exporting the fused form. Same math as ``forward``; tests/test_models.py compares them.
        """
        from mambalitesr.models.mixer_fused import fused_core

        if self.directions != 1:
            raise ValueError("the fused mixer core scans one direction; this mixer has the 4-direction cross-scan")
        u = tokens.transpose(1, 2)  # (B, C, L)
        if hasattr(self.in_proj, "down"):
            a, w_in = torch.matmul(self.in_proj.down.weight, u), self.in_proj.up.weight  # (B, r, L), (2D, r)
        else:
            a, w_in = u, self.in_proj.weight  # (B, C, L), (2D, C)
        low_out = hasattr(self.out_proj, "down")
        w_out = self.out_proj.down.weight if low_out else self.out_proj.weight  # (r, D) or (C, D)
        w_x, w_dt, dt_bias = self._projections()
        y = fused_core(self.core_backend)(
            a, w_in, self.conv1d.weight.reshape(self.d_inner, -1), self.conv1d.bias, w_x, w_dt[0], dt_bias,
            -torch.exp(self.A_log.float()), self.D.float(), w_out, height=height, width=width,
        )  # (B, r, L) or (B, C, L)
        if low_out:
            y = torch.matmul(self.out_proj.up.weight, y)  # (B, C, L)
        return y.transpose(1, 2)  # (B, L, C)

    def forward_channel_major(self, tokens_cm: torch.Tensor, fuse_projections: bool | None = None) -> torch.Tensor:
        """Inference on channel-major tokens (B, C, L) -> (B, C, L) with the fused C core (K = 1 only).

        Every matmul writes the layout its consumer reads: W_in @ (C, L) gives the (2D, L) rows the C
        kernel takes as x and z, and W_out @ (D, L) gives (C, L) again. With ``fuse_projections`` (the
        default: measured faster for the low-rank student and the full-rank teacher alike) the kernel also
        applies W_in (a low-rank in_proj's U) and W_out (a low-rank out_proj's V) block by block, so the
        (2D, L) and (D, L) intermediates stay in cache; torch keeps a low-rank pair's thin V in and U out.
        Same math as ``forward`` (its reference twin; tests/test_mixer_native.py).
        """
        from mambalitesr.models.mixer_native import mixer_core

        if self.directions != 1:
            raise ValueError("the fused mixer core scans one direction; use forward() for the cross-scan")
        low_in, low_out = hasattr(self.in_proj, "down"), hasattr(self.out_proj, "down")
        fuse = fuse_projections is not False
        w_x, w_dt, dt_bias = self._projections()
        core = dict(conv_w=self.conv1d.weight.reshape(self.d_inner, -1), conv_b=self.conv1d.bias, w_x=w_x,
                    w_dt=w_dt.reshape(self.d_inner, self.dt_rank), dt_bias=dt_bias, A=-torch.exp(self.A_log.float()),
                    Dskip=self.D, dstate=self.d_state)
        if not fuse:
            xz = _project_cm(self.in_proj, tokens_cm)  # (B, 2D, L)
            return _project_cm(self.out_proj, mixer_core(xz, **core))  # (B, D, L) -> (B, C, L)
        if low_in:  # kernel input a = V u (B, r, L), the kernel forms U a
            a, w_in = _left_matmul(self.in_proj.down.weight, tokens_cm), self.in_proj.up.weight
        else:
            a, w_in = tokens_cm.contiguous(), self.in_proj.weight
        w_out = self.out_proj.down.weight if low_out else self.out_proj.weight  # (r, D) or (C, D)
        y = mixer_core(a, w_in=w_in, w_out=w_out, **core)  # (B, r, L) or (B, C, L)
        return _left_matmul(self.out_proj.up.weight, y) if low_out else y


def _project_cm(proj: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A bias-free projection applied to channel-major (B, in, L): W @ x -> (B, out, L), contiguous."""
    if hasattr(proj, "down"):  # LowRankLinear: U (V x)
        return _left_matmul(proj.up.weight, _left_matmul(proj.down.weight, x))
    return _left_matmul(proj.weight, x)


def _left_matmul(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(out, in) @ (B, in, L) -> (B, out, L) written in place by one GEMM per batch. Not torch.matmul: it
    folds the batch into the 2D operand's other side and copies the whole (B, out, L) result back."""
    if x.shape[0] == 1:
        return torch.mm(w, x[0]).unsqueeze(0)
    return torch.bmm(w.expand(x.shape[0], -1, -1), x)
