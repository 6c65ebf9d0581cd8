"""GPU check of the CUDA selective scan and, where TensorRT is importable, of its plugin inside an engine.

Glossary (code name -> paper symbol / meaning):
    B batch, D channels (d_inner), K directions (1 or 4), N d_state, H x W grid, L = H * W tokens,
    T chunk length of the kernel's chunked three-pass scan; 0 = its single pass (the default, the plugin's)
    u -> x_t, delta -> Delta_t, A, Bm -> B_t, Cm -> C_t, Dskip -> D, z -> gate
    oracle   mambalitesr.models.selective_scan: backend "ref" (sequential) for small L, "chunked" for large L
    error    max |kernel - oracle| / max |oracle|, judged by mambalitesr.testing.compare with the row of
             its one per-dtype table (TOLERANCES) for the dtype under test, as every backend test is

Steps (each prints one line per case; any mismatch makes the exit status 1):
  1. build the kernel as a torch extension (torch_binding.cpp + the plain kernel sources)
  2. compare with the oracle over K in {1, 4}, N in {1, 5, 16, 33, 64}, L up to 16384, with/without z,
     fp32 and fp16, one and several chunks; check run-to-run determinism and that bad params are refused
  3. time the kernel and the chunked PyTorch scan with CUDA events, and one student / teacher mixer's scan
     at 320x180: the single pass against the chunked scan at T = 256 .. L (which one a device prefers)
  3b. the same kernel built with -DMAMBALITESR_SCAN_FAST_EXP (__expf decays): its error on the same cases
     and its mixer timings, reported beside the default build's and not counted as failures (the default
     build uses expf; this says whether switching is worth it and safe)
  4. with --plugin-lib (TensorRT importable): a one-node SelectiveScan ONNX -> engine (fp32 and fp16) ->
     compared with the oracle; the _autoreg build registering itself when merely dlopened; then the whole network in both ONNX forms (plugin form with the plugin,
     portable form without; --quick: the plugin form only) against PyTorch
  5. one summary line starting "gpu_check:"

``--cpu-emulation`` runs steps 2 and 5 on the CPU emulation of the kernel bodies instead (a dry run of this
script's own logic on a machine without a GPU; it checks nothing a GPU would add).
Exit status: 0 passed, 1 a mismatch or failure, 2 the environment lacks something the check needs.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mambalitesr.optional import find, install_hint
from mambalitesr.testing import compare

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "export" / "plugins" / "selective_scan"


class EnvironmentMissing(Exception):
    """Something the check needs is absent (exit 2)."""


def log(msg: str) -> None:
    print(msg, flush=True)


# --- implementations under test ------------------------------------------------------------------------------

class CudaExtension:
    """The kernel through torch.utils.cpp_extension (torch_binding.cpp wraps the params-struct launch)."""

    device = "cuda"

    def __init__(self, build_dir: Path, fast_exp: bool = False):
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, load

        if CUDA_HOME is None or shutil.which("nvcc", path=str(Path(CUDA_HOME) / "bin")) is None:
            raise EnvironmentMissing("nvcc not found (set CUDA_HOME to the CUDA toolkit)")
        nvcc_major = _nvcc_major(Path(CUDA_HOME) / "bin" / "nvcc")
        torch_major = int(str(torch.version.cuda).split(".")[0])
        if nvcc_major != torch_major:
            raise EnvironmentMissing(f"nvcc is CUDA {nvcc_major} but torch was built with CUDA {torch.version.cuda}; "
                                     "torch extensions need the same major version (install a matching torch)")
        # The oracle runs on the same GPU: TF32 would make it the less exact side of an fp32 comparison.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        major, minor = torch.cuda.get_device_capability()
        os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
        build_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.ext = load(
            name="mambalitesr_scan_check" + ("_fast_exp" if fast_exp else ""),
            sources=[str(SRC / "torch_binding.cpp"), str(SRC / "selective_scan_kernel.cu"),
                     str(SRC / "selective_scan_host_api.cpp")],
            extra_include_paths=[str(SRC)], extra_cflags=["-O2"],
            extra_cuda_cflags=["-O3"] + (["-DMAMBALITESR_SCAN_FAST_EXP=1"] if fast_exp else []),
            build_directory=str(build_dir), verbose=False,
        )
        log(f"built the torch extension{' (__expf decays)' if fast_exp else ''} for sm_{major}{minor} "
            f"in {time.perf_counter() - t0:.0f} s")

    def __call__(self, x, K, H, W, softplus, chunk):
        return self.ext.selective_scan_fwd(x["u"], x["delta"], x["A"], x["Bm"], x["Cm"], x.get("Dskip"), x.get("z"),
                                           x.get("delta_bias"), softplus, K, H, W, chunk)


class CpuEmulation:
    """selective_scan_emulation.cpp through ctypes (the layout mirror lives in tests/test_cuda_sources.py)."""

    device = "cpu"

    def __init__(self, build_dir: Path):
        sys.path.insert(0, str(REPO / "tests"))
        from test_cuda_sources import Params  # noqa: E402 - the one ctypes mirror of SelectiveScanParams

        self.Params = Params
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            raise EnvironmentMissing("nvcc not found (the emulation is compiled with nvcc -x c++)")
        build_dir.mkdir(parents=True, exist_ok=True)
        lib = build_dir / "libscan_emulation.so"
        subprocess.run([nvcc, "-x", "c++", "-O2", "-std=c++17", "-shared", "-Xcompiler", "-fPIC",
                        str(SRC / "selective_scan_emulation.cpp"), str(SRC / "selective_scan_host_api.cpp"),
                        "-o", str(lib)], check=True)
        self.lib = ctypes.CDLL(str(lib))
        self.lib.mambalitesr_selective_scan_workspace_size.restype = ctypes.c_size_t
        self.lib.mambalitesr_selective_scan_validate.restype = ctypes.c_char_p

    def __call__(self, x, K, H, W, softplus, chunk):
        import torch

        u = x["u"]
        B, D, _ = u.shape
        p = self.Params(batch=B, channels=D, height=H, width=W, directions=K, d_state=x["A"].shape[1],
                        delta_softplus=int(softplus), chunk_len=chunk, act_dtype=int(u.dtype == torch.float16))
        keep = []
        for name in ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias"):
            if x.get(name) is not None:
                t = x[name].contiguous()
                keep.append(t)
                setattr(p, name, t.data_ptr())
        y = torch.empty_like(u)
        p.y = y.data_ptr()
        self.lib.mambalitesr_selective_scan_set_dense_strides(ctypes.byref(p))
        size = self.lib.mambalitesr_selective_scan_workspace_size(ctypes.byref(p))
        ws = torch.empty(size + 1, dtype=torch.uint8)
        p.workspace, p.workspace_bytes = ws.data_ptr(), size
        bad = self.lib.mambalitesr_selective_scan_validate(ctypes.byref(p))
        if bad is not None:
            raise RuntimeError(bad.decode())
        self.lib.mambalitesr_selective_scan_emulate(ctypes.byref(p))
        return y


def _nvcc_major(nvcc: Path) -> int:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=True).stdout
    release = out.split("release ")[1].split(",")[0]
    return int(release.split(".")[0])


# --- cases ---------------------------------------------------------------------------------------------------

def make_inputs(B, D, K, N, H, W, dtype, device, z=True, seed=0):
    """Inputs of the shape contract; activations in dtype, parameters fp32."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    L = H * W

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    x = dict(u=rand(B, D, L), delta=rand(B, K * D, L, scale=0.5),
             A=(-torch.rand(K * D, N, generator=g) * 2 - 0.1).to(device), Bm=rand(B, K, N, L), Cm=rand(B, K, N, L),
             Dskip=torch.randn(K * D, generator=g).to(device), z=rand(B, D, L) if z else None,
             delta_bias=(torch.randn(K * D, generator=g) * 0.3).to(device))
    return x


