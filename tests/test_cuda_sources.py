"""CUDA selective scan and TensorRT plugin sources: they compile, export their entry points, and compute
the right thing as far as a machine without a GPU can tell.

Glossary: B batch, D channels, K directions, N d_state, H x W grid, L = H * W tokens, T chunk length.

* nvcc compiles the kernel for sm_87 (Orin) and sm_90 (Hopper) in one invocation; nm finds the C API.
* The CPU emulation (selective_scan_emulation.cpp) runs the kernels' own per-item bodies, one lane owning
  all N states, and is compared with the PyTorch oracle over directions, chunkings, dtypes and options.
* With TENSORRT_INCLUDE_DIR pointing at TensorRT 10 headers, the plugin compiles with -Werror, links with
  --no-undefined and no libnvinfer, and plugin_selftest.cpp checks its creator, fields, formats and shapes.
The warp-shuffle path (G > 1 lanes) runs only on a GPU: benchmarks/gpu_check.sh.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mambalitesr.models import selective_scan

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "export" / "plugins" / "selective_scan"
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) not installed")
TRT_INCLUDE = os.environ.get("TENSORRT_INCLUDE_DIR", "")
needs_trt_headers = pytest.mark.skipif(
    not (TRT_INCLUDE and (Path(TRT_INCLUDE) / "NvInferRuntime.h").is_file()),
    reason="set TENSORRT_INCLUDE_DIR to a folder with the TensorRT 10 headers (NvInferRuntime.h) to compile the plugin",
)
GENCODES = ["-gencode", "arch=compute_87,code=sm_87", "-gencode", "arch=compute_90,code=sm_90"]
HOST_FLAGS = ["-std=c++17", "-Xcompiler", "-fPIC,-fvisibility=hidden,-Wall,-Wextra,-Werror"]
C_API = ("mambalitesr_selective_scan_fwd", "mambalitesr_selective_scan_validate",
         "mambalitesr_selective_scan_workspace_size", "mambalitesr_selective_scan_set_dense_strides",
         "mambalitesr_selective_scan_params_size")


def run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


def exported(lib: Path) -> set[str]:
    out = run(["nm", "-D", "--defined-only", str(lib)], lib.parent).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return tmp_path_factory.mktemp("selective_scan")


@pytest.fixture(scope="module")
def kernel_objects(build):
    """kernel.o (device code for sm_87 and sm_90, one nvcc run) and host_api.o."""
    run([NVCC, "-O3", *HOST_FLAGS, *GENCODES, "-c", str(SRC / "selective_scan_kernel.cu"), "-o", "kernel.o"], build)
    run([NVCC, "-x", "c++", "-O2", *HOST_FLAGS, "-c", str(SRC / "selective_scan_host_api.cpp"), "-o", "host_api.o"],
        build)
    return [build / "kernel.o", build / "host_api.o"]


@needs_nvcc
def test_kernel_library_builds_for_orin_and_hopper(build, kernel_objects):
    lib = build / "libmambalitesr_selective_scan.so"
    run([NVCC, "-shared", "-Xlinker", "--no-undefined", *map(str, kernel_objects), "-o", str(lib)], build)
    symbols = exported(lib)
    assert set(C_API) <= symbols, set(C_API) - symbols
    assert not [s for s in symbols if "mambalitesr" in s and s.startswith("_Z")], "C++ internals leak out"


@needs_nvcc
def test_single_pass_kernel_does_not_spill(build):
    # Its launch bounds cap it at 64 registers (8 blocks of 128 threads per SM: one wave for a student mixer
    # on an Orin Nano); spilling the tile's registers to local memory would undo the point.
    proc = run([NVCC, "-O3", *HOST_FLAGS, *GENCODES, "-Xptxas", "-v", "-c", str(SRC / "selective_scan_kernel.cu"),
                "-o", "spill_check.o"], build)
    lines = proc.stderr.splitlines()
    reports = [lines[i + 1] + lines[i + 2] for i, line in enumerate(lines[:-2])
               if "Compiling entry function" in line and "single_pass_kernel" in line]
    assert len(reports) == 4, proc.stderr[-3000:]  # fp32 and fp16, sm_87 and sm_90
    for report in reports:
        assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in report, report


# --- CPU emulation of the kernel bodies against the PyTorch oracle ------------------------------------------

class Params(ctypes.Structure):
    """Mirror of SelectiveScanParams (selective_scan_kernel.h); its size is checked against the library's."""

    _fields_ = (
        [(n, ctypes.c_int64) for n in ("batch", "channels", "height", "width")]
        + [(n, ctypes.c_int32) for n in ("directions", "d_state", "delta_softplus", "chunk_len", "act_dtype",
                                         "A_dtype", "Dskip_dtype", "delta_bias_dtype")]
        + [(n, ctypes.c_void_p) for n in ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias", "y",
                                          "workspace")]
        + [("workspace_bytes", ctypes.c_size_t)]
        + [(n, ctypes.c_int64) for n in (
            "u_batch_stride", "u_channel_stride", "delta_batch_stride", "delta_channel_stride", "A_row_stride",
            "A_state_stride", "B_batch_stride", "B_direction_stride", "B_state_stride", "C_batch_stride",
            "C_direction_stride", "C_state_stride", "z_batch_stride", "z_channel_stride", "y_batch_stride",
            "y_channel_stride")]
    )


