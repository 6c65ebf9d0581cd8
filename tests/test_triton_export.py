"""`export triton`: every config.pbtxt parses into Triton's own ModelConfig protobuf (from tritonclient), with
dynamic batching and dynamic h/w; the DeepStream nvinfer config has its keys and names files of the repository."""
from __future__ import annotations

import configparser
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="pip install 'mambalitesr[serve]' (tritonclient ships ModelConfig)")
from google.protobuf import text_format  # noqa: E402

from mambalitesr.errors import UserError  # noqa: E402
from mambalitesr.export.triton_repo import (DEEPSTREAM_DIR, DS_APP_FILE, ENGINE_FILE, NVINFER_FILE,  # noqa: E402
                                            ONNX_FILE, PLUGIN_FILE, SERVER_PLUGIN_FILE, TritonRepoConfig,
                                            write_repository)

NVINFER_KEYS = ("gpu-id", "net-scale-factor", "model-color-format", "onnx-file", "model-engine-file", "custom-lib-path",
                "infer-dims", "batch-size", "network-mode", "network-type", "output-tensor-meta", "gie-unique-id")


class StandIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 48, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(4)

    def forward(self, x):
        return self.shuffle(self.conv(x))


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory) -> Path:
    """A graph with the interface `export onnx --scan plugin --dynamic` writes: lr (B, 3, h, w) -> sr."""
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(StandIn().eval(), (torch.rand(2, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                          input_names=["lr"], output_names=["sr"],
                          dynamic_axes={"lr": {0: "b", 2: "h", 3: "w"}, "sr": {0: "b", 2: "H", 3: "W"}})
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory, dynamic_onnx) -> Path:
    out = tmp_path_factory.mktemp("r") / "repo"
    write_repository(TritonRepoConfig(out=out, onnx=dynamic_onnx, max_batch_size=8, sources=3, max_hw=(180, 320)))
    return out


def _parse(path: Path):
    cfg = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), cfg)  # raises ParseError on any key Triton does not know
    return cfg


def test_every_config_parses_as_triton_model_config_with_dynamic_batch_and_size(repo):
    configs = sorted(repo.glob("*/config.pbtxt"))
    assert [c.parent.name for c in configs] == ["mambalitesr_onnx", "mambalitesr_python", "mambalitesr_trt"]
    kinds = {}
    for path in configs:
        cfg = _parse(path)
        assert cfg.name == path.parent.name
        assert cfg.max_batch_size == 8
        assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds > 0
        assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [("lr", model_config_pb2.TYPE_FP32, [3, -1, -1])]
        assert [(t.name, list(t.dims)) for t in cfg.output] == [("sr", [3, -1, -1])]
        assert cfg.parameters["scale"].string_value == "4"
        kinds[path.parent.name] = cfg
    assert kinds["mambalitesr_trt"].platform == "tensorrt_plan"
    assert kinds["mambalitesr_trt"].default_model_filename == ENGINE_FILE
    assert kinds["mambalitesr_onnx"].platform == "onnxruntime_onnx"
    accel = kinds["mambalitesr_onnx"].optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accel] == ["tensorrt"]
    assert kinds["mambalitesr_python"].backend == "python"
    assert kinds["mambalitesr_python"].instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (repo / "mambalitesr_python/1/model.py").is_file() and (repo / f"mambalitesr_onnx/1/{ONNX_FILE}").is_file()
    compile((repo / "mambalitesr_python/1/model.py").read_text(), "model.py", "exec")


def test_a_broken_config_would_fail_the_parse(repo, tmp_path):
    bad = tmp_path / "config.pbtxt"
    bad.write_text((repo / "mambalitesr_trt/config.pbtxt").read_text().replace("max_batch_size", "max_batch"))
    with pytest.raises(text_format.ParseError):
        _parse(bad)


