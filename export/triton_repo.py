"""A Triton Inference Server model repository (and a DeepStream nvinfer config) for the student.

Glossary (code name -> meaning / paper symbol):
    REPO            the folder ``tritonserver --model-repository REPO`` serves
    <name>_trt      ``tensorrt_plan`` model: ``1/model.plan`` is a TensorRT engine built on the serving GPU
                    (engines are not portable across GPUs / TensorRT versions), needing the SelectiveScan plugin
    <name>_onnx     ``onnxruntime_onnx`` model: the plugin-form ONNX graph (dynamic B, h, w) run by ONNX Runtime's
                    TensorRT execution provider with the plugin library loaded in the server process
    <name>_python   ``python`` backend model for CPU-only servers: the PyTorch student (native C scan)
    lr, sr          input (B, 3, h, w) RGB float32 in [0, 1]; output (B, 3, s h, s w) float32, not clamped
    s (scale)       the upscaling factor, also stored as the config parameter ``scale``
    plugins/        ``libmambalitesr_plugins.so`` (built on the device from export/plugins/selective_scan)
    deepstream/     ``config_infer_mambalitesr.txt`` (nvinfer) + an N-RTSP-source app config and README

Every ``config.pbtxt`` has dynamic batching and dynamic h/w (dims [3, -1, -1] under ``max_batch_size``).
The repository is written into a temporary sibling folder and renamed into place, so a failed export
leaves nothing half-written. Files that can only be made on the GPU (the engine, the plugin library) are
copied in when given (``--engine``, ``--plugin``); otherwise the README gives the command that makes each,
at the exact path the configs name.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mambalitesr.errors import UserError

INPUT_NAME, OUTPUT_NAME = "lr", "sr"  # the names the ONNX export gives the graph's input and output
PLUGIN_FILE = "libmambalitesr_plugins.so"  # for IPluginRegistry::loadLibrary: engine builds, trtexec
# The same plugin registering itself when loaded, for the server: Triton's TensorRT backend (`plugins=`) and
# DeepStream (`custom-lib-path`) only dlopen a plugin library and never call its getCreators.
SERVER_PLUGIN_FILE = "libmambalitesr_plugins_autoreg.so"
ENGINE_FILE = "model.plan"
ONNX_FILE = "model.onnx"
DEEPSTREAM_DIR = "deepstream"
NVINFER_FILE = "config_infer_mambalitesr.txt"
DS_APP_FILE = "deepstream_app_rtsp.txt"
# Official NVIDIA NGC images that hold tritonserver with the TensorRT, ONNX Runtime and Python backends.
TRITON_IMAGE_X86 = "nvcr.io/nvidia/tritonserver:25.01-py3"
TRITON_IMAGE_JETSON = "nvcr.io/nvidia/tritonserver:25.01-py3-igpu"  # JetPack 6 (iGPU build, aarch64)
DEEPSTREAM_IMAGE_X86 = "nvcr.io/nvidia/deepstream:7.1-triton-multiarch"
DEEPSTREAM_IMAGE_JETSON = "nvcr.io/nvidia/deepstream:7.1-triton-multiarch"  # the same tag is multi-arch


@dataclass
class TritonRepoConfig:
    """What ``export triton`` writes."""

    out: Path
    model: str = "mambalitesr_x4"  # registry name of the student
    weights: str | None = None  # None: the model's shipped weights
    scale: int = 4
    name: str = "mambalitesr"  # prefix of the Triton model names
    max_batch_size: int = 8
    queue_delay_us: int = 2000  # how long Triton's dynamic batcher waits to fill a batch
    onnx: Path | None = None  # a plugin-form --dynamic ONNX graph to copy (else none is written)
    engine: Path | None = None  # a built engine to copy into <name>_trt/1/model.plan
    plugin: Path | None = None  # the built plugin library to copy into plugins/
    max_hw: tuple[int, int] = (360, 640)  # the engine profile's largest (h, w): DeepStream's network size
    sources: int = 4  # RTSP sources in the DeepStream app example
    force: bool = False


# -- config.pbtxt text -----------------------------------------------------------------------------
def _io_block(scale: int) -> str:
    return (
        f'input [\n  {{\n    name: "{INPUT_NAME}"\n    data_type: TYPE_FP32\n    dims: [ 3, -1, -1 ]\n  }}\n]\n'
        f'output [\n  {{\n    name: "{OUTPUT_NAME}"\n    data_type: TYPE_FP32\n    dims: [ 3, -1, -1 ]\n  }}\n]\n'
    )


def _batching(cfg: TritonRepoConfig) -> str:
    sizes = ", ".join(str(b) for b in (2, 4, 8) if b <= cfg.max_batch_size) or str(cfg.max_batch_size)
    return (
        f"max_batch_size: {cfg.max_batch_size}\n"
        f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
        f"  max_queue_delay_microseconds: {cfg.queue_delay_us}\n}}\n"
    )


def _parameters(params: dict[str, str]) -> str:
    return "".join(f'parameters {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n' for k, v in params.items())


def trt_config(cfg: TritonRepoConfig) -> str:
    return (
        f'name: "{cfg.name}_trt"\nplatform: "tensorrt_plan"\ndefault_model_filename: "{ENGINE_FILE}"\n'
        + _batching(cfg) + _io_block(cfg.scale)
        + 'instance_group [\n  {\n    kind: KIND_GPU\n    count: 1\n  }\n]\n'
        + _parameters({"scale": str(cfg.scale), "plugin": f"../plugins/{SERVER_PLUGIN_FILE}"})
    )


def onnx_config(cfg: TritonRepoConfig) -> str:
    return (
        f'name: "{cfg.name}_onnx"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "{ONNX_FILE}"\n'
        + _batching(cfg) + _io_block(cfg.scale)
        + 'instance_group [\n  {\n    kind: KIND_GPU\n    count: 1\n  }\n]\n'
        # The SelectiveScan nodes have no ONNX Runtime CPU/CUDA kernel: the whole graph must go to the
        # TensorRT execution provider, which finds the plugin creators the server process has loaded.
        + "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n"
        + '        name: "tensorrt"\n'
        + '        parameters { key: "precision_mode" value: "FP32" }\n'
        + '        parameters { key: "trt_engine_cache_enable" value: "true" }\n'
        + '        parameters { key: "trt_engine_cache_path" value: "/tmp/mambalitesr_ort_trt_cache" }\n'
        + "      }\n    ]\n  }\n}\n"
        + _parameters({"scale": str(cfg.scale), "plugin": f"../plugins/{SERVER_PLUGIN_FILE}"})
    )


def python_config(cfg: TritonRepoConfig) -> str:
    params = {"scale": str(cfg.scale), "model": cfg.model}
    if cfg.weights:
        params["weights"] = str(Path(cfg.weights).resolve())
    return (
        f'name: "{cfg.name}_python"\nbackend: "python"\n'
        + _batching(cfg) + _io_block(cfg.scale)
        + 'instance_group [\n  {\n    kind: KIND_CPU\n    count: 1\n  }\n]\n'
        + _parameters(params)
    )


PYTHON_MODEL = '''"""Triton python-backend model: the MambaLiteSR student on the CPU (written by `mambalitesr export triton`).

