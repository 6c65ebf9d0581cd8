"""The one-direction mixer core as one ``mambalitesr::MambaMixer`` ONNX node per mixer (the fused form).

Glossary (code name -> paper symbol; shape letters): as models/mixer_fused.py
    B batch, D d_inner, N d_state, R dt_rank, Kc d_conv, H x W token grid, L = H * W, Ci / Co the core's
    input / output channels; a -> V u (or u), w_in -> U (or W_in), conv_w / conv_b -> conv1d,
    w_x -> W_x, w_dt -> W_Delta, dt_bias -> its bias, A -> A = -exp(A_log), Dskip -> D, w_out -> V of W_out (or W_out)

Node contract (ONNX Runtime's native CPU kernel, runtime/csrc/ort_mamba_mixer.c):
    op type MambaMixer, domain mambalitesr, opset version 1, no attributes (the weights' shapes say D, N, R, Kc)
    inputs  a (B, Ci, H, W), w_in (2D, Ci), conv_w (D, Kc), conv_b (D,), w_x (R + 2N, D), w_dt (D, R),
            dt_bias (D,), A (D, N), Dskip (D,), w_out (Co, D)
    output  y (B, Co, H, W) = w_out ((<C_t, h_t> + D x'_t) * SiLU(z_t)), tokens row-major over H x W

It equals :func:`mambalitesr.models.mixer_fused.fused_core_reference` reshaped to (B, Co, H, W).

Why a second form beside the plugin form's SelectiveScan: in ONNX Runtime on a CPU the standard operators around
the scan (the grouped causal conv1d, its SiLU, the R = 2 W_Delta MatMul, the split of W_x's rows, W_in's and
W_out's wide MatMuls) cost as much again as the scan; the C core runs them block by block in cache, as the
torch backend does. TensorRT has no plugin for this node, so the fused form is for ONNX Runtime's CPU provider;
the plugin form stays the one for TensorRT and the one shipped.

:func:`fused_mixer_nodes` puts every mixer on the node for the duration of an export, by selecting the core
this module registers (``register_core``, by name) and the mixers' "fused_node" graph layout; run eagerly, the
core computes on the torch reference, so the model stays the verification reference.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from mambalitesr.errors import UserError
from mambalitesr.models.mixer import MambaMixer
from mambalitesr.models.mixer_fused import NODE_INPUTS, fused_core_reference, register_core

NODE_DOMAIN = "mambalitesr"
NODE_OP_TYPE = "MambaMixer"
NODE_OPSET_VERSION = 1
NODE_CORE = "onnx_mixer_node"  # the registered core the mixers select while fused_mixer_nodes() is active
INPUT_RANKS = (4, 2, 2, 1, 2, 2, 1, 2, 1, 2)
assert len(INPUT_RANKS) == len(NODE_INPUTS)


def emit_mixer_node(a, w_in, conv_w, conv_b, w_x, w_dt, dt_bias, A, Dskip, w_out, *, height, width) -> torch.Tensor:
    """The ONNX node for one mixer core; inputs as fused_core_reference takes them (a (B, Ci, L)) -> (B, Co, L)."""
    batch = a.shape[0]
    y = torch.onnx.ops.symbolic(
        f"{NODE_DOMAIN}::{NODE_OP_TYPE}",
        [a.reshape(batch, a.shape[1], height, width)] + [t.float() for t in
                                                         (w_in, conv_w, conv_b, w_x, w_dt, dt_bias, A, Dskip, w_out)],
        {},
        dtype=a.dtype,
        shape=(batch, w_out.shape[0], height, width),
        version=NODE_OPSET_VERSION,
    )  # (B, Co, H, W)
    return y.flatten(2)  # (B, Co, L)


def _node_core(*inputs, height, width):
    if torch.onnx.is_in_onnx_export():
        return emit_mixer_node(*inputs, height=height, width=width)
    return fused_core_reference(*inputs, height=height, width=width)


@contextmanager
def fused_mixer_nodes(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, every mixer of ``model`` exports its core as one MambaMixer node (restored on exit)."""
    mixers = [m for m in model.modules() if isinstance(m, MambaMixer)]
    if not mixers:
        raise ValueError("the model has no Mamba mixers to put on the MambaMixer node")
    if any(m.directions != 1 for m in mixers):
        raise UserError("the fused form runs one-direction mixers; this model has the 4-direction cross-scan: "
                        "export it with --scan plugin")
    register_core(NODE_CORE, _node_core)
    saved = [(m.core_backend, m.graph_layout) for m in mixers]
    try:
        for m in mixers:
            m.core_backend, m.graph_layout = NODE_CORE, "fused_node"
        yield model
    finally:
        for m, (core, layout) in zip(mixers, saved):
            m.core_backend, m.graph_layout = core, layout
