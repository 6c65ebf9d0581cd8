"""TensorRT backend: a serialized engine (+ the SelectiveScan plugin library) on the GPU, double-buffered.

Glossary (code name -> meaning / paper symbol):
    engine        a TensorRT 10 ``.engine`` built by ``mambalitesr export engine``; its sidecar JSON is checked
                  by ``runtime.backends.engine_files.load_engine`` (TensorRT version, GPU, plugin) before deserializing
    plugin        the shared library with the fused selective-scan plugin (IPluginV3) the engine refers to
    slot          one of two buffer sets: pinned host input/output + device input/output + CUDA events
    copy stream   H2D copies; compute stream: ``execute_async_v3``; d2h stream: D2H copies. With two slots
                  the H2D copy of batch k+1 runs while batch k computes (``max_in_flight`` = 2)
    profile       the engine's optimisation profile 0: (min, opt, max) of (B, 3, h, w); frames above max are tiled

Why pycuda's *primary* context: TensorRT uses the CUDA runtime API, which binds to the device's primary
context; retaining that same context from pycuda makes our buffers and streams valid for TensorRT. Every
entry point pushes it and pops it, so the backend may be loaded in one thread and run in another.

Nothing here runs on a machine without TensorRT and pycuda: ``load`` raises MissingDependency naming them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.backends.base import Backend, Pending
from mambalitesr.optional import require

N_SLOTS = 2


class _Slot:
    """Pinned host and device buffers sized for the profile's max shape, and the events that order them."""

    def __init__(self, cuda, in_elems: int, in_dtype, out_elems: int, out_dtype):
        self.host_in = cuda.pagelocked_empty(in_elems, in_dtype)  # flat; viewed as (B, 3, h, w)
        self.host_out = cuda.pagelocked_empty(out_elems, out_dtype)  # flat; viewed as (B, 3, s*h, s*w)
        self.dev_in = cuda.mem_alloc(self.host_in.nbytes)
        self.dev_out = cuda.mem_alloc(self.host_out.nbytes)
        self.h2d_done = cuda.Event()
        self.compute_start = cuda.Event()
        self.compute_done = cuda.Event()
        self.d2h_done = cuda.Event()
        self.busy = False

    def free(self) -> None:
        self.dev_in.free()
        self.dev_out.free()


