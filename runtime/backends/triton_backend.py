"""Triton backend: frames go to a Triton Inference Server over gRPC, so many camera processes share one model.

Glossary (code name -> meaning / paper symbol):
    url          HOST:PORT of the server's gRPC endpoint (``mambalitesr serve`` listens on 127.0.0.1:8001)
    model_name   the model in the server (``mambalitesr`` for ``serve``; ``mambalitesr_trt`` / ``_onnx`` /
                 ``_python`` in a repository from ``export triton``)
    lr, sr       the model's input (B, 3, h, w) float32 in [0, 1] and output (B, 3, s*h, s*w) float32
    shm          system shared memory: the client writes lr into a POSIX shm region and the server writes sr
                 into another, instead of both travelling inside the gRPC messages; only when client and
                 server share a host (a loopback url), and then by default (auto)
    in flight    ``submit`` sends the request with ``async_infer`` and returns at once, so the pipeline
                 prepares batch k+1 while the server runs batch k (and batches it with other cameras')
    s (scale)    the ``scale`` parameter of the model's config, else measured on a probe input

The server's dynamic batcher merges requests from different clients with the same (h, w); this client
sends each pipeline batch as one request.
"""
from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr.runtime.backends.base import Backend, Pending, infer_scale

DEFAULT_URL = "127.0.0.1:8001"
DEFAULT_MODEL = "mambalitesr"
PROBE_HW = (16, 16)
IN_FLIGHT = 2
_LOOPBACK = ("localhost", "::1")
_region_ids = itertools.count()


def _tritonclient():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise MissingDependency(
            f"--backend triton needs tritonclient ({exc}): pip install 'mambalitesr[serve]' (or 'tritonclient[grpc]')"
        ) from None
    return grpcclient


def is_loopback(url: str) -> bool:
    host = url.rsplit(":", 1)[0].strip("[]")
    return host in _LOOPBACK or host.startswith("127.")


class _ShmSlot:
    """One pair of shared memory regions (lr in, sr out), registered with the server, grown on demand."""

    def __init__(self, client, shm_module):
        self.client, self.shm = client, shm_module
        self.in_bytes = self.out_bytes = 0
        self.handles: dict[str, object] = {}
        self.names: dict[str, str] = {}

    def _ensure(self, kind: str, nbytes: int) -> None:
        have = self.in_bytes if kind == "in" else self.out_bytes
        if nbytes <= have:
            return
        self._release(kind)
        name = f"mambalitesr_{os.getpid()}_{next(_region_ids)}_{kind}"
        key = "/" + name
        handle = self.shm.create_shared_memory_region(name, key, nbytes)
        self.client.register_system_shared_memory(name, key, nbytes)
        self.handles[kind], self.names[kind] = handle, name
        if kind == "in":
            self.in_bytes = nbytes
        else:
            self.out_bytes = nbytes

    def _release(self, kind: str) -> None:
        if kind in self.handles:
            try:
                self.client.unregister_system_shared_memory(self.names[kind])
            except Exception:  # the server may be gone already; the region is ours to free regardless
                pass
            self.shm.destroy_shared_memory_region(self.handles.pop(kind))
            self.names.pop(kind)

    def close(self) -> None:
        for kind in list(self.handles):
            self._release(kind)


class _TritonPending(Pending):
    def __init__(self, started: float):
        super().__init__()
        self._done = threading.Event()
        self._started = started
        self._error: BaseException | None = None
        self.on_done = None  # called with the slot after the result is read

    def _finish(self, output=None, error=None) -> None:
        self._output, self._error = output, error
        self.compute_s = time.perf_counter() - self._started
        self._done.set()

    def wait(self) -> np.ndarray:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._output


