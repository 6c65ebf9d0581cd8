"""ONNX export of a MambaLiteSR network, verified in ONNX Runtime before the file appears.

Glossary (code name -> meaning / paper symbol):
    lr, sr        the graph's input (B, 3, h, w) RGB in [0, 1] and output (B, 3, s h, s w), not clamped
    s (scale)     upscaling factor;  h x w the input grid (L = h w tokens per mixer)
    scan form     "portable": the two-level chunked scan as standard ONNX operators (no Loop, Scan,
                  Einsum or CumSum; static chunk shapes, so fixed input sizes only);
                  "plugin": one ``mambalitesr::SelectiveScan`` node per mixer (see onnx_plugin_scan),
                  for the TensorRT plugin or an ONNX Runtime kernel (the runtime's, found by entry point);
                  "fused": one ``mambalitesr::MambaMixer`` node per one-direction mixer (see onnx_mixer_node),
                  the whole mixer core on the runtime's native ONNX Runtime CPU kernel (not TensorRT)
    opset         ONNX default-domain opset (17 or newer; LayerNormalization needs 17)

``export_onnx`` builds the model, exports it with the dynamo exporter, checks the graph (onnx.checker,
strict shape inference, the scan-form invariants), runs it in ONNX Runtime against PyTorch on a real
image or a deterministic test pattern, and only then renames the file into place. A max absolute
error over ``TOLERANCE`` (fp32) fails the export and leaves no file.

A plugin- or fused-form graph runs in ONNX Runtime only with kernels for its custom nodes. Those kernels
live with the runtime that runs them; export does not import the runtime (the layers are independent)
but asks the installed package's ``mambalitesr.onnxruntime_kernels`` entry points (see setup.py) for
functions that add kernels to ORT SessionOptions, as ORT itself loads a custom-op library by path.
"""
from __future__ import annotations

import logging
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mambalitesr import __version__
from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.optional import require

SCAN_FORMS = ("portable", "plugin", "fused")
DYNAMIC_FORMS = ("plugin", "fused")  # forms whose graph does not depend on the traced size
_TRACE_HINT = {"plugin": ", under a minute on an idle 2-core CPU", "fused": ", under a minute on an idle 2-core CPU",
               "portable": ", minutes at 320x180"}
KERNEL_ENTRY_POINTS = "mambalitesr.onnxruntime_kernels"  # name -> f(SessionOptions) registering custom-op kernels
DEFAULT_HW = (180, 320)  # 720p output at x4: the Jetson camera path's frame
# A dynamic export's graph does not depend on the size it is traced at, so without a verify image it traces
# and checks at a small one: the PyTorch reference (the chunked scan) at 2x3x180x320 took 4 GB and most of
# the export's time.
DYNAMIC_CHECK_HW = (64, 96)
TOLERANCE = 1e-4  # max |ORT - PyTorch| for fp32
MIN_OPSET, MAX_OPSET = 17, 23
EXPORTER_OPSET = 18  # what torch's dynamo exporter writes natively
FORBIDDEN_PORTABLE_OPS = ("Loop", "Scan", "Einsum", "CumSum")  # TensorRT: slow, or wrong with several CumSums
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
METADATA_KEYS = ("model", "config", "weights", "weights_sha256", "scale", "scan", "dynamic", "mambalitesr_version")


class VerificationError(UserError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass
class ExportReport:
    path: Path
    scan: str
    opset: int
    input_shape: tuple  # (B, 3, h, w) of the check; symbolic dims in the file when dynamic
    export_seconds: float  # wall clock
    verify_seconds: float
    export_cpu_seconds: float  # process CPU time (all threads): comparable on a busy machine
    max_abs_error: float
    checks: list[tuple[tuple, float]] = field(default_factory=list)  # (input shape, max abs error) per run
    node_counts: dict[str, int] = field(default_factory=dict)  # "domain::op" or "op" -> count

    @property
    def nodes(self) -> int:
        return sum(self.node_counts.values())


# ---------------------------------------------------------------- graph walking and checks


def iter_nodes(model):
    """Every node of the model: main graph, subgraphs (If/Loop/Scan bodies) and local functions."""
    import onnx

    def walk(nodes):
        for node in nodes:
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g.node)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        yield from walk(g.node)

    yield from walk(model.graph.node)
    for fn in model.functions:
        yield from walk(fn.node)