def oracle(x, K, H, W, softplus, backend):
    from mambalitesr.models import selective_scan

    f = {k: (None if v is None else v.float()) for k, v in x.items()}
    return selective_scan(f["u"], f["delta"], f["A"], f["Bm"], f["Cm"], f["Dskip"], f["z"], f["delta_bias"], softplus,
                          directions=K, height=H, width=W, backend=backend)


def describe(verdict) -> str:
    """One log fragment: the error found and the table row it was judged by (and why it failed)."""
    text = f"error {verdict.scaled_error:.2e} of max|oracle| ({verdict.dtype} rtol {verdict.rtol:.0e})"
    return text if verdict.ok else f"{text}; {verdict.reason.strip()}"


def case_grid(quick: bool):
    """(B, D, K, N, H, W, dtype name, z, chunk, oracle backend)."""
    small = [(1, 1), (5, 7), (16, 24)] if not quick else [(5, 7)]
    for (H, W), K, N, dt, z, chunk in _product(small, (1, 4), (1, 5, 16, 33, 64), ("float32", "float16"),
                                               (True, False), (0, 37)):
        if z or N == 16:  # the gate's absence once per shape is enough
            yield (2, 4, K, N, H, W, dt, z, chunk, "ref")
    if not quick:
        for (H, W), K, dt, chunk in _product([(64, 64), (128, 128)], (1, 4), ("float32", "float16"), (0, 256)):
            yield (1, 32, K, 16, H, W, dt, True, chunk, "chunked")