@pytest.fixture(scope="module")
def emulation(build):
    lib_path = build / "libscan_emulation.so"
    run([NVCC, "-x", "c++", "-O2", *HOST_FLAGS, "-shared", str(SRC / "selective_scan_emulation.cpp"),
         str(SRC / "selective_scan_host_api.cpp"), "-o", str(lib_path)], build)
    lib = ctypes.CDLL(str(lib_path))
    lib.mambalitesr_selective_scan_params_size.restype = ctypes.c_size_t
    lib.mambalitesr_selective_scan_workspace_size.restype = ctypes.c_size_t
    lib.mambalitesr_selective_scan_validate.restype = ctypes.c_char_p
    assert lib.mambalitesr_selective_scan_params_size() == ctypes.sizeof(Params), "Params mirror is out of date"
    return lib


def make_inputs(B, D, K, N, H, W, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = H * W

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    return dict(u=rand(B, D, L), delta=rand(B, K * D, L, scale=0.5), A=-torch.rand(K * D, N, generator=g) * 2 - 0.1,
                Bm=rand(B, K, N, L), Cm=rand(B, K, N, L), Dskip=torch.randn(K * D, generator=g),
                z=rand(B, D, L), delta_bias=torch.randn(K * D, generator=g) * 0.3)


def emulate(lib, x, K, H, W, softplus=True, chunk=0, drop=()):
    """Run the emulation on the tensors in x (dict); names in drop are passed as NULL."""
    u = x["u"]
    B, D, L = u.shape
    p = Params(batch=B, channels=D, height=H, width=W, directions=K, d_state=x["A"].shape[1],
               delta_softplus=int(softplus), chunk_len=chunk, act_dtype=int(u.dtype == torch.float16))
    keep = []
    for name in ("u", "delta", "A", "Bm", "Cm", "Dskip", "z", "delta_bias"):
        if name not in drop:
            t = x[name].contiguous()
            keep.append(t)
            setattr(p, name, t.data_ptr())
    y = torch.empty_like(u)
    p.y = y.data_ptr()
    lib.mambalitesr_selective_scan_set_dense_strides(ctypes.byref(p))
    size = lib.mambalitesr_selective_scan_workspace_size(ctypes.byref(p))
    workspace = torch.full((size // 4 + 1,), float("nan"))  # NaN: a read of an unwritten slot would show
    p.workspace, p.workspace_bytes = workspace.data_ptr(), size
    assert lib.mambalitesr_selective_scan_validate(ctypes.byref(p)) is None
    assert lib.mambalitesr_selective_scan_emulate(ctypes.byref(p)) == 0
    return y


def oracle(x, K, H, W, softplus=True, drop=()):
    f = {k: (None if k in drop else v.float()) for k, v in x.items()}
    return selective_scan(f["u"], f["delta"], f["A"], f["Bm"], f["Cm"], f["Dskip"], f["z"], f["delta_bias"], softplus,
                          directions=K, height=H, width=W, backend="ref")


def rel_err(y, ref):
    return ((y.float() - ref).abs().max() / ref.abs().max().clamp(min=1.0)).item()


@needs_nvcc
@pytest.mark.parametrize("K", [1, 4])
def test_emulation_matches_oracle_fp32(emulation, K):
    # T = 1, 3, 7 exercise the chunked scan's carries and partial last chunks; 0 is the single pass (one tile).
    for N, (H, W), chunk in itertools.product((1, 5, 16, 64), ((1, 1), (3, 4), (7, 5), (4, 9)), (0, 1, 3, 7)):
        x = make_inputs(2, 3, K, N, H, W, torch.float32, seed=N + H)
        err = rel_err(emulate(emulation, x, K, H, W, chunk=chunk), oracle(x, K, H, W))
        assert err < 2e-5, (K, N, H, W, chunk, err)


@needs_nvcc
@pytest.mark.parametrize("K", [1, 4])
@pytest.mark.parametrize("N", [1, 16, 64])
def test_single_pass_over_several_tiles(emulation, K, N):
    # L = 2,091 = four whole tiles of 512 tokens and a last one of 43: the state carried from tile to tile,
    # the block scan across all four warps, and threads past the end (identity steps) in the last tile.
    H, W = 41, 51
    x = make_inputs(1, 2, K, N, H, W, torch.float32, seed=N)
    ref = oracle(x, K, H, W)
    assert rel_err(emulate(emulation, x, K, H, W, chunk=0), ref) < 2e-5
    assert rel_err(emulate(emulation, x, K, H, W, chunk=100), ref) < 2e-5  # the chunked scan agrees too


@needs_nvcc
@pytest.mark.parametrize("K", [1, 4])
def test_emulation_fp16_and_optional_terms(emulation, K):
    H, W = 6, 5
    x = make_inputs(2, 4, K, 16, H, W, torch.float16)
    for chunk in (0, 4):
        assert rel_err(emulate(emulation, x, K, H, W, chunk=chunk), oracle(x, K, H, W)) < 2e-3  # y rounded once
    x = make_inputs(1, 3, K, 8, H, W, torch.float32, seed=3)
    for drop, chunk in itertools.product((("z",), ("Dskip",), ("delta_bias",), ("z", "Dskip", "delta_bias")), (0, 4)):
        y = emulate(emulation, x, K, H, W, softplus=False, chunk=chunk, drop=drop)
        assert rel_err(y, oracle(x, K, H, W, softplus=False, drop=drop)) < 2e-5, (drop, chunk)


@needs_nvcc
def test_validation_and_workspace(emulation):
    def params(**kw):
        p = Params(batch=1, channels=4, height=8, width=8, directions=4, d_state=16, u=1, delta=1, A=1, Bm=1, Cm=1, y=1)
        for k, v in kw.items():
            setattr(p, k, v)
        return p

    def message(p):
        return emulation.mambalitesr_selective_scan_validate(ctypes.byref(p))

    assert b"directions" in message(params(directions=2))
    assert b"d_state" in message(params(d_state=65))
    assert b"workspace" in message(params(chunk_len=16))  # L = 64 needs carries and the direction sum
    assert b"NULL" in message(params(u=None, workspace=1, workspace_bytes=1 << 20))
    assert message(params(batch=0)) is None  # empty problem: nothing to read
    sizes = []
    for H in (1, 8, 16, 17, 64):  # grows with L, so a TensorRT profile's max shape covers every smaller one
        p = params(height=H, chunk_len=0)
        sizes.append(emulation.mambalitesr_selective_scan_workspace_size(ctypes.byref(p)))
    assert sizes == sorted(sizes) and sizes[0] > 0
    single = params(directions=1, height=64, width=64)  # the single pass carries in shared memory
    assert emulation.mambalitesr_selective_scan_workspace_size(ctypes.byref(single)) == 0
    one_chunk = params(directions=1, height=16, width=16, chunk_len=256)  # L = T: no carries, no direction sum
    assert emulation.mambalitesr_selective_scan_workspace_size(ctypes.byref(one_chunk)) == 0


# --- TensorRT plugin ----------------------------------------------------------------------------------------

@needs_nvcc
@needs_trt_headers
def test_plugin_compiles_links_without_libnvinfer_and_passes_selftest(build, kernel_objects):
    includes = ["-isystem", TRT_INCLUDE, "-I", str(SRC)]
    run([NVCC, "-x", "c++", "-O2", *HOST_FLAGS, *includes, "-c", str(SRC / "selective_scan_plugin.cpp"), "-o",
         "plugin.o"], build)
    lib = build / "libmambalitesr_plugins.so"
    run([NVCC, "-shared", "-Xlinker", "--no-undefined", "plugin.o", *map(str, kernel_objects), "-o", str(lib)], build)
    symbols = exported(lib)
    wanted = {"getCreators", "setLoggerFinder", "mambalitesr_plugin_version", *C_API}
    assert wanted <= symbols, wanted - symbols
    # IPluginV3 only: the IPluginV2 loader name would hand V3 creators to a V2 loader.
    assert "getPluginCreators" not in symbols
    run([NVCC, "-x", "c++", "-O1", *HOST_FLAGS, *includes, "-c", str(SRC / "plugin_selftest.cpp"), "-o",
         "selftest.o"], build)
    run([NVCC, "selftest.o", "plugin.o", *map(str, kernel_objects), "-o", "selftest"], build)
    proc = subprocess.run([str(build / "selftest")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "passed: 0 failure(s)" in proc.stdout, proc.stdout + proc.stderr


# --- CMake: cudart linked once --------------------------------------------------------------------------------

@needs_nvcc
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_links_cudart_once_and_shared(tmp_path):
    """The kernel library's link line names the shared cudart and not cudart_static (CMake's CUDA default)."""
    build = tmp_path / "cmake-build"
    configure = subprocess.run(
        ["cmake", "-S", str(SRC), "-B", str(build), "-DMAMBALITESR_BUILD_PLUGIN=OFF", "-DCMAKE_CUDA_ARCHITECTURES=87",
         f"-DCMAKE_CUDA_COMPILER={NVCC}"], capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    proc = subprocess.run(["cmake", "--build", str(build), "--target", "mambalitesr_selective_scan", "--", "VERBOSE=1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    link_lines = [line for line in proc.stdout.splitlines() if "libmambalitesr_selective_scan.so" in line
                  and " -o " in line]
    assert link_lines, proc.stdout[-4000:]
    line = link_lines[-1]
    cudart = [w for w in line.split() if "cudart" in w and "cudadevrt" not in w]
    assert len(cudart) == 1 and "cudart_static" not in cudart[0], f"cudart linked {len(cudart)} times: {cudart}"
    needed = subprocess.run(["readelf", "-d", str(build / "libmambalitesr_selective_scan.so")],
                            capture_output=True, text=True).stdout
    assert "libcudart.so" in needed, needed