def test_deepstream_config_keys_and_the_files_it_names(repo):
    ds = repo / DEEPSTREAM_DIR
    nvinfer = configparser.ConfigParser()
    nvinfer.read(ds / NVINFER_FILE)
    prop = nvinfer["property"]
    for key in NVINFER_KEYS:
        assert key in prop, key
    assert prop["infer-dims"] == "3;180;320" and prop["batch-size"] == "8"
    # nvinfer resolves relative paths against the config's folder; each must land inside the repository
    named = {key: (ds / prop[key]).resolve() for key in ("onnx-file", "model-engine-file", "custom-lib-path")}
    for key, path in named.items():
        assert path.is_relative_to(repo.resolve()), (key, path)
    assert named["onnx-file"].is_file()
    assert named["model-engine-file"] == (repo / f"mambalitesr_trt/1/{ENGINE_FILE}").resolve()
    # nvinfer only dlopens custom-lib-path: it must name the variant that registers its creator when loaded
    assert named["custom-lib-path"] == (repo / f"plugins/{SERVER_PLUGIN_FILE}").resolve()
    # the three GPU-built files are absent here: the README says they are to build, with commands writing there
    readme = (repo / "README.md").read_text()
    assert readme.count("**to build on the device (command below)**") == 3
    assert f"-o REPO/mambalitesr_trt/1/{ENGINE_FILE}" in readme
    assert f"cp build/plugins/{PLUGIN_FILE} build/plugins/{SERVER_PLUGIN_FILE} REPO/plugins/" in readme
    # Triton's TensorRT backend only dlopens `plugins=` libraries: the server is given the self-registering one,
    # engine builds (loadLibrary) the plain one
    assert f"--backend-config=tensorrt,plugins=$PWD/REPO/plugins/{SERVER_PLUGIN_FILE}" in readme
    assert f"LD_PRELOAD=$PWD/REPO/plugins/{SERVER_PLUGIN_FILE}" in readme
    assert f"--plugin REPO/plugins/{PLUGIN_FILE}" in readme and f"plugins={PLUGIN_FILE}" not in readme
    assert "nvcr.io/nvidia/tritonserver:" in readme

    app = configparser.ConfigParser()
    app.read(ds / DS_APP_FILE)
    sources = [s for s in app.sections() if s.startswith("source")]
    assert len(sources) == 3 and all(app[s]["type"] == "4" and app[s]["uri"].startswith("rtsp://") for s in sources)
    assert app["streammux"]["batch-size"] == "3"
    assert (ds / app["primary-gie"]["config-file"]).resolve() == (ds / NVINFER_FILE).resolve()
    assert "nvv4l2decoder" in (ds / "README.md").read_text()


def test_given_engine_and_plugin_are_copied_and_named(tmp_path, dynamic_onnx):
    engine, plugin = tmp_path / "e.plan", tmp_path / PLUGIN_FILE
    engine.write_bytes(b"engine bytes")
    plugin.write_bytes(b"plugin bytes")
    (tmp_path / SERVER_PLUGIN_FILE).write_bytes(b"self-registering plugin bytes")  # CMake builds it alongside
    out = tmp_path / "repo"
    result = write_repository(TritonRepoConfig(out=out, onnx=dynamic_onnx, engine=engine, plugin=plugin))
    assert result["engine"] and result["plugin"] and result["server_plugin"]
    assert (out / "plugins" / SERVER_PLUGIN_FILE).read_bytes() == b"self-registering plugin bytes"
    nvinfer = configparser.ConfigParser()
    nvinfer.read(out / DEEPSTREAM_DIR / NVINFER_FILE)
    for key in ("onnx-file", "model-engine-file", "custom-lib-path"):
        assert (out / DEEPSTREAM_DIR / nvinfer["property"][key]).is_file(), key
    assert "to build on the device" not in (out / "README.md").read_text()


def test_existing_repository_is_not_overwritten_without_force(repo, dynamic_onnx):
    with pytest.raises(UserError, match="--force"):
        write_repository(TritonRepoConfig(out=repo, onnx=dynamic_onnx))


def test_fixed_size_onnx_is_refused(tmp_path):
    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(StandIn().eval(), (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                          input_names=["lr"], output_names=["sr"])
    with pytest.raises(UserError, match="--dynamic"):
        write_repository(TritonRepoConfig(out=tmp_path / "repo", onnx=path))
    assert not (tmp_path / "repo").exists()


def test_fused_form_onnx_is_refused(tmp_path):
    """Triton's onnxruntime_onnx model (TensorRT EP) cannot load this package's MambaMixer kernels."""
    from mambalitesr.runtime.backends.shipped import shipped_onnx_path

    with pytest.raises(UserError, match="fused-form graph.*--scan plugin --dynamic"):
        write_repository(TritonRepoConfig(out=tmp_path / "repo", onnx=shipped_onnx_path("mambalitesr_x4", "fused")))
    assert not (tmp_path / "repo").exists()


def test_cli_bad_input_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mambalitesr", "export", "triton", "-o", str(tmp_path / "r"),
                        "--onnx", str(tmp_path / "missing.onnx")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mambalitesr export triton: error: argument --onnx:"), r.stderr


# -- the generated python-backend model in a real tritonserver ------------------------------------------------
def _pytriton_tritonserver(tmp: Path) -> tuple[Path, dict]:
    """pytriton's tritonserver laid out as pytriton does it (the stub for this Python in backends/python)."""
    import os
    import shutil
    import sysconfig

    pytriton = pytest.importorskip("pytriton", reason="pip install 'mambalitesr[serve]' (ships tritonserver)")
    dist = Path(pytriton.__file__).parent / "tritonserver"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    server = tmp / "tritonserver"
    shutil.copytree(dist, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    stub = dist / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    shutil.copy(stub, server / "backends" / "python" / stub.name)
    env = dict(os.environ)
    # the stub must embed this interpreter's libpython and see this environment's packages (torch, mambalitesr)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (sysconfig.get_config_var("LIBDIR"), str(libs),
                                                         env.get("LD_LIBRARY_PATH")) if p)
    env["PYTHONPATH"] = os.pathsep.join(sys.path[1:])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return server, env