Needs `pip install mambalitesr` (torch CPU) in the Python environment the python backend runs.
Requests that share an (h, w) are run as one batch; each gets its own slice of the output back.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        from mambalitesr.runtime.backends import create_backend

        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.backend = create_backend("torch", model=params.get("model", "mambalitesr_x4"),
                                      weights=params.get("weights") or None, device="cpu")

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "lr").as_numpy() for r in requests]  # each (b, 3, h, w)
        responses = [None] * len(requests)
        groups = {}
        for i, x in enumerate(inputs):
            groups.setdefault(x.shape[2:], []).append(i)
        for members in groups.values():
            try:
                y = self.backend.infer(np.concatenate([inputs[i] for i in members]))  # (sum b, 3, s h, s w)
            except Exception as exc:  # one bad group must not fail the others
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
                continue
            start = 0
            for i in members:
                b = inputs[i].shape[0]
                out = pb_utils.Tensor("sr", np.ascontiguousarray(y[start:start + b]))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start += b
        return responses

    def finalize(self):
        self.backend.close()
'''


# -- DeepStream ---------------------------------------------------------------------------------------
def nvinfer_config(cfg: TritonRepoConfig) -> dict[str, dict[str, str]]:
    """The nvinfer ``[property]`` group; paths are relative to the config file (nvinfer resolves them so)."""
    h, w = cfg.max_hw
    return {
        "property": {
            "gpu-id": "0",
            "net-scale-factor": "0.00392156862745098",  # 1/255: uint8 -> [0, 1], the model's input range
            "model-color-format": "0",  # RGB
            "onnx-file": f"../{cfg.name}_onnx/1/{ONNX_FILE}",  # nvinfer builds the engine from it when missing
            "model-engine-file": f"../{cfg.name}_trt/1/{ENGINE_FILE}",
            "custom-lib-path": f"../plugins/{SERVER_PLUGIN_FILE}",  # nvinfer only dlopens it
            "infer-dims": f"3;{h};{w}",
            "batch-size": str(cfg.max_batch_size),
            "network-mode": "0",  # FP32
            "network-type": "100",  # "other": no detector/classifier parsing of the output
            "output-tensor-meta": "1",  # attach sr to the frame meta for a downstream probe
            "process-mode": "1",  # full frame
            "gie-unique-id": "1",
            "maintain-aspect-ratio": "0",
        }
    }


def format_ini(groups: dict[str, dict[str, str]]) -> str:
    return "".join(f"[{g}]\n" + "".join(f"{k}={v}\n" for k, v in kv.items()) + "\n" for g, kv in groups.items())


def deepstream_app_config(cfg: TritonRepoConfig) -> dict[str, dict[str, str]]:
    """deepstream-app groups for ``cfg.sources`` RTSP cameras batched into one nvinfer."""
    h, w = cfg.max_hw
    groups: dict[str, dict[str, str]] = {
        "application": {"enable-perf-measurement": "1", "perf-measurement-interval-sec": "5"},
    }
    for i in range(cfg.sources):
        groups[f"source{i}"] = {
            "enable": "1", "type": "4",  # 4 = RTSP
            "uri": f"rtsp://CAMERA{i}_HOST:554/stream", "num-sources": "1", "gpu-id": "0",
            "latency": "200", "rtsp-reconnect-interval-sec": "5",
        }
    groups["streammux"] = {
        "gpu-id": "0", "batch-size": str(cfg.sources), "batched-push-timeout": "40000",
        "width": str(w), "height": str(h), "live-source": "1",
    }
    groups["primary-gie"] = {"enable": "1", "gpu-id": "0", "batch-size": str(cfg.sources),
                             "gie-unique-id": "1", "config-file": NVINFER_FILE}
    groups["sink0"] = {"enable": "1", "type": "1", "sync": "0"}  # fakesink: the tensor meta is the product
    return groups


# -- README ------------------------------------------------------------------------------------------
def readme(cfg: TritonRepoConfig, have_onnx: bool, have_engine: bool, have_plugin: bool,
           have_server_plugin: bool) -> str:
    n = cfg.name
    h, w = cfg.max_hw
    b = cfg.max_batch_size
    todo = lambda ok: "present" if ok else "**to build on the device (command below)**"  # noqa: E731
    return f"""# MambaLiteSR Triton model repository ({cfg.model}, x{cfg.scale})

Written by `mambalitesr export triton`. Three models, one interface: input `{INPUT_NAME}` (B, 3, h, w) RGB float32
in [0, 1], output `{OUTPUT_NAME}` (B, 3, {cfg.scale}h, {cfg.scale}w) float32, not clamped. Every config has dynamic
batching (max batch {b}, queue delay {cfg.queue_delay_us} us) and dynamic h, w.

| model | backend | file | state |
|---|---|---|---|
| `{n}_trt` | tensorrt_plan | `{n}_trt/1/{ENGINE_FILE}` | {todo(have_engine)} |
| `{n}_onnx` | onnxruntime_onnx (TensorRT EP) | `{n}_onnx/1/{ONNX_FILE}` | {todo(have_onnx)} |
| `{n}_python` | python (CPU, PyTorch) | `{n}_python/1/model.py` | present |
| plugin | SelectiveScan TensorRT plugin, for engine builds (`loadLibrary`) | `plugins/{PLUGIN_FILE}` | {todo(have_plugin)} |
| server plugin | the same, registering itself at load (Triton, DeepStream) | `plugins/{SERVER_PLUGIN_FILE}` | {todo(have_server_plugin)} |

## Build the GPU files on the serving machine

Engines are specific to the GPU and TensorRT version, so they are built where they run (in the Triton
container below, or on the Jetson):

```
# the plugin libraries (CUDA + TensorRT 10 headers and libnvinfer)
cmake -S export/plugins/selective_scan -B build/plugins -DCMAKE_BUILD_TYPE=Release && cmake --build build/plugins -j
cp build/plugins/{PLUGIN_FILE} build/plugins/{SERVER_PLUGIN_FILE} REPO/plugins/
# the plugin-form ONNX graph with dynamic batch, height and width
mambalitesr export onnx --model {cfg.model} --scan plugin --dynamic -o REPO/{n}_onnx/1/{ONNX_FILE}
# the engine, with a profile covering batch 1..{b} and frames up to {w}x{h}
mambalitesr export engine REPO/{n}_onnx/1/{ONNX_FILE} --plugin REPO/plugins/{PLUGIN_FILE} \\
    --min-shape 1x3x16x16 --opt-shape {b}x3x{h // 2}x{w // 2} --max-shape {b}x3x{h}x{w} -o REPO/{n}_trt/1/{ENGINE_FILE}
# or equally: trtexec --onnx=REPO/{n}_onnx/1/{ONNX_FILE} --dynamicPlugins=REPO/plugins/{PLUGIN_FILE} \\
#    --minShapes=lr:1x3x16x16 --optShapes=lr:{b}x3x{h // 2}x{w // 2} --maxShapes=lr:{b}x3x{h}x{w} --saveEngine=REPO/{n}_trt/1/{ENGINE_FILE}
```
(`mambalitesr export triton -o REPO --onnx FILE --engine FILE --plugin LIB` copies ready files in.)

## Serve it

The server process must load the plugin before the models. Triton's TensorRT backend only `dlopen`s the
libraries named in `plugins=`, so it is given the variant that registers its creator when loaded:

```
tritonserver --model-repository=$PWD/REPO \\
    --backend-config=tensorrt,plugins=$PWD/REPO/plugins/{SERVER_PLUGIN_FILE}
# or, for the onnxruntime model too (its TensorRT EP sees the creators registered in the process):
LD_PRELOAD=$PWD/REPO/plugins/{SERVER_PLUGIN_FILE} tritonserver --model-repository=$PWD/REPO
# or let mambalitesr start it (it execs the tritonserver on PATH with the same arguments):
mambalitesr serve --model-repository REPO
```

Containers with tritonserver and the TensorRT, ONNX Runtime and Python backends:
x86-64 `{TRITON_IMAGE_X86}`, Jetson (JetPack 6) `{TRITON_IMAGE_JETSON}`:

```
docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -v $PWD/REPO:/models {TRITON_IMAGE_X86} \\
    tritonserver --model-repository=/models --backend-config=tensorrt,plugins=/models/plugins/{SERVER_PLUGIN_FILE}
```

A CPU-only server keeps only `{n}_python` (delete the other two folders, or start tritonserver with
`--model-control-mode=explicit --load-model={n}_python`); its Python environment needs `pip install mambalitesr`.

Clients: `mambalitesr camera --backend triton --url HOST:8001 --triton-model {n}_trt` (gRPC), or any
Triton client sending `{INPUT_NAME}` as FP32 (B, 3, h, w).

`{PLUGIN_FILE}` registers its creator only through TensorRT's `getCreators` entry point
(`IPluginRegistry::loadLibrary`, `trtexec --dynamicPlugins`, `mambalitesr export engine --plugin`);
`{SERVER_PLUGIN_FILE}` registers it when loaded (and so lists none through `getCreators`), for loaders that
only `dlopen`. Check the server log for `SelectiveScan` when the `{n}_trt` model loads.

## DeepStream

`{DEEPSTREAM_DIR}/{NVINFER_FILE}` is an `nvinfer` config for the same engine (`model-engine-file`), with
`custom-lib-path` naming the plugin and `onnx-file` to build the engine from when it is missing;
`{DEEPSTREAM_DIR}/{DS_APP_FILE}` runs {cfg.sources} RTSP cameras batched into it. See `{DEEPSTREAM_DIR}/README.md`.
"""


def deepstream_readme(cfg: TritonRepoConfig) -> str:
    h, w = cfg.max_hw
    return f"""# DeepStream: {cfg.sources} RTSP cameras through MambaLiteSR

`{NVINFER_FILE}` configures `nvinfer` for the engine `../{cfg.name}_trt/1/{ENGINE_FILE}` (paths are relative to
this folder, as nvinfer resolves them). `custom-lib-path` loads `../plugins/{SERVER_PLUGIN_FILE}`, the SelectiveScan
plugin. The network input is {w}x{h} (`infer-dims`), the engine's max profile; `net-scale-factor` 1/255 maps
uint8 to the model's [0, 1] RGB. `network-type=100` with `output-tensor-meta=1`: nvinfer does no parsing and
attaches the SR output `sr` (3, {cfg.scale * h}, {cfg.scale * w}) to each frame's user meta, for a pad probe (or a
custom nvdspostprocess library) to read.

1. Build the plugin and the engine as in `../README.md` (in the DeepStream container, the engine must match
   its TensorRT).
2. Put your cameras' URLs in `{DS_APP_FILE}` (`[sourceN] uri=rtsp://...`; add or delete groups; set
   `[streammux] batch-size` and `[primary-gie] batch-size` to the number of cameras, at most {cfg.max_batch_size}).
3. Run it:

```
docker run --rm --runtime nvidia --network host -v $PWD/REPO:/repo -w /repo/{DEEPSTREAM_DIR} \\
    {DEEPSTREAM_IMAGE_X86} deepstream-app -c {DS_APP_FILE}
```
(on a Jetson the same tag, `{DEEPSTREAM_IMAGE_JETSON}`, is the aarch64 image; or JetPack's own `deepstream-app`.)

The same pipeline by hand, for one camera:
```
gst-launch-1.0 rtspsrc location=rtsp://CAMERA:554/stream latency=200 ! rtph264depay ! h264parse ! nvv4l2decoder ! \\
    m.sink_0 nvstreammux name=m batch-size=1 width={w} height={h} live-source=1 ! \\
    nvinfer config-file-path={NVINFER_FILE} ! fakesink sync=false
```
"""


# -- writer ------------------------------------------------------------------------------------------
def _copy(src: Path | None, dst: Path, what: str) -> bool:
    if src is None:
        return False
    src = Path(src)
    if not src.is_file():
        raise UserError(f"{src}: no such {what}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return True


def _check_onnx(path: Path) -> None:
    """The graph Triton's configs describe: input lr / output sr, symbolic batch, height and width."""
    try:
        import onnx
    except ImportError:
        return  # the export extra is absent: the file is copied as given
    model = onnx.load(str(path), load_external_data=False)
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise UserError(f"{path}: inputs/outputs {names}; expected [{INPUT_NAME!r}] / [{OUTPUT_NAME!r}] "
                        "(a graph from `mambalitesr export onnx`)")
    if any((n.domain, n.op_type) == ("mambalitesr", "MambaMixer") for n in model.graph.node):
        raise UserError(f"{path}: a fused-form graph (MambaMixer nodes run only on this package's ONNX Runtime CPU "
                        "kernels, which Triton does not load); give the plugin form: `--scan plugin --dynamic`")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    static = [i for i in (0, 2, 3) if dims[i].HasField("dim_value")]
    if static:
        raise UserError(f"{path}: input dims {[d.dim_value or d.dim_param for d in dims]} are fixed; the Triton configs "
                        "need dynamic batch and h, w: export with `--scan plugin --dynamic`")


def write_repository(cfg: TritonRepoConfig) -> dict:
    """Write the repository atomically; returns what it holds (for the command's summary)."""
    if cfg.max_batch_size < 1:
        raise UserError(f"--max-batch-size must be >= 1, got {cfg.max_batch_size}")
    if cfg.sources < 1:
        raise UserError(f"--sources must be >= 1, got {cfg.sources}")
    out = Path(cfg.out)
    if out.exists() and not cfg.force:
        raise UserError(f"{out} exists; choose a new folder or pass --force to replace it")
    if cfg.onnx is not None and Path(cfg.onnx).is_file():
        _check_onnx(Path(cfg.onnx))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        n = cfg.name
        files = {
            f"{n}_trt/config.pbtxt": trt_config(cfg),
            f"{n}_onnx/config.pbtxt": onnx_config(cfg),
            f"{n}_python/config.pbtxt": python_config(cfg),
            f"{n}_python/1/model.py": PYTHON_MODEL,
            f"{DEEPSTREAM_DIR}/{NVINFER_FILE}": format_ini(nvinfer_config(cfg)),
            f"{DEEPSTREAM_DIR}/{DS_APP_FILE}": format_ini(deepstream_app_config(cfg)),
            f"{DEEPSTREAM_DIR}/README.md": deepstream_readme(cfg),
        }
        have_onnx = _copy(cfg.onnx, tmp / f"{n}_onnx/1/{ONNX_FILE}", "ONNX file")
        have_engine = _copy(cfg.engine, tmp / f"{n}_trt/1/{ENGINE_FILE}", "engine file")
        have_plugin = _copy(cfg.plugin, tmp / f"plugins/{PLUGIN_FILE}", "plugin library")
        # CMake builds the server variant beside the plain library: take it from the same folder
        server_plugin = Path(cfg.plugin).with_name(SERVER_PLUGIN_FILE) if cfg.plugin is not None else None
        have_server_plugin = server_plugin is not None and server_plugin.is_file() and _copy(
            server_plugin, tmp / f"plugins/{SERVER_PLUGIN_FILE}", "server plugin library")
        files["README.md"] = readme(cfg, have_onnx, have_engine, have_plugin, have_server_plugin)
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for version_dir in (f"{n}_trt/1", f"{n}_onnx/1", "plugins"):  # where the device-built files go
            (tmp / version_dir).mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": out, "onnx": have_onnx, "engine": have_engine, "plugin": have_plugin,
            "server_plugin": have_server_plugin,
            "models": [f"{n}_trt", f"{n}_onnx", f"{n}_python"]}