def node_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in iter_nodes(model):
        key = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def check_scan_form(model, scan: str, n_mixers: int, directions: int, d_state: int) -> None:
    """Raise VerificationError when the graph breaks its scan form's invariants."""
    from mambalitesr.export.onnx_plugin_scan import INPUT_RANKS, PLUGIN_DOMAIN, PLUGIN_OP_TYPE

    if scan == "fused":
        _check_fused_form(model, n_mixers)
        return
    nodes = list(iter_nodes(model))
    custom = [n for n in nodes if n.domain not in ("", "ai.onnx")]
    if scan == "portable":
        bad = sorted({n.op_type for n in nodes if n.op_type in FORBIDDEN_PORTABLE_OPS})
        if bad or custom:
            found = bad + sorted({f"{n.domain}::{n.op_type}" for n in custom})
            raise VerificationError(f"portable graph holds {', '.join(found)}; it must use standard operators "
                                    f"without {', '.join(FORBIDDEN_PORTABLE_OPS)}")
        return
    scans = [n for n in custom if (n.domain, n.op_type) == (PLUGIN_DOMAIN, PLUGIN_OP_TYPE)]
    if len(scans) != len(custom) or len(scans) != n_mixers:
        raise VerificationError(f"plugin graph has {len(scans)} {PLUGIN_DOMAIN}::{PLUGIN_OP_TYPE} nodes (and "
                                f"{len(custom) - len(scans)} other custom nodes); expected one per mixer, {n_mixers}")
    ranks = _value_ranks(model)
    want_attrs = {"directions": directions, "d_state": d_state, "delta_softplus": 1}
    for n in scans:
        attrs = {a.name: a.i for a in n.attribute}
        if attrs != want_attrs:
            raise VerificationError(f"SelectiveScan node {n.name} has attributes {attrs}; expected {want_attrs}")
        got = tuple(ranks.get(name) for name in n.input)
        if len(n.input) != len(INPUT_RANKS) or got != INPUT_RANKS:
            raise VerificationError(f"SelectiveScan node {n.name} has input ranks {got}; expected {INPUT_RANKS}")


def _check_fused_form(model, n_mixers: int) -> None:
    from mambalitesr.export import onnx_mixer_node as node

    custom = [n for n in iter_nodes(model) if n.domain not in ("", "ai.onnx")]
    mixers = [n for n in custom if (n.domain, n.op_type) == (node.NODE_DOMAIN, node.NODE_OP_TYPE)]
    if len(mixers) != len(custom) or len(mixers) != n_mixers:
        raise VerificationError(f"fused graph has {len(mixers)} {node.NODE_DOMAIN}::{node.NODE_OP_TYPE} nodes (and "
                                f"{len(custom) - len(mixers)} other custom nodes); expected one per mixer, {n_mixers}")
    ranks = _value_ranks(model)
    for n in mixers:
        got = tuple(ranks.get(name) for name in n.input)
        if list(n.attribute) or got != node.INPUT_RANKS:
            raise VerificationError(f"MambaMixer node {n.name} has input ranks {got} and {len(n.attribute)} "
                                    f"attributes; expected {node.INPUT_RANKS} and none")


def _value_ranks(model) -> dict[str, int]:
    return {name: len(d) for name, d in _static_dims(model).items()}


def opset_of(model) -> int:
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))


