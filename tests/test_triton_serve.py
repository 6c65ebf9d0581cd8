"""`mambalitesr serve` (a real tritonserver, from nvidia-pytriton, on loopback) and `--backend triton` clients.

Two synthetic cameras stream through one server; every frame comes back and matches the local torch backend
within 1e-4. Servers are always stopped (fixture teardown); their SIGTERM exit must be clean.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tritonclient.grpc", reason="pip install 'mambalitesr[serve]'")
pytest.importorskip("pytriton", reason="pip install 'mambalitesr[serve]' (nvidia-pytriton ships tritonserver)")

from mambalitesr.benchmarks.bench_serve import batch_stats  # noqa: E402
from mambalitesr.errors import UserError  # noqa: E402
from mambalitesr.runtime.backends import create_backend  # noqa: E402
from mambalitesr.runtime.backends.triton_backend import TritonBackend  # noqa: E402
from mambalitesr.runtime.serve.ports import free_port  # noqa: E402
from mambalitesr.runtime.stream.pipeline import Pipeline  # noqa: E402
from mambalitesr.runtime.core.processing import FrameProcessor  # noqa: E402
from mambalitesr.runtime.stream.sinks import NullSink  # noqa: E402
from mambalitesr.runtime.stream.synthetic import SyntheticSource  # noqa: E402
from mambalitesr.testing import assert_close  # noqa: E402 - the one dtype-aware table

W, H, FRAMES = 32, 24, 4  # tiny frames: the point is the plumbing, not the speed
TOLERANCE = 1e-4


class Server:
    def __init__(self, tmp_path):
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.log_path = tmp_path / "serve.log"
        self.log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "mambalitesr", "serve", "--http-port", str(self.http), "--grpc-port",
               str(self.grpc), "--metrics-port", str(self.metrics), "--backend", "torch", "--threads", "1",
               "--max-batch-size", "4"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s=240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}: {self.text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/models/mambalitesr/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"serve not ready after {timeout_s} s: {self.text()[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the clean path under test
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    try:
        s.wait_ready()
        yield s
    finally:
        rc = s.stop()
    assert rc == 0, f"serve did not stop cleanly on SIGTERM (exit {rc}): {s.log_path.read_text()[-2000:]}"
    assert "serve: stopped (SIGTERM)" in s.log_path.read_text()


class Recording(TritonBackend):
    """The triton backend, keeping every (input batch, output or pending output) it sent: the scale probe,
    the warm-up and the streamed batches."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent = []

    def _run(self, batch):
        out = super()._run(batch)
        self.sent.append((np.array(batch, dtype=np.float32, copy=True), out))
        return out

    def submit(self, batch):
        pending = super().submit(batch)
        self.sent.append((np.array(batch, dtype=np.float32, copy=True), pending))
        return pending


def test_health_endpoints(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mambalitesr/ready"):
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}{path}", timeout=5) as r:
            assert r.status == 200, path


def test_two_cameras_through_triton_match_local_torch(server):
    before = batch_stats(server.url)
    backends = [Recording(url=server.url) for _ in range(2)]
    pipelines = []
    for b in backends:
        b.load()
        pipelines.append(Pipeline(SyntheticSource(W, H), FrameProcessor(b), NullSink(), max_frames=FRAMES,
                                  warmup=1, log=lambda m: None))
    results = [None, None]

    def run(i):
        results[i] = pipelines[i].run()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for b in backends:
        b.close()
    assert all(r is not None for r in results), [p.error for p in pipelines]
    for stats in results:
        assert stats.frames_out == FRAMES and stats.captured == FRAMES and stats.dropped == 0
    local = create_backend("torch", threads=1)
    sent_frames = 0
    for b in backends:
        assert b.sent, "the pipeline sent nothing through the triton backend"
        for x, y in b.sent:
            y = y if isinstance(y, np.ndarray) else y.wait()
            sent_frames += x.shape[0]
            want = local.infer(x)
            assert_close(y, want, what="triton vs local torch")
            err = float(np.abs(y - want).max())
            assert y.shape == (x.shape[0], 3, 4 * x.shape[2], 4 * x.shape[3])
            assert err <= TOLERANCE, f"triton vs local torch: max abs error {err:.3g} on {x.shape}"
    assert sent_frames >= 2 * FRAMES
    # the server executed exactly the frames the clients sent (its own statistics, all batch sizes)
    executed = sum(bsz * n for bsz, n in batch_stats(server.url).items()) - sum(bsz * n for bsz, n in before.items())
    assert executed == sent_frames, (executed, sent_frames)