class TritonBackend(Backend):
    name = "triton"

    def __init__(self, url: str = DEFAULT_URL, model_name: str = DEFAULT_MODEL, shm: bool | None = None,
                 timeout_s: float = 10.0):
        super().__init__()
        if not url or ":" not in url or "://" in url:
            raise UserError(f"--url must be HOST:PORT of the server's gRPC endpoint (e.g. {DEFAULT_URL}), got {url!r}")
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        if shm and not is_loopback(url):
            raise UserError(f"--triton-shm on needs the server on this host (a loopback --url), got {url}")
        # None (auto): shared memory when the server is on this host. It pays: the round trip of a 320x180
        # frame (0.66 MiB in, 10.5 MiB out) measured 2.5x faster than inside gRPC messages
        # (benchmarks/bench_triton_shm.py)
        self.use_shm = is_loopback(url) if shm is None else bool(shm)
        self.client = None
        self.max_in_flight = IN_FLIGHT
        self._slots: list[_ShmSlot] = []
        self._free_slots: list[_ShmSlot] = []
        self._slot_lock = threading.Lock()
        self.requests = 0

    # -- load -----------------------------------------------------------------------------------
    def load(self) -> None:
        grpcclient = _tritonclient()
        from tritonclient.utils import InferenceServerException

        self._exc_type = InferenceServerException
        self._grpc = grpcclient
        try:
            self.client = grpcclient.InferenceServerClient(url=self.url)
            live = self.client.is_server_live(client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise UserError(f"no Triton server answers at {self.url} ({_first_line(exc)}); start one with "
                            "`mambalitesr serve` or give --url HOST:GRPC_PORT") from None
        if not live:
            raise UserError(f"the Triton server at {self.url} is not live")
        try:
            ready = self.client.is_model_ready(self.model_name, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise UserError(f"{self.url}: cannot ask for model {self.model_name!r} ({_first_line(exc)})") from None
        if not ready:
            names = self._model_names()
            have = f"the server has: {', '.join(names)}" if names else "the server does not list its models to us"
            raise UserError(f"{self.url}: model {self.model_name!r} is not ready; {have} (choose with --triton-model)")
        meta = self.client.get_model_metadata(self.model_name, as_json=True)
        config = self.client.get_model_config(self.model_name, as_json=True).get("config", {})
        ins, outs = meta.get("inputs", []), meta.get("outputs", [])
        if len(ins) != 1 or len(outs) != 1:
            raise UserError(f"{self.url}/{self.model_name}: expected one input and one output, got {len(ins)} and {len(outs)}")
        if ins[0]["datatype"] != "FP32":
            raise UserError(f"{self.url}/{self.model_name}: input {ins[0]['name']} is {ins[0]['datatype']}; expected FP32")
        self._in, self._out = ins[0]["name"], outs[0]["name"]
        max_batch = int(config.get("max_batch_size", 0) or 0)
        self.max_batch = max_batch or None
        self.input_shape = (None, 3, None, None)
        if self.use_shm:
            import tritonclient.utils.shared_memory as shm_module

            self._shm_module = shm_module
        self.loaded = True
        scale = config.get("parameters", {}).get("scale", {}).get("string_value")
        if scale:
            self.scale = int(scale)
        else:
            probe = np.full((1, 3) + PROBE_HW, 0.5, dtype=np.float32)
            self.scale = infer_scale(PROBE_HW, self._run(probe).shape[2:], f"{self.url}/{self.model_name}")

    def _model_names(self) -> list[str]:
        try:
            index = self.client.get_model_repository_index(as_json=True)
        except Exception:  # `mambalitesr serve` guards the repository API (load/unload) with a token
            return []
        return [m["name"] for m in index.get("models", [])]

    # -- requests -------------------------------------------------------------------------------
    def _request(self, batch: np.ndarray):
        """(inputs, outputs, slot) for one request; with shm, lr is already written into the slot."""
        grpc = self._grpc
        inp = grpc.InferInput(self._in, list(batch.shape), "FP32")
        out = grpc.InferRequestedOutput(self._out)
        slot = None
        if self.use_shm:
            slot = self._take_slot()
            b, c, h, w = batch.shape
            out_bytes = b * c * h * w * self.scale * self.scale * 4 if self.scale else 0
            slot._ensure("in", batch.nbytes)
            self._shm_module.set_shared_memory_region(slot.handles["in"], [batch])
            inp.set_shared_memory(slot.names["in"], batch.nbytes)
            if out_bytes:
                slot._ensure("out", out_bytes)
                out.set_shared_memory(slot.names["out"], out_bytes)
        else:
            inp.set_data_from_numpy(batch)
        return [inp], [out], slot

    def _take_slot(self) -> _ShmSlot:
        with self._slot_lock:
            if self._free_slots:
                return self._free_slots.pop()
            slot = _ShmSlot(self.client, self._shm_module)
            self._slots.append(slot)
            return slot

    def _give_slot(self, slot) -> None:
        if slot is not None:
            with self._slot_lock:
                self._free_slots.append(slot)

    def _read(self, result, slot, in_shape) -> np.ndarray:
        if slot is not None and "out" in slot.handles:
            b, c, h, w = in_shape
            shape = (b, c, h * self.scale, w * self.scale)
            out = self._shm_module.get_contents_as_numpy(slot.handles["out"], np.float32, shape)
            return np.array(out, copy=True)  # the region is reused by the next request
        return np.ascontiguousarray(result.as_numpy(self._out), dtype=np.float32)

    def _error(self, exc, shape) -> UserError:
        return UserError(f"triton {self.url}/{self.model_name} failed on input {tuple(shape)}: {_first_line(exc)}")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        inputs, outputs, slot = self._request(batch)
        try:
            result = self.client.infer(self.model_name, inputs, outputs=outputs, client_timeout=None)
            self.requests += 1
            return self._read(result, slot, batch.shape)
        except self._exc_type as exc:
            raise self._error(exc, batch.shape) from None
        finally:
            self._give_slot(slot)

    def submit(self, batch: np.ndarray) -> Pending:
        batch = self.check_batch(batch)
        inputs, outputs, slot = self._request(batch)
        pending = _TritonPending(time.perf_counter())
        shape = batch.shape

        def done(result, error):
            try:
                if error is not None:
                    pending._finish(error=self._error(error, shape))
                else:
                    self.requests += 1
                    pending._finish(self._read(result, slot, shape))
            except BaseException as exc:  # a failed read must still wake the waiter
                pending._finish(error=exc)
            finally:
                self._give_slot(slot)

        self.client.async_infer(self.model_name, inputs, done, outputs=outputs)
        return pending

    def close(self) -> None:
        for slot in self._slots:
            slot.close()
        self._slots, self._free_slots = [], []
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None

    def describe(self) -> str:
        shm = ", system shared memory" if self.use_shm else ""
        return (f"triton {self.model_name} at {self.url} (gRPC{shm}, max batch {self.max_batch or 'n/a'}), "
                f"x{self.scale}, {self.shapes_text()}")


def _first_line(exc) -> str:
    text = getattr(exc, "message", None)
    text = text() if callable(text) else text
    text = str(text or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