def downgrade_18_to_17(model) -> None:
    """Rewrite an opset-18 graph as opset 17 in place, where every node can mean the same in both.

    onnx's version converter has no Pad 18 -> 17 adapter. A Pad without the ``axes`` input (18's only
    addition) is its opset-13 form already; a Split with ``num_outputs`` (new in 18) becomes a Split with
    explicit sizes when the split axis has a static size. Any other operator that changed in opset 18
    is refused rather than guessed.
    """
    import onnx
    from onnx import helper, numpy_helper

    dims = _static_dims(model)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if onnx.defs.get_schema(node.op_type, 17).since_version == onnx.defs.get_schema(node.op_type, 18).since_version:
            continue
        if node.op_type == "Pad" and (len(node.input) < 4 or not node.input[3]):
            continue
        if node.op_type == "Split":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            parts = attrs.get("num_outputs")
            if parts is None:
                continue
            axis = attrs.get("axis", 0)
            shape = dims.get(node.input[0])
            size = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
            if size is not None and size > 0:
                step = -(-size // parts)  # opset 18: equal parts, the last one smaller
                sizes = [min(step, size - k * step) for k in range(parts)]
                name = f"{node.output[0]}__split_sizes"
                model.graph.initializer.append(numpy_helper.from_array(np.array(sizes, dtype=np.int64), name))
                del node.input[1:]
                node.input.append(name)
                kept = [a for a in node.attribute if a.name != "num_outputs"]
                del node.attribute[:]
                node.attribute.extend(kept)
                continue
        raise UserError(f"the exported graph uses {node.op_type} in its opset-18 form, which opset 17 cannot "
                        "express here; export with --opset 18")
    if any(fn.node for fn in model.functions):
        raise UserError("the exported graph keeps local functions; export with --opset 18")
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = 17


def _static_dims(model) -> dict[str, list]:
    """Value name -> its dims (int, or None where symbolic) from ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in inferred.graph.initializer:
        out[init.name] = list(init.dims)
    return out


# ---------------------------------------------------------------- inputs


def test_pattern(height: int, width: int) -> np.ndarray:
    """A deterministic RGB uint8 (h, w, 3) image with smooth ramps, fine stripes, rings and hard edges."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    ny, nx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    r = np.hypot(ny - 0.5, nx - 0.5)
    red = nx
    green = 0.5 + 0.5 * np.sin(2 * np.pi * (6 * r + 0.25 * np.sin(9 * ny)))
    blue = np.where(((yy // 4 + xx // 4) % 2 == 0) ^ (nx > 0.5), 0.85, 0.15) * (1 - 0.5 * ny)
    rgb = np.stack([red, green, blue], axis=-1)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def to_input(rgb: np.ndarray, batch: int = 1) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> float32 (B, 3, h, w) in [0, 1]."""
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    return np.repeat(x, batch, axis=0)


def _verify_rgb(verify_image, height: int | None, width: int | None, log) -> np.ndarray:
    if verify_image is None:
        return test_pattern(height or DEFAULT_HW[0], width or DEFAULT_HW[1])
    import cv2

    from mambalitesr.imageio import read_image

    rgb = read_image(verify_image)
    if height is not None and rgb.shape[:2] != (height, width):
        log(f"verify image {verify_image} is {rgb.shape[1]}x{rgb.shape[0]}; "
            f"area-resized to the export size {width}x{height}")
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return rgb


# ---------------------------------------------------------------- export


def n_tokens(hw) -> int:
    """L = h * w, the tokens one mixer scans."""
    return int(hw[0]) * int(hw[1])


def _validate_args(scan, height, width, dynamic, opset) -> None:
    if scan not in SCAN_FORMS:
        raise UserError(f"unknown scan form {scan!r}; choose one of {', '.join(SCAN_FORMS)}")
    if dynamic and (height is not None or width is not None):
        raise UserError("--dynamic exports symbolic batch, height and width: do not give --height/--width with it")
    if (height is None) != (width is None):
        raise UserError("give both --height and --width, or neither")
    if height is not None and (height < 1 or width < 1):
        raise UserError(f"--height and --width must be positive, got {height} x {width}")
    if dynamic and scan not in DYNAMIC_FORMS:
        raise UserError(
            "the portable scan form supports fixed input sizes only: its chunked scan pads the token sequence "
            "to a static multiple of the chunk and takes log2(chunks) doubling steps, both fixed by h x w at "
            "export (exported with symbolic sizes it would be wrong at any other size). Give --height/--width, "
            "or use --scan plugin for a dynamic graph"
        )
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"--opset must be in {MIN_OPSET}..{MAX_OPSET} (LayerNormalization needs 17), got {opset}")


@contextmanager
def _quiet_exporter():
    """The dynamo exporter's progress lines and warnings about optional packages are noise here."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _export_proto(model, example, scan: str, dynamic: bool, opset: int):
    import torch

    from mambalitesr.export.onnx_mixer_node import fused_mixer_nodes
    from mambalitesr.export.onnx_plugin_scan import plugin_scan

    kwargs = {}
    if dynamic:
        dims = {0: torch.export.Dim("batch", min=1, max=64), 2: torch.export.Dim("height", min=2, max=4096),
                3: torch.export.Dim("width", min=2, max=4096)}
        kwargs["dynamic_shapes"] = {"x": dims}
    target = max(opset, EXPORTER_OPSET)  # 17 is reached below: torch cannot down-convert Pad
    with _quiet_exporter(), torch.no_grad():
        ctx = {"plugin": plugin_scan, "fused": fused_mixer_nodes}.get(scan, lambda m: nullcontext())(model)
        with ctx:
            program = torch.onnx.export(model, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        opset_version=target, dynamo=True, external_data=False, verbose=False,
                                        optimize=False, **kwargs)
        _clean_graph(program.model)
    proto = program.model_proto
    if opset_of(proto) != target:
        raise UserError(f"torch's exporter could not write opset {opset} (it left {opset_of(proto)}); "
                        f"use --opset 17 or {EXPORTER_OPSET}")
    if opset == 17:
        downgrade_18_to_17(proto)
    return proto


def _clean_graph(model) -> None:
    """Fold constants, drop dead nodes, lift constants to initializers (an onnx_ir model, in place).

    The exporter's own ``optimize=True`` adds onnxscript's pattern rewriter, which takes minutes on
    the student's thousands of scan nodes and removes almost nothing more here.
    """
    import onnx_ir.passes.common as passes
    from onnxscript.optimizer import fold_constants

    passes.InlinePass()(model)
    for _ in range(2):
        folded = fold_constants(model)
        passes.RemoveUnusedNodesPass()(model)
        if not folded.modified:
            break
    for step in (passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
                 passes.DeduplicateInitializersPass(), passes.CommonSubexpressionEliminationPass(),
                 passes.RemoveUnusedNodesPass(), passes.RemoveUnusedOpsetsPass(), passes.NameFixPass()):
        step(model)


def _add_metadata(proto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key in METADATA_KEYS:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(meta[key])
    proto.doc_string = (f"MambaLiteSR {meta['model']} x{meta['scale']} ({meta['scan']} scan), "
                        f"mambalitesr {__version__}: {INPUT_NAME} (B, 3, h, w) RGB in [0, 1] -> "
                        f"{OUTPUT_NAME} (B, 3, {meta['scale']}h, {meta['scale']}w)")


def read_metadata(path_or_model) -> dict[str, str]:
    """The ``metadata_props`` of an exported model as a dict (``config`` stays a JSON string)."""
    import onnx

    model = path_or_model
    if not hasattr(model, "metadata_props"):
        model = onnx.load(str(path_or_model), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def kernel_registrars() -> dict:
    """name -> f(SessionOptions), the ORT custom-op kernels the installed package declares."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=KERNEL_ENTRY_POINTS)}


def _ort_session(path: Path, scan: str):
    ort = require("onnxruntime", "verifying the export needs onnxruntime", extra="export")
    so = ort.SessionOptions()
    if scan != "portable":
        registrars = kernel_registrars()
        if not registrars:
            raise MissingDependency(
                f"verifying a {scan}-form graph needs ONNX Runtime kernels for its custom nodes, declared "
                f"as a '{KERNEL_ENTRY_POINTS}' entry point; none is installed (pip install -e . registers the "
                "runtime's)")
        for ep in registrars.values():
            ep.load()(so)
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's Fail / InvalidGraph: no kernel for a node, most likely
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if scan == "fused":
            raise MissingDependency(
                f"ONNX Runtime cannot load the fused graph ({text[:200]}): its MambaMixer nodes run only on the "
                "native kernel library (mambalitesr.runtime._ort_scan), built at install when ONNX Runtime's C "
                "header can be had (install libonnxruntime-dev or set ORT_INCLUDE_DIR, then reinstall)") from None
        raise VerificationError(f"ONNX Runtime cannot load the exported graph: {text[:400]}") from None


def _compare(session, model, x: np.ndarray) -> float:
    import torch

    try:
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    except Exception as exc:  # ORT's InvalidArgument / Fail: the graph cannot take this input
        text = str(exc).strip().replace("\n", " ")
        raise VerificationError(f"ONNX Runtime cannot run the exported graph on input {x.shape}: "
                                f"{text[:400]}") from None
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    if got.shape != want.shape:
        raise VerificationError(f"ONNX Runtime output shape {got.shape} != PyTorch {want.shape} for input {x.shape}")
    if not np.isfinite(got).all():
        raise VerificationError(f"ONNX Runtime output has non-finite values for input {x.shape}")
    return float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())


def _resolve_weights(model_name: str, weights) -> Path | None:
    from mambalitesr.models.registry import get_entry

    if weights is not None:
        return Path(weights)
    entry = get_entry(model_name)
    return entry.weights_path  # create_model refuses when the shipped file is missing


def export_onnx(model_name: str, weights=None, out_path=None, scan: str = "plugin", height: int | None = None,
                width: int | None = None, dynamic: bool | None = None, opset: int = 17, verify_image=None,
                log=None) -> ExportReport:
    """Export registry model ``model_name`` (with ``weights``, else its shipped weights) to ``out_path``.

    Fixed size: ``height`` x ``width``, else the verify image's size, else DEFAULT_HW. ``dynamic``
    (plugin and fused forms) makes batch, height and width symbolic and checks two sizes; None (the default)
    means dynamic for those forms without ``height``/``width``. Progress goes to ``log`` (stderr by
    default): the form, the size, each stage and its time. Raises UserError
    on bad arguments and VerificationError when ONNX Runtime disagrees with PyTorch; either way no
    file is left at ``out_path``.
    """
    if log is None:
        def log(msg):
            print(msg, file=sys.stderr, flush=True)
    if dynamic is None:
        dynamic = scan in DYNAMIC_FORMS and height is None and width is None
    _validate_args(scan, height, width, dynamic, opset)
    if out_path is None:
        raise UserError("no output path given (-o FILE.onnx)")
    out_path = Path(out_path)
    if out_path.exists() and out_path.is_dir():
        raise UserError(f"{out_path}: is a directory; give a file name")
    onnx = require("onnx", "ONNX export needs torch and onnx", extra="export")
    torch = require("torch", "ONNX export needs torch and onnx", extra="export")

    from mambalitesr.imageio import atomic_path
    from mambalitesr.models.registry import create_model
    from mambalitesr.models.weights_io import sha256_file

    model = create_model(model_name, weights, scan_backend="chunked")
    cfg = model.config
    if scan == "fused" and cfg.directions != 1:
        raise UserError(f"the fused form runs one-direction mixers; {model_name} has the {cfg.directions}-direction "
                        "cross-scan: export it with --scan plugin")
    weights_path = _resolve_weights(model_name, weights)
    if weights_path is None:
        log(f"warning: {model_name} has no shipped weights and none were given: exporting a random initialisation")
    rgb = test_pattern(*DYNAMIC_CHECK_HW) if dynamic and verify_image is None else _verify_rgb(
        verify_image, height, width, log)
    if dynamic and min(rgb.shape[:2]) < 2:
        raise UserError(f"a dynamic export traces at the verify image's size; {verify_image} is "
                        f"{rgb.shape[1]}x{rgb.shape[0]}, give one of at least 2x2")
    # A dynamic export traces batch 2: torch.export specialises a dimension of size 1.
    example = torch.from_numpy(to_input(rgb, batch=2 if dynamic else 1))  # (B, 3, h, w)

    params = sum(p.numel() for p in model.parameters())
    size = "dynamic batch, height and width" if dynamic else f"fixed input {rgb.shape[1]}x{rgb.shape[0]}"
    log(f"export: {model_name} ({params:,} parameters, {weights_path.name if weights_path else 'random init'}) "
        f"-> {out_path}: {scan} form, {size}, opset {opset}")
    if scan == "portable":
        log(f"export: the portable form unrolls the chunked scan of {n_tokens(rgb.shape[:2]):,} tokens per mixer "
            "into standard operators; at 320x180 this took minutes and about 6 GB of memory on a 2-core x86 CPU, "
            "and grows with height x width (the plugin form is the fast default)")
    log(f"export: [1/3] tracing and converting with torch.onnx (dynamo){_TRACE_HINT.get(scan, '')} ...")
    start, cpu_start = time.perf_counter(), time.process_time()
    proto = _export_proto(model, example, scan, dynamic, opset)
    export_seconds, export_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    log(f"export: [1/3] done in {export_seconds:.1f} s: {sum(node_counts(proto).values()):,} nodes")

    n_mixers = cfg.groups * cfg.mixers
    check_scan_form(proto, scan, n_mixers, cfg.directions, cfg.d_state)
    _add_metadata(proto, {
        "model": model_name, "config": cfg.to_json(), "weights": weights_path.name if weights_path else "random-init",
        "weights_sha256": sha256_file(weights_path) if weights_path else "none", "scale": cfg.scale, "scan": scan,
        "dynamic": int(dynamic), "mambalitesr_version": __version__,
    })
    log("export: [2/3] checking the graph (onnx.checker, shape inference, scan-form rules) ...")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VerificationError(f"the exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None

    log("export: [3/3] verifying in ONNX Runtime against PyTorch ...")
    start = time.perf_counter()
    with atomic_path(out_path) as tmp:
        onnx.save(proto, str(tmp))
        session = _ort_session(tmp, scan)
        inputs = [example.numpy()]
        if dynamic:  # another batch and size, so a graph specialised to the example cannot pass
            h2, w2 = max(8, rgb.shape[0] // 2 + 3), max(8, rgb.shape[1] // 2 + 5)
            inputs.append(to_input(test_pattern(h2, w2), batch=1))
        checks = [(x.shape, _compare(session, model, x)) for x in inputs]
        del session
        worst = max(err for _, err in checks)
        for shape, err in checks:
            log(f"verify {'x'.join(map(str, shape))}: max |ONNX Runtime - PyTorch| = {err:.3g}")
        if not worst <= TOLERANCE:
            raise VerificationError(f"verification failed: max abs error {worst:.3g} > {TOLERANCE:g} "
                                    f"(ONNX Runtime vs PyTorch, fp32); {out_path} not written")
    verify_seconds = time.perf_counter() - start
    return ExportReport(
        path=out_path, scan=scan, opset=opset_of(proto),
        input_shape="B x 3 x h x w (dynamic)" if dynamic else tuple(example.shape),
        export_seconds=export_seconds, verify_seconds=verify_seconds, export_cpu_seconds=export_cpu_seconds,
        max_abs_error=worst, checks=checks, node_counts=node_counts(proto),
    )
