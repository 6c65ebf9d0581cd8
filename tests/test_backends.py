"""Backends behind one interface: torch, onnxruntime, and tensorrt (bookkeeping only, on fakes, here).

A stand-in SR model (conv -> ReLU -> conv -> pixel shuffle) keeps these fast; the registry's tiny
``test_x4`` checks the real network through the torch backend.
"""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mambalitesr.errors import MissingDependency, UserError  # noqa: E402
from mambalitesr.runtime.backends import BACKENDS, create_backend  # noqa: E402
from mambalitesr.testing import assert_close  # noqa: E402


class StandIn(torch.nn.Module):
    """A local SR model: receptive field radius 2 LR pixels; (B, 3, h, w) -> (B, 3, s*h, s*w)."""

    def __init__(self, scale: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, 3 * scale * scale, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2
        self.shuffle = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.c2(torch.relu(self.c1(x))))


def export_onnx(model, path, hw=None):
    """Dynamic (B, h, w) unless ``hw`` fixes the input to (1, 3, *hw)."""
    x = torch.rand(1, 3, *(hw or (16, 16)))
    dynamic = None if hw else {"lr": {0: "b", 2: "h", 3: "w"}, "sr": {0: "b", 2: "H", 3: "W"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, input_names=["lr"], output_names=["sr"],
                          dynamic_axes=dynamic, opset_version=17)
    return path


@pytest.fixture(scope="module")
def standin():
    return StandIn().eval()


@pytest.fixture(scope="module")
def onnx_dynamic(standin, tmp_path_factory):
    return export_onnx(standin, tmp_path_factory.mktemp("onnx") / "standin.onnx")


def _batch(b=2, h=20, w=24, seed=1):
    return np.random.default_rng(seed).random((b, 3, h, w), dtype=np.float32)


# -- registry -------------------------------------------------------------------------------
def test_unknown_backend_lists_the_choices():
    with pytest.raises(UserError, match="torch, onnxruntime, tensorrt"):
        create_backend("openvino")
    assert set(BACKENDS) == {"torch", "onnxruntime", "tensorrt", "triton"}


# -- torch ----------------------------------------------------------------------------------
def test_torch_backend_runs_a_module_and_measures_its_scale(standin):
    backend = create_backend("torch", module=standin)
    assert backend.scale == 4 and backend.fixed_hw is None and backend.precision == "fp32"
    x = _batch()
    y = backend.infer(x)
    assert y.shape == (2, 3, 80, 96) and y.dtype == np.float32
    with torch.inference_mode():
        want = standin(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(y, want)
    pending = backend.submit(x)
    np.testing.assert_array_equal(pending.wait(), want)
    assert pending.compute_s > 0
    assert "torch" in backend.describe() and "x4" in backend.describe()


def test_torch_backend_rejects_what_it_cannot_do(standin):
    backend = create_backend("torch", module=standin)
    with pytest.raises(UserError, match=r"\(B, 3, h, w\)"):
        backend.infer(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(UserError, match="fp16 runs on CUDA only"):
        create_backend("torch", module=standin, precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(MissingDependency, match="cuda"):
            create_backend("torch", module=standin, device="cuda")


def test_torch_backend_builds_registry_models():
    from mambalitesr.models.registry import create_model

    backend = create_backend("torch", model="test_x4", scan_backend="chunked")
    assert backend.scale == 4 and backend.scan_backend == "chunked"
    torch.manual_seed(0)
    reference = create_model("test_x4", scan_backend="chunked")
    reference.load_state_dict(backend.module.state_dict())
    x = _batch(1, 12, 16)
    with torch.inference_mode():
        want = reference(torch.from_numpy(x)).numpy()
    assert_close(backend.infer(x), want, what="torch backend")  # the float32 row of the one table
    with pytest.raises(UserError, match="unknown model"):
        create_backend("torch", model="no_such_model")


def test_torch_backend_defaults_to_the_native_scan_on_cpu():
    from conftest import native_scan_available

    if not native_scan_available():
        pytest.skip("native C scan library not built (pip install -e .)")
    backend = create_backend("torch", model="test_x4")
    assert backend.scan_backend == "native"
    assert backend.infer(_batch(1, 8, 8)).shape == (1, 3, 32, 32)


# -- onnxruntime ----------------------------------------------------------------------------
def test_onnxruntime_matches_torch(standin, onnx_dynamic):
    backend = create_backend("onnxruntime", onnx=str(onnx_dynamic), providers="cpu")
    assert backend.scale == 4 and backend.fixed_hw is None and backend.precision == "fp32"
    assert "CPUExecutionProvider" in backend.describe()
    x = _batch(2, 17, 23)
    with torch.inference_mode():
        want = standin(torch.from_numpy(x)).numpy()
    assert_close(backend.infer(x), want, what="onnxruntime backend")


def test_onnxruntime_fixed_shape_is_reported_and_enforced(standin, tmp_path):
    path = export_onnx(standin, tmp_path / "fixed.onnx", hw=(32, 40))
    backend = create_backend("onnxruntime", onnx=str(path))
    assert backend.fixed_hw == (32, 40) and backend.fixed_batch == 1 and backend.scale == 4
    assert backend.infer(_batch(1, 32, 40)).shape == (1, 3, 128, 160)
    with pytest.raises(UserError, match="fixed in the model"):
        backend.infer(_batch(1, 32, 48))


def test_onnxruntime_refuses_a_missing_provider(onnx_dynamic):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(MissingDependency, match="CUDAExecutionProvider is not available"):
        create_backend("onnxruntime", onnx=str(onnx_dynamic), providers="cuda,cpu")


def test_onnxruntime_bad_files(tmp_path):
    with pytest.raises(UserError, match="no ONNX graph is shipped for 'test_x4'"):
        create_backend("onnxruntime", model="test_x4")  # without --onnx: the model's shipped graph, if any
    with pytest.raises(UserError, match="no such ONNX file"):
        create_backend("onnxruntime", onnx=str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(UserError):
        create_backend("onnxruntime", onnx=str(junk))


def test_onnxruntime_custom_domain_needs_its_kernels(tmp_path, monkeypatch):
    """A model with a mambalitesr:: node registers onnxruntime-extensions; missing kernels are named."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from mambalitesr.runtime.backends import onnxruntime_backend as ob

    node = helper.make_node("SelectiveScan", ["x"], ["y"], domain="mambalitesr")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("mambalitesr", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    assert ob.custom_ops(path) == ({"mambalitesr"}, {"mambalitesr::SelectiveScan"})
    from mambalitesr.runtime.backends import ort_ops

    def no_kernels(so=None, **options):
        raise MissingDependency("the mambalitesr::SelectiveScan node needs onnxruntime-extensions (no_such_kernels)")

    monkeypatch.setattr(ort_ops, "session_options", no_kernels)
    with pytest.raises(MissingDependency, match="no_such_kernels"):
        create_backend("onnxruntime", onnx=str(path))


# -- tensorrt -------------------------------------------------------------------------------
def test_tensorrt_says_what_is_missing():
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the device tests cover it")
    except ImportError:
        pass
    with pytest.raises(MissingDependency, match="TensorRT"):
        create_backend("tensorrt", engine="model.engine")
    with pytest.raises(UserError, match="needs an engine"):
        create_backend("tensorrt")


class _FakeCuda:
    """Just enough of pycuda.driver to run the backend's bookkeeping: 'device memory' is host numpy."""

    class Error(Exception):
        pass

    def __init__(self):
        self.memory: dict[int, np.ndarray] = {}
        self.log: list[str] = []
        fake = self

        class DevPtr:
            def __init__(self, nbytes):
                self.addr = 0x1000 * (len(fake.memory) + 1)
                fake.memory[self.addr] = np.zeros(nbytes, np.uint8)

            def __int__(self):
                return self.addr

            def free(self):
                fake.memory.pop(self.addr, None)

        class Context:
            def push(self):
                pass

            def pop(self):
                pass

            def detach(self):
                pass

        class Device:
            def __init__(self, index):
                self.index = index

            @staticmethod
            def count():
                return 1

            def retain_primary_context(self):
                return Context()

        class Stream:
            def __init__(self):
                self.handle = id(self)

            def synchronize(self):
                pass

            def wait_for_event(self, event):
                pass

        class Event:
            def record(self, stream=None):
                self.t = len(fake.log)

            def synchronize(self):
                pass

            def time_since(self, other):
                return 1.5  # ms

        self.DevPtr, self.Device, self.Stream, self.Event = DevPtr, Device, Stream, Event

    def init(self):
        pass

    def pagelocked_empty(self, n, dtype):
        return np.zeros(n, dtype)

    def mem_alloc(self, nbytes):
        return self.DevPtr(nbytes)

    def memcpy_htod_async(self, dev, host, stream):
        raw = np.ascontiguousarray(host).view(np.uint8).ravel()
        self.memory[int(dev)][: raw.size] = raw
        self.log.append(f"h2d {int(dev):#x}")

    def memcpy_dtoh_async(self, host, dev, stream):
        raw = host.view(np.uint8).reshape(-1)
        raw[:] = self.memory[int(dev)][: raw.size]
        self.log.append(f"d2h {int(dev):#x}")


def _fake_tensorrt(cuda: _FakeCuda, scale: int = 2):
    trt = types.SimpleNamespace(__version__="10.3.0")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dt: dt

    class Context:
        def __init__(self):
            self.shape, self.addr = None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            b, c, h, w = self.shape
            return (b, c, h * scale, w * scale) if name == "sr" else self.shape

        def set_tensor_address(self, name, addr):
            self.addr[name] = addr

        def execute_async_v3(self, handle):
            n = int(np.prod(self.shape))
            x = cuda.memory[self.addr["lr"]][: n * 4].view(np.float32).reshape(self.shape)
            y = np.ascontiguousarray(x.repeat(scale, 2).repeat(scale, 3) * 2.0)  # "model": nearest x2, doubled
            cuda.memory[self.addr["sr"]][: y.nbytes] = y.view(np.uint8).ravel()
            cuda.log.append(f"exec {self.addr['lr']:#x}->{self.addr['sr']:#x}")
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ("lr", "sr")[i]

        def get_tensor_mode(self, name):
            return "in" if name == "lr" else "out"

        def get_tensor_dtype(self, name):
            return np.float32

        def get_tensor_shape(self, name):
            return (-1, 3, -1, -1)

        def get_tensor_profile_shape(self, name, profile):
            return (1, 3, 8, 8), (1, 3, 16, 16), (2, 3, 32, 32)

        def create_execution_context(self):
            return Context()

    return trt, Engine()


def test_tensorrt_double_buffering_bookkeeping_on_fakes(monkeypatch, tmp_path):
    """Two submissions in flight use different slots; outputs come back right and in order."""
    cuda = _FakeCuda()
    trt, engine = _fake_tensorrt(cuda)
    pycuda = types.ModuleType("pycuda")
    driver = types.ModuleType("pycuda.driver")
    for name in ("Error", "init", "Device", "Stream", "Event", "pagelocked_empty", "mem_alloc",
                 "memcpy_htod_async", "memcpy_dtoh_async"):
        setattr(driver, name, getattr(cuda, name))
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    from mambalitesr.runtime.backends import engine_files as engine_module

    monkeypatch.setattr(engine_module, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(engine_module, "load_engine", lambda path, plugin=None, device=0: engine)
    monkeypatch.setattr(engine_module, "read_sidecar", lambda path: {"precision": "fp16"})
    path = tmp_path / "m.engine"
    path.write_bytes(b"plan")

    backend = create_backend("tensorrt", engine=str(path))
    assert backend.scale == 2 and backend.max_hw == (32, 32) and backend.batch_limit == 2
    assert backend.precision == "fp16" and backend.max_in_flight == 2
    a, b, c = _batch(1, 16, 16, 1), _batch(2, 16, 16, 2), _batch(1, 8, 12, 3)
    pa = backend.submit(a)
    pb = backend.submit(b)  # in flight together with a
    with pytest.raises(RuntimeError, match="max_in_flight"):
        backend.submit(c)  # a third would overwrite slot 0 before a was read
    np.testing.assert_array_equal(pa.wait(), a.repeat(2, 2).repeat(2, 3) * 2)
    pc = backend.submit(c)  # slot 0 again, now free
    np.testing.assert_array_equal(pb.wait(), b.repeat(2, 2).repeat(2, 3) * 2)
    np.testing.assert_array_equal(pc.wait(), c.repeat(2, 2).repeat(2, 3) * 2)
    assert pa.compute_s == pytest.approx(1.5e-3)
    execs = [entry for entry in cuda.log if entry.startswith("exec")]
    assert execs[0] != execs[1] and execs[0] == execs[2]  # slots alternate
    with pytest.raises(UserError, match="exceeds the max"):
        backend.infer(_batch(1, 40, 8))
    backend.close()
    assert not cuda.memory  # device buffers freed


# -- options --------------------------------------------------------------------------------
def test_backend_options_refuse_options_of_another_backend(tmp_path, monkeypatch):
    import argparse

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"")  # --onnx must name a file; here it only has to exist

    from mambalitesr.runtime.backends.options import add_backend_arguments, backend_options

    parser = argparse.ArgumentParser()
    add_backend_arguments(parser, ("torch", "onnxruntime", "tensorrt"))
    with pytest.raises(UserError, match="--onnx applies to --backend onnxruntime"):
        backend_options(parser.parse_args(["--backend", "torch", "--onnx", "m.onnx"]))
    assert backend_options(parser.parse_args(["--backend", "onnxruntime"]))["onnx"] is None  # the shipped graph
    with pytest.raises(UserError, match="needs --engine"):
        backend_options(parser.parse_args(["--backend", "tensorrt"]))
    opts = backend_options(parser.parse_args(["--backend", "torch"]))
    assert opts["model"] == "mambalitesr_x4" and opts["device"] == "cpu"