class _TrtPending(Pending):
    def __init__(self, backend: "TensorRTBackend", slot: _Slot, out_view: np.ndarray):
        super().__init__()
        self._backend, self._slot, self._view = backend, slot, out_view

    def wait(self) -> np.ndarray:
        if self._output is None:
            backend, slot = self._backend, self._slot
            backend._ctx.push()
            try:
                slot.d2h_done.synchronize()
                self.compute_s = slot.compute_done.time_since(slot.compute_start) / 1000.0  # ms -> s
                # Copy out of the pinned buffer: the slot is reused two submissions later.
                self._output = self._view.astype(np.float32, copy=True)
            finally:
                slot.busy = False
                backend._ctx.pop()
        return self._output


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine: str | None = None, plugin: str | None = None, device: int = 0):
        super().__init__()
        if not engine:
            raise UserError("tensorrt backend needs an engine: --engine FILE (build one with `mambalitesr export engine`)")
        self.engine_path = Path(engine)
        self.plugin_path = Path(plugin) if plugin else None
        self.device_index = int(device)
        self.max_in_flight = N_SLOTS
        self._submitted = 0
        self._shape = None
        self._ctx = None

    # -- loading --------------------------------------------------------------------
    def _import(self):
        from mambalitesr.runtime.backends.engine_files import import_tensorrt

        trt = import_tensorrt()  # MissingDependency (with the JetPack hint) when absent or older than 10
        cuda = require("pycuda.driver", "tensorrt backend needs pycuda for device buffers and streams",
                       install="pip install pycuda on the Jetson (it builds against JetPack's CUDA)")
        return trt, cuda

    def load(self) -> None:
        trt, cuda = self._import()
        if not self.engine_path.is_file():
            raise UserError(f"{self.engine_path}: no such engine file")
        if self.plugin_path is not None and not self.plugin_path.is_file():
            raise UserError(f"{self.plugin_path}: no such plugin library")
        try:
            cuda.init()
            if cuda.Device.count() <= self.device_index:
                raise MissingDependency(f"tensorrt backend: no CUDA device {self.device_index} "
                                        f"({cuda.Device.count()} found)")
            self._ctx = cuda.Device(self.device_index).retain_primary_context()
        except cuda.Error as exc:
            raise MissingDependency(f"tensorrt backend: CUDA driver unusable ({exc}); is this a GPU machine?") from None
        self._trt, self._cuda = trt, cuda
        self._ctx.push()
        try:
            self._load_engine(trt, cuda)
        finally:
            self._ctx.pop()
        self.loaded = True

    def _load_engine(self, trt, cuda) -> None:
        from mambalitesr.runtime.backends.engine_files import load_engine, read_sidecar

        # load_engine checks the sidecar (TensorRT version, GPU, plugin), loads the plugin library and deserializes.
        self.engine = load_engine(self.engine_path, self.plugin_path, device=self.device_index)
        self.sidecar = read_sidecar(self.engine_path)
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UserError(f"{self.engine_path}: expected one input and one output, got {inputs} and {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._in)))
        self.output_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._out)))
        if self.input_dtype not in (np.float32, np.float16):
            raise UserError(f"{self.engine_path}: input dtype {self.input_dtype}; expected float32 or float16")
        shape = tuple(engine.get_tensor_shape(self._in))  # -1 marks a dynamic dim
        if len(shape) != 4 or shape[1] != 3:
            raise UserError(f"{self.engine_path}: input shape {shape}; expected (B, 3, h, w)")
        self.input_shape = tuple(d if d > 0 else None for d in shape)
        if any(d is None for d in self.input_shape):
            min_shape, opt, max_shape = engine.get_tensor_profile_shape(self._in, 0)
            self.max_shape = tuple(max_shape)
            self.opt_hw = tuple(opt)[2:]
            self.min_hw = tuple(min_shape)[2:]
        else:
            self.max_shape = shape
            self.opt_hw = shape[2:]
        self.max_hw = tuple(self.max_shape[2:])
        self.max_batch = self.max_shape[0]
        self.precision = self._precision()
        self.context = engine.create_execution_context()
        if self.context is None:
            raise UserError(f"{self.engine_path}: could not create an execution context (out of GPU memory?)")
        self.scale = self._scale_from_shapes()
        in_elems = int(np.prod(self.max_shape))
        out_elems = in_elems * self.scale * self.scale
        self.slots = [_Slot(cuda, in_elems, self.input_dtype, out_elems, self.output_dtype) for _ in range(N_SLOTS)]
        self.copy_stream, self.compute_stream, self.d2h_stream = cuda.Stream(), cuda.Stream(), cuda.Stream()

    def _precision(self) -> str:
        """What the engine was built for (its sidecar), else what its input dtype says."""
        precision = self.sidecar.get("precision") if isinstance(self.sidecar, dict) else None
        if precision:
            return str(precision)
        return "fp16" if self.input_dtype == np.float16 else "fp32"

    def _scale_from_shapes(self) -> int:
        probe = (self.max_batch if self.input_shape[0] is None else self.input_shape[0], 3) + tuple(self.opt_hw)
        if not self.context.set_input_shape(self._in, probe):
            raise UserError(f"{self.engine_path}: rejects input shape {probe}")
        self._shape = probe
        out = tuple(self.context.get_tensor_shape(self._out))
        if len(out) != 4 or out[2] % probe[2] or out[3] % probe[3] or out[2] // probe[2] != out[3] // probe[3]:
            raise UserError(f"{self.engine_path}: output {out} is not an integer upscale of input {probe}")
        return out[2] // probe[2]

    # -- running --------------------------------------------------------------------
    def submit(self, batch: np.ndarray) -> Pending:
        """Enqueue H2D (copy stream) -> execute (compute stream) -> D2H (d2h stream) on the next free slot."""
        batch = self.check_batch(batch)
        if batch.shape[0] > self.max_batch:
            raise UserError(f"tensorrt backend: batch {batch.shape[0]} exceeds the engine's max {self.max_batch}")
        cuda = self._cuda
        slot = self.slots[self._submitted % N_SLOTS]
        if slot.busy:
            raise RuntimeError("tensorrt backend: more than max_in_flight submissions without wait()")
        self._ctx.push()
        try:
            in_view = slot.host_in[: batch.size].reshape(batch.shape)
            np.copyto(in_view, batch)
            cuda.memcpy_htod_async(slot.dev_in, in_view, self.copy_stream)
            slot.h2d_done.record(self.copy_stream)
            self.compute_stream.wait_for_event(slot.h2d_done)
            if batch.shape != self._shape:
                # A shape change must not race the enqueue still running with the old one.
                self.compute_stream.synchronize()
                if not self.context.set_input_shape(self._in, batch.shape):
                    raise UserError(f"tensorrt backend: engine rejects input shape {batch.shape}")
                self._shape = batch.shape
            out_shape = tuple(self.context.get_tensor_shape(self._out))  # (B, 3, s*h, s*w)
            self.context.set_tensor_address(self._in, int(slot.dev_in))
            self.context.set_tensor_address(self._out, int(slot.dev_out))
            slot.compute_start.record(self.compute_stream)
            if not self.context.execute_async_v3(self.compute_stream.handle):
                raise RuntimeError(f"tensorrt backend: execute_async_v3 failed for input {batch.shape}")
            slot.compute_done.record(self.compute_stream)
            self.d2h_stream.wait_for_event(slot.compute_done)
            out_view = slot.host_out[: int(np.prod(out_shape))].reshape(out_shape)
            cuda.memcpy_dtoh_async(out_view, slot.dev_out, self.d2h_stream)
            slot.d2h_done.record(self.d2h_stream)
            slot.busy = True
            self._submitted += 1
        finally:
            self._ctx.pop()
        return _TrtPending(self, slot, out_view)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.submit(batch).wait()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.submit(batch).wait()

    def describe(self) -> str:
        plugin = f", plugin {self.plugin_path.name}" if self.plugin_path else ""
        dyn = f", profile max {self.max_shape}" if any(d is None for d in self.input_shape) else ""
        return (
            f"tensorrt {self.engine_path.name} on GPU {self.device_index} ({self.precision}{plugin}{dyn}), "
            f"x{self.scale}, {self.shapes_text()}, {N_SLOTS} slots double-buffered"
        )

    def close(self) -> None:
        if self._ctx is None:
            return
        self._ctx.push()
        try:
            for stream in (getattr(self, "copy_stream", None), getattr(self, "compute_stream", None),
                           getattr(self, "d2h_stream", None)):
                if stream is not None:
                    stream.synchronize()
            for slot in getattr(self, "slots", []):
                slot.free()
            self.slots = []
            self.context = None
            self.engine = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
            self.loaded = False