def _product(*iterables):
    import itertools

    return itertools.product(*iterables)


def check_kernel(impl, quick: bool, label: str = "") -> tuple[list[str], dict]:
    import torch

    failures, worst, count = [], {}, 0
    label = f"[{label}] " if label else ""
    for B, D, K, N, H, W, dt, z, chunk, backend in case_grid(quick):
        x = make_inputs(B, D, K, N, H, W, getattr(torch, dt), impl.device, z=z, seed=count)
        y = impl(x, K, H, W, True, chunk)
        verdict = compare(y, oracle(x, K, H, W, True, backend), dtype=dt)
        worst[dt] = max(worst.get(dt, 0.0), verdict.scaled_error)
        count += 1
        tag = (f"{label}B={B} D={D} K={K} N={N} L={H}x{W} {dt} z={'y' if z else 'n'} "
               f"{f'T={chunk}' if chunk else 'single pass'} vs {backend}")
        log(f"{'ok  ' if verdict.ok else 'FAIL'} {tag}: {describe(verdict)}")
        if not verdict.ok:
            failures.append(tag)
    # Determinism: the direction sum is in fixed order, so two runs agree bit for bit.
    x = make_inputs(1, 32, 4, 16, 64, 64, torch.float32, impl.device, seed=1)
    same = torch.equal(impl(x, 4, 64, 64, True, 0), impl(x, 4, 64, 64, True, 0))
    log(f"{'ok  ' if same else 'FAIL'} {label}K=4 output identical across two runs")
    if not same:
        failures.append(f"{label}determinism")
    try:
        bad = make_inputs(1, 2, 1, 65, 4, 4, torch.float32, impl.device)
        impl(bad, 1, 4, 4, True, 0)
        failures.append("d_state=65 was not refused")
        log("FAIL d_state=65 was not refused")
    except RuntimeError as exc:
        log(f"ok   d_state=65 refused: {str(exc).splitlines()[0]}")
    return failures, {"cases": count, **{f"max_scaled_err_{k}": v for k, v in worst.items()}}


def time_kernel(impl, fast_exp_impl=None) -> str:
    import torch

    B, D, K, N, H, W = 1, 96, 4, 16, 128, 128
    parts = []
    for dt in ("float32", "float16"):
        x = make_inputs(B, D, K, N, H, W, getattr(torch, dt), "cuda", seed=2)
        kernel_ms = _time(lambda: impl(x, K, H, W, True, 0))
        parts.append(f"{dt} {kernel_ms:.3f} ms")
    x = make_inputs(B, D, K, N, H, W, torch.float32, "cuda", seed=2)
    chunked_ms = _time(lambda: oracle(x, K, H, W, True, "chunked"), reps=5)
    line = (f"B={B} D={D} K={K} N={N} L={H}x{W}: kernel {', '.join(parts)}; chunked PyTorch fp32 {chunked_ms:.2f} ms")
    log(f"time {line}")
    for name, d_inner in (("student", 64), ("teacher", 120)):
        log(f"time {chunk_sweep(impl, name, d_inner)}")
        if fast_exp_impl is not None:
            log(f"time [__expf] {chunk_sweep(fast_exp_impl, name, d_inner)}")
    return line


