"""The selective scan as one ``mambalitesr::SelectiveScan`` ONNX node per mixer (the plugin form).

Glossary (code name -> paper symbol; shape letters):
    B batch, D scan channels (d_inner), K directions, N d_state, H x W token grid, L = H * W
    u -> x_t, delta -> Delta_t (raw, before delta_bias and softplus), A -> A = -exp(A_log),
    Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate, delta_bias -> the bias of W_Delta

Node contract (shared with the TensorRT plugin in export/plugins/selective_scan):
    op type SelectiveScan, domain mambalitesr, opset version 1
    inputs  u (B, D, H, W), delta (B, K*D, H, W), A (K*D, N), Bm (B, K, N, H, W), Cm (B, K, N, H, W),
            Dskip (K*D,), z (B, D, H, W), delta_bias (K*D,)
    attrs   directions (1 or 4), d_state (N), delta_softplus (0 / 1)
    output  y (B, D, H, W), tokens row-major over H x W

It equals :func:`mambalitesr.models.scan.selective_scan` on the flattened tensors, reshaped to (B, D, H, W).

:func:`plugin_scan` puts the mixers on that node for the duration of an export, by selecting the scan
backend this module registers (``register_backend``, by name): while
``torch.onnx.export`` (the dynamo exporter) traces, each mixer's scan becomes
``torch.onnx.ops.symbolic(...)``; run eagerly, it computes the real result on the eager backend
(the chunked scan by default), so the model stays usable as the verification reference.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from mambalitesr.models.mixer import MambaMixer
from mambalitesr.models.scan import register_backend, selective_scan

PLUGIN_DOMAIN = "mambalitesr"
PLUGIN_OP_TYPE = "SelectiveScan"
PLUGIN_OPSET_VERSION = 1
PLUGIN_BACKEND = "onnx_plugin"  # the registered scan backend the mixers select while plugin_scan() is active
INPUT_NAMES = ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias")
INPUT_RANKS = (4, 4, 2, 5, 5, 1, 4, 1)
ATTRIBUTES = ("directions", "d_state", "delta_softplus")


def emit_scan_node(u, delta, A, Bm, Cm, Dskip, z, delta_bias, delta_softplus: bool, *,
                   directions: int, height, width) -> torch.Tensor:
    """The ONNX node for one scan; inputs as :func:`selective_scan` takes them, returns y (B, D, L).

    u (B, D, L), delta (B, K*D, L), A (K*D, N), Bm / Cm (B, K, N, L) (or (B, N, L) when K = 1),
    Dskip (K*D,), z (B, D, L), delta_bias (K*D,).
    """
    batch, channels, _ = u.shape
    n_state = A.shape[-1]
    if Bm.dim() == 3:  # one direction given ungrouped: the node always takes (B, K, N, H, W)
        Bm, Cm = Bm.unsqueeze(1), Cm.unsqueeze(1)
    if Dskip is None or z is None or delta_bias is None:
        raise ValueError("the SelectiveScan node needs Dskip, z and delta_bias (the mixer always has them)")

    def grid(t: torch.Tensor) -> torch.Tensor:  # (..., L) -> (..., H, W), row-major
        return t.reshape(*t.shape[:-1], height, width)

    y = torch.onnx.ops.symbolic(
        f"{PLUGIN_DOMAIN}::{PLUGIN_OP_TYPE}",
        [grid(u), grid(delta), A.float(), grid(Bm), grid(Cm), Dskip.float(), grid(z), delta_bias.float()],
        {"directions": int(directions), "d_state": int(n_state), "delta_softplus": int(bool(delta_softplus))},
        dtype=u.dtype,
        shape=(batch, channels, height, width),
        version=PLUGIN_OPSET_VERSION,
    )  # (B, D, H, W)
    return y.flatten(2)  # (B, D, L)


def _plugin_backend(eager_backend: str):
    """The scan of PLUGIN_BACKEND mixers: the node while exporting, ``eager_backend`` when run eagerly."""

    def scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *,
             directions=1, height=None, width=None):
        if torch.onnx.is_in_onnx_export():
            if height is None or width is None:  # K = 1 mixers get the grid too; the node needs it
                raise ValueError("the SelectiveScan node needs the token grid (height, width)")
            return emit_scan_node(u, delta, A, B, C, D, z, delta_bias, delta_softplus, directions=directions,
                                  height=height, width=width)
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, directions=directions,
                              height=height, width=width, backend=eager_backend, check=False)  # checked once already

    return scan


def plugin_backend_name(eager_backend: str = "chunked") -> str:
    """The registered scan-backend name that emits the node and computes eagerly on ``eager_backend``."""
    name = PLUGIN_BACKEND if eager_backend == "chunked" else f"{PLUGIN_BACKEND}+{eager_backend}"
    register_backend(name, _plugin_backend(eager_backend))
    return name


@contextmanager
def plugin_scan(model: torch.nn.Module, eager_backend: str = "chunked") -> Iterator[torch.nn.Module]:
    """Within the block, every mixer of ``model`` exports its scan as one SelectiveScan node.

    The mixers select the registered plugin scan backend by name (no module's functions are replaced) and
    their channel-major graph layout; outside an export they compute on ``eager_backend``. Both are restored
    on exit.
    """
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    if not mixers:
        raise ValueError("the model has no Mamba mixers to put on the SelectiveScan node")
    saved = [(m.scan_backend, m.graph_layout) for m in mixers]
    name = plugin_backend_name(eager_backend)
    try:
        for m in mixers:
            m.scan_backend = name
            m.graph_layout = "channel_major"  # the node's (B, D, H, W) tensors without transposes around them
        yield model
    finally:
        for m, (backend, layout) in zip(mixers, saved):
            m.scan_backend, m.graph_layout = backend, layout