def test_python_backend_model_runs_in_tritonserver(repo, tmp_path):
    import numpy as np

    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.triton_backend import TritonBackend
    from mambalitesr.runtime.serve.ports import free_port

    server, env = _pytriton_tritonserver(tmp_path)
    grpc = free_port()
    cmd = [str(server / "bin" / "tritonserver"), f"--model-repository={repo}",
           f"--backend-directory={server / 'backends'}", "--model-control-mode=explicit",
           "--load-model=mambalitesr_python", "--http-address=127.0.0.1", f"--http-port={free_port()}",
           "--grpc-address=127.0.0.1", f"--grpc-port={grpc}", f"--metrics-port={free_port()}"]
    log = tmp_path / "tritonserver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        import time

        backend = TritonBackend(url=f"127.0.0.1:{grpc}", model_name="mambalitesr_python")
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                backend.load()
                break
            except UserError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        assert backend.scale == 4 and backend.max_batch == 8  # from the config's parameters and max_batch_size
        x = np.random.default_rng(0).random((2, 3, 12, 20), dtype=np.float32)
        y = backend.infer(x)
        backend.close()
        expected = create_backend("torch", threads=1).infer(x)
        assert y.shape == (2, 3, 48, 80)
        assert float(np.abs(y - expected).max()) <= 1e-4
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_with_the_shipped_graph(tmp_path):
    import mambalitesr.models as models_pkg

    if not (Path(models_pkg.__file__).parent / "weights" / "mambalitesr_x4.onnx").is_file():
        pytest.skip("no shipped ONNX graph for mambalitesr_x4 in this install")
    out = tmp_path / "repo"
    r = subprocess.run([sys.executable, "-m", "mambalitesr", "export", "triton", "-o", str(out), "--sources", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "to build on the GPU: engine, plugin library, server plugin library" in r.stdout
    for path in out.glob("*/config.pbtxt"):
        _parse(path)
    assert (out / f"mambalitesr_onnx/1/{ONNX_FILE}").stat().st_size > 10_000


def test_serve_hands_triton_the_self_registering_plugin(tmp_path):
    """`mambalitesr serve --model-repository` passes Triton's TensorRT backend the library that registers itself
    when dlopened, and refuses a repository holding only the loadLibrary one (the trt model could not load)."""
    import argparse

    from mambalitesr.runtime.serve import serve_cli

    assert (serve_cli.PLUGIN_FILE, serve_cli.SERVER_PLUGIN_FILE) == (PLUGIN_FILE, SERVER_PLUGIN_FILE)
    repo = tmp_path / "repo"
    (repo / "plugins").mkdir(parents=True)
    args = argparse.Namespace(model_repository=str(repo), host="127.0.0.1", http_port=1, grpc_port=2,
                              metrics_port=3, log_verbose=0)
    assert not any(a.startswith("--backend-config") for a in serve_cli.tritonserver_argv("tritonserver", args))
    (repo / "plugins" / PLUGIN_FILE).write_bytes(b"x")
    with pytest.raises(UserError, match=f"not {SERVER_PLUGIN_FILE}"):
        serve_cli.tritonserver_argv("tritonserver", args)
    (repo / "plugins" / SERVER_PLUGIN_FILE).write_bytes(b"x")
    argv = serve_cli.tritonserver_argv("tritonserver", args)
    assert f"--backend-config=tensorrt,plugins={(repo / 'plugins' / SERVER_PLUGIN_FILE).resolve()}" in argv