def chunk_sweep(impl, name: str, d_inner: int) -> str:
    """One mixer's scan at a 320x180 frame (K = 1, N = 16), fp16 activations: the single pass, then the
    chunked scan at several chunk lengths T.

    Why: the single pass computes each exponential once but has one block per (b, d), B x D blocks to fill
    the GPU; the chunked scan's passes 1 and 3 both run the recurrence over every chunk but the last (T = L:
    no pass 1, but only B x D groups). Which wins on an Orin Nano is a measurement (the kernel README's
    roofline is an estimate)."""
    import torch

    H, W = 180, 320
    L = H * W
    x = make_inputs(1, d_inner, 1, 16, H, W, torch.float16, "cuda", seed=3)
    names = {0: "single pass", 256: "T=256", 1024: "T=1024", 4096: "T=4096", L: "T=L"}
    parts = [f"{label} {_time(lambda: impl(x, 1, H, W, True, T)):.3f} ms" for T, label in names.items()]
    return f"{name} mixer scan B=1 D={d_inner} K=1 N=16 L=320x180 fp16: {', '.join(parts)}"


def _time(fn, reps: int = 20) -> float:
    import torch

    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


# --- TensorRT --------------------------------------------------------------------------------------------------

def one_node_onnx(path: Path, x: dict, K: int, N: int, softplus: bool) -> None:
    """A graph with one mambalitesr::SelectiveScan node, inputs shaped (B, D, H, W) etc., parameters as initializers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def info(name, t):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(t.shape))

    acts = {k: x[k] for k in ("u", "delta", "Bm", "Cm", "z")}
    inits = [numpy_helper.from_array(x[k].float().cpu().numpy(), k) for k in ("A", "Dskip", "delta_bias")]
    node = helper.make_node("SelectiveScan", ["u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias"], ["y"],
                            domain="mambalitesr", directions=K, d_state=N, delta_softplus=int(softplus))
    graph = helper.make_graph([node], "selective_scan", [info(k, v) for k, v in acts.items()],
                              [info("y", x["u"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("mambalitesr", 1)])
    onnx.save(model, str(path))


def check_tensorrt(plugin_lib: Path, work: Path, quick: bool = False) -> tuple[list[str], str]:
    import torch

    from mambalitesr.export.engine import build_engine
    from mambalitesr.export.trt_infer import infer_torch
    from mambalitesr.runtime.backends.engine_files import load_engine

    failures = []
    B, D, N, H, W = 1, 8, 16, 24, 20
    for K in (1, 4):
        x = make_inputs(B, D, K, N, H, W, torch.float32, "cuda", seed=K)
        grid = {k: (v.reshape(*v.shape[:-1], H, W) if k in ("u", "delta", "Bm", "Cm", "z") else v) for k, v in x.items()}
        onnx_path = work / f"scan_k{K}.onnx"
        one_node_onnx(onnx_path, grid, K, N, True)
        ref = oracle(x, K, H, W, True, "ref").reshape(B, D, H, W)
        for fp16 in (False, True):
            engine_path = work / f"scan_k{K}_{'fp16' if fp16 else 'fp32'}.engine"
            build_engine(onnx_path, engine_path, fp16=fp16, plugin_lib=plugin_lib)
            engine = load_engine(engine_path, plugin_lib)
            y = infer_torch(engine, {k: grid[k] for k in ("u", "delta", "Bm", "Cm", "z")})["y"]
            verdict = compare(y, ref, dtype="float16" if fp16 else "float32")
            tag = f"TensorRT engine, one SelectiveScan node, K={K}, {'fp16' if fp16 else 'fp32'}"
            log(f"{'ok  ' if verdict.ok else 'FAIL'} {tag}: {describe(verdict)}")
            if not verdict.ok:
                failures.append(tag)
    problem = check_register_at_load(plugin_lib)
    log(f"{'FAIL' if problem else 'ok  '} the _autoreg plugin registers SelectiveScan when dlopened (Triton, "
        f"DeepStream){': ' + problem if problem else ''}")
    if problem:
        failures.append("autoreg plugin")
    return failures, check_full_model(plugin_lib, work, failures, quick)


AUTOREG_PROBE = """
import ctypes, sys
import tensorrt as trt
ctypes.CDLL(sys.argv[1])  # what Triton's TensorRT backend and DeepStream do: dlopen, nothing else
creator = trt.get_plugin_registry().get_creator("SelectiveScan", "1", "")
print("registered" if creator is not None else "not registered")
"""


def check_register_at_load(plugin_lib: Path) -> str | None:
    """libmambalitesr_plugins_autoreg.so, built beside ``plugin_lib``, registers its creator when merely dlopened
    (in a fresh process: the plain library's creator is already registered in this one). None when it does;
    else what went wrong."""
    autoreg = plugin_lib.with_name("libmambalitesr_plugins_autoreg.so")
    if not autoreg.is_file():
        return f"{autoreg.name} was not built beside {plugin_lib.name} (CMake did not find libnvinfer)"
    proc = subprocess.run([sys.executable, "-c", AUTOREG_PROBE, str(autoreg)], capture_output=True, text=True)
    if proc.returncode != 0 or "not registered" in proc.stdout or "registered" not in proc.stdout:
        return f"dlopen of {autoreg.name} did not register SelectiveScan: {(proc.stdout + proc.stderr).strip()[-400:]}"
    return None


def check_full_model(plugin_lib: Path, work: Path, failures: list, quick: bool = False) -> str:
    """The whole network, both ONNX forms from `mambalitesr export onnx`, as fp32 engines against PyTorch.

    plugin form: --dynamic, one SelectiveScan node per mixer, built with the plugin library;
    portable form: fixed size, standard operators, built without any plugin (batch 1); skipped with --quick,
    its export and its thousands of nodes make the slowest build here.
    The model is the shipped student unless MAMBALITESR_EXPORT_ARGS names --model / --weights; the input is
    the exporter's deterministic test pattern at MAMBALITESR_CHECK_SHAPE (B x 3 x H x W, default 1x3x64x64),
    and the reference is the PyTorch model itself (chunked scan) on the CPU. Engines are built with TF32 off,
    so the bar is the fp32 export's (1e-4).
    """
    import argparse

    import torch

    from mambalitesr.export.engine import build_engine, parse_shape
    from mambalitesr.runtime.backends.engine_files import load_engine
    from mambalitesr.export.onnx_export import INPUT_NAME, OUTPUT_NAME, TOLERANCE, test_pattern, to_input
    from mambalitesr.export.trt_infer import infer_torch
    from mambalitesr.imageio import write_image
    from mambalitesr.models.registry import create_model

    extra = os.environ.get("MAMBALITESR_EXPORT_ARGS", "").split()
    which = argparse.ArgumentParser(add_help=False)  # the model the export args pick, for the reference
    which.add_argument("--model", default="mambalitesr_x4")
    which.add_argument("--weights", default=None)
    chosen, _ = which.parse_known_args(extra)
    shape = parse_shape(os.environ.get("MAMBALITESR_CHECK_SHAPE", "1x3x64x64"), "MAMBALITESR_CHECK_SHAPE")
    batch, _, height, width = shape
    pattern = test_pattern(height, width)
    image = work / "check_pattern.png"
    write_image(image, pattern)  # the dynamic export traces and verifies at this size
    lr = torch.from_numpy(to_input(pattern, batch=batch))  # (B, 3, H, W)
    with torch.no_grad():
        want = create_model(chosen.model, chosen.weights, scan_backend="chunked")(lr).numpy()  # (B, 3, sH, sW)

    cli = [sys.executable, "-m", "mambalitesr", "export", "onnx"]
    forms = (("plugin", ["--dynamic", "--verify-image", str(image)], plugin_lib, batch),
             ("portable", ["--height", str(height), "--width", str(width)], None, 1))
    lines = []
    if quick:
        forms = forms[:1]
        lines.append("portable form skipped (--quick)")
    for scan, args, lib, rows in forms:
        onnx_path, engine_path = work / f"model_{scan}.onnx", work / f"model_{scan}.engine"
        cmd = [*cli, "--scan", scan, "-o", str(onnx_path), *args, *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append(f"export --scan {scan}")
            msg = (f"full network, {scan} form: FAIL, `{' '.join(cmd)}` exited {proc.returncode}: "
                   f"{proc.stderr.strip()[-400:]}")
            log(msg)
            lines.append(msg)
            continue
        profile = "x".join(map(str, shape)) if scan == "plugin" else None  # the portable graph is static
        build_engine(onnx_path, engine_path, fp16=False, plugin_lib=lib, opt_shape=profile, tf32=False)
        engine = load_engine(engine_path, lib)
        sr = infer_torch(engine, {INPUT_NAME: lr[:rows]})[OUTPUT_NAME].float().cpu().numpy()
        ref = want[:rows]
        verdict = compare(sr, ref, dtype="float32")
        ok = verdict.ok and verdict.max_abs_error <= TOLERANCE  # the table's float32 row and the export's bound
        msg = (f"full network {chosen.model} {scan} form {'x'.join(map(str, lr[:rows].shape))}: TensorRT fp32 "
               f"{'with' if lib else 'without'} the plugin vs PyTorch, max abs err {verdict.max_abs_error:.2e} "
               f"(bound {TOLERANCE:.0e}), {describe(verdict)}")
        log(f"{'ok  ' if ok else 'FAIL'} {msg}")
        if not ok:
            failures.append(f"full network, {scan} form")
        lines.append(msg)
    return "; ".join(lines)


# --- main ----------------------------------------------------------------------------------------------------

def _worst_errors(stats: dict) -> str:
    """check_kernel's worst scaled error per dtype, as one log fragment."""
    prefix = "max_scaled_err_"
    return ", ".join(f"{k[len(prefix):]} {v:.1e}" for k, v in stats.items() if k.startswith(prefix))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin-lib", type=Path, default=None, help="libmambalitesr_plugins.so for the TensorRT checks")
    ap.add_argument("--build-dir", type=Path, default=None, help="where to build (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="fewer shapes")
    ap.add_argument("--cpu-emulation", action="store_true", help="dry run on the CPU emulation (no GPU)")
    ap.add_argument("--no-fast-exp", action="store_true", help="skip step 3b (the __expf build)")
    args = ap.parse_args(argv)
    work = args.build_dir or Path(tempfile.mkdtemp(prefix="mambalitesr_gpu_check_"))
    torch = find("torch")
    if torch is None:
        log(f"gpu_check: ENVIRONMENT, torch is not installed ({install_hint(package='torch')})")
        return 2
    try:
        if args.cpu_emulation:
            impl = CpuEmulation(work / "emulation")
        else:
            if not torch.cuda.is_available():
                raise EnvironmentMissing("torch sees no CUDA GPU (torch.cuda.is_available() is False)")
            log(f"GPU {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))}), "
                f"torch {torch.__version__} CUDA {torch.version.cuda}")
            impl = CudaExtension(work / "torch_ext")
    except EnvironmentMissing as exc:
        log(f"gpu_check: ENVIRONMENT, {exc}")
        return 2

    failures, stats = check_kernel(impl, args.quick)
    fast_note, fast_impl = "", None
    if not (args.cpu_emulation or args.no_fast_exp):
        fast_impl = CudaExtension(work / "torch_ext_fast_exp", fast_exp=True)
        # the same grid as the default build: its long sequences are where a biased decay would compound
        fast_failures, fast_stats = check_kernel(fast_impl, args.quick, label="__expf")
        fast_note = (f"; __expf build (not the default, not counted): {len(fast_failures)} of {fast_stats['cases']} "
                     f"cases outside the table (max error / max|oracle|: {_worst_errors(fast_stats)})")
    timing = "timing skipped (CPU emulation)" if args.cpu_emulation else time_kernel(impl, fast_impl)
    trt_note = "TensorRT: not checked (no --plugin-lib)"
    if args.plugin_lib is not None and not args.cpu_emulation:
        try:
            trt_failures, full = check_tensorrt(args.plugin_lib, work, args.quick)
            failures += trt_failures
            trt_note = f"TensorRT: {'FAIL' if trt_failures else 'ok'} ({full})"
        except Exception as exc:  # a TensorRT failure is a check failure, with its message
            failures.append(f"TensorRT: {exc}")
            trt_note = f"TensorRT: FAIL ({type(exc).__name__}: {exc})"
            log(trt_note)
    status = "FAIL" if failures else "PASS"
    log(f"gpu_check: {status} kernel {stats['cases']} cases (max error / max|oracle|: {_worst_errors(stats)})"
        f"{fast_note}; {timing}; {trt_note}" + (f"; failures: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