def test_camera_command_two_processes_every_frame_back(server, tmp_path):
    procs = []
    for i in range(2):
        out = tmp_path / f"cam{i}.json"
        cmd = [sys.executable, "-m", "mambalitesr", "camera", "--backend", "triton", "--url", server.url,
               "--source", f"synthetic:{W}x{H}", "--sink", "null", "--frames", str(FRAMES), "--warmup", "1",
               "--json", str(out), "--triton-shm", ("auto", "off")[i]]  # shared memory, and gRPC messages
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out))
    try:
        for p, out in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-2000:]
            summary = json.loads(out.read_text())
            assert summary["frames_out"] == FRAMES and summary["captured"] == FRAMES and summary["dropped"] == 0
            assert summary["backend"].startswith("triton mambalitesr at " + server.url)
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_shared_memory_gives_the_same_outputs(server):
    x = np.random.default_rng(0).random((2, 3, H, W), dtype=np.float32)
    with TritonBackend(url=server.url, shm=False) as plain, TritonBackend(url=server.url) as shm:
        assert shm.use_shm and not plain.use_shm  # auto: shared memory on a loopback url
        plain.load()
        shm.load()
        a, b = plain.infer(x), shm.infer(x)
        c = shm.submit(x).wait()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_unknown_model_is_a_clear_error(server):
    with pytest.raises(UserError, match="model 'nope' is not ready.*--triton-model"):
        TritonBackend(url=server.url, model_name="nope").load()


def test_no_server_is_a_clear_error():
    with pytest.raises(UserError, match="no Triton server answers"):
        TritonBackend(url=f"127.0.0.1:{free_port()}", timeout_s=2).load()


def test_shared_memory_needs_a_local_server():
    with pytest.raises(UserError, match="loopback"):
        TritonBackend(url="10.0.0.9:8001", shm=True)


def test_port_taken_is_one_clear_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "mambalitesr", "serve", "--grpc-port", str(port),
                            "--http-port", str(free_port()), "--metrics-port", str(free_port())],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (
        f"mambalitesr serve: error: gRPC port {port} on 127.0.0.1 is already in use (another server running?); "
        "choose another with --grpc-port")
    assert "Traceback" not in r.stderr


def test_model_repository_without_tritonserver_names_the_containers(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tritonserver on PATH
    r = subprocess.run([sys.executable, "-m", "mambalitesr", "serve", "--model-repository", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "nvcr.io/nvidia/tritonserver" in r.stderr and "Traceback" not in r.stderr


def _children_of(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def test_a_second_signal_stops_the_server_at_once_and_leaves_no_process(tmp_path):
    """SIGTERM twice (stopping.py's rule for every command): exit 128 + 15 within seconds, tritonserver gone."""
    s = Server(tmp_path)
    try:
        s.wait_ready()
        children = _children_of(s.proc.pid)
        assert children, "serve started no tritonserver process"
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(30)
    finally:
        s.stop()
    log = s.log_path.read_text(errors="replace")
    assert rc in (128 + signal.SIGTERM, 0), log[-2000:]  # 0 only when the clean stop won the race
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()
              for p in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [p for p in children if Path(f"/proc/{p}").exists()
             and "zombie" not in Path(f"/proc/{p}/status").read_text(errors="replace").lower()]
    assert not alive, f"processes left behind by serve: {alive}"
    assert "Traceback" not in log, log[-2000:]
