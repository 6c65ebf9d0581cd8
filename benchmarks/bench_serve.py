"""Load benchmark: N synthetic cameras against one ``mambalitesr serve``, next to N cameras each with its own model.

Glossary (code name -> meaning):
    N (cameras)      camera processes (``mambalitesr camera --source synthetic:WxH --sink null``) run at once
    triton           every camera uses ``--backend triton`` against one server (Triton's dynamic batcher may
                     merge their frames into one model execution)
    local            every camera loads its own torch backend (N copies of the model)
    aggregate fps    all frames out of all cameras / the window from the first frame any camera captured
                     to the last frame any camera put out (process start-up, model load and warm-up
                     excluded; the cameras' clocks are one, CLOCK_MONOTONIC)
    p50 / p99        end-to-end frame latency (capture -> sink): the median of the cameras' p50, and
                     the worst camera's p99
    batch sizes      B -> executions the server ran during the step, from Triton's own inference
                     statistics (``batch_stats``), warm-up and probe requests included
    sent / received  frames the cameras captured and sent vs frames that came back to their sinks; the
                     server's executed-frame count must equal the frames sent plus each camera's warm-up and scale probe

Every process is pinned to the CPUs given (``--cpus``, default: the CPUs this process may use), so the
server and the cameras share them, as N cameras sharing one box would. Results are written atomically
to ``<results-dir>/serve/<device>.json`` and ``.md`` (a schema of its own, beside the peers').
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mambalitesr.errors import UserError

WARMUP = 1  # warm-up inferences per camera (each sends one frame before timing starts)
PROBE = 1  # the triton backend's scale probe (one 16x16 frame) when it loads


@dataclass
class ServeBenchConfig:
    cameras: tuple[int, ...] = (1, 2, 4, 8)
    frames: int = 40
    size: tuple[int, int] = (160, 90)  # (W, H)
    max_batch_size: int = 8
    queue_delay_us: int = 2000
    threads: int = 1  # torch threads of the server and of each local camera
    cpus: str | None = None  # taskset list for every process, e.g. "0"
    local: bool = True
    shm: bool = False
    timeout_s: float = 600.0


def _python() -> list[str]:
    return [sys.executable, "-m", "mambalitesr"]


def _pin(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] + cmd if cpus else cmd


def _free_port() -> int:
    from mambalitesr.runtime.serve.ports import free_port

    return free_port()


class ServerProcess:
    """``mambalitesr serve`` as a child process on free loopback ports; always stopped by ``close``."""

    def __init__(self, cfg: ServeBenchConfig, log_path: Path):
        self.http, self.grpc, self.metrics = _free_port(), _free_port(), _free_port()
        cmd = _python() + ["serve", "--http-port", str(self.http), "--grpc-port", str(self.grpc),
                           "--metrics-port", str(self.metrics), "--max-batch-size", str(cfg.max_batch_size),
                           "--queue-delay-us", str(cfg.queue_delay_us), "--backend", "torch",
                           "--threads", str(cfg.threads)]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(_pin(cmd, cfg.cpus), stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"`mambalitesr serve` exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/models/mambalitesr/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise UserError(f"`mambalitesr serve` not ready after {timeout_s:g} s: {self.log_tail()}")

    def log_tail(self, n: int = 8) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return " | ".join(lines[-n:])

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(120)  # tritonserver drains and unloads; slow on a loaded machine
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def batch_stats(url: str, model: str = "mambalitesr") -> dict[int, int]:
    """B -> executions so far, from the server's own inference statistics."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    out: dict[int, int] = {}
    for model_stats in stats.get("model_stats", []):
        for b in model_stats.get("batch_stats", []):
            out[int(b["batch_size"])] = out.get(int(b["batch_size"]), 0) + int(b["compute_infer"]["count"])
    return out


def _diff(after: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {b: n - before.get(b, 0) for b, n in sorted(after.items()) if n - before.get(b, 0) > 0}


def run_cameras(n: int, cfg: ServeBenchConfig, backend_args: list[str], workdir: Path) -> dict:
    """Start ``n`` camera processes at once, wait for all; their summaries combined."""
    w, h = cfg.size
    procs, jsons = [], []
    start = time.perf_counter()
    for i in range(n):
        out = workdir / f"cam{i}.json"
        jsons.append(out)
        cmd = _python() + ["camera", "--source", f"synthetic:{w}x{h}", "--sink", "null", "--frames", str(cfg.frames),
                           "--warmup", str(WARMUP), "--json", str(out)] + backend_args
        log = open(workdir / f"cam{i}.log", "w")
        procs.append((subprocess.Popen(_pin(cmd, cfg.cpus), stdout=log, stderr=subprocess.STDOUT), log))
    failures = []
    try:
        for i, (p, log) in enumerate(procs):
            try:
                rc = p.wait(max(1.0, cfg.timeout_s - (time.perf_counter() - start)))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "timeout"
            log.close()
            if rc != 0:
                tail = (workdir / f"cam{i}.log").read_text(errors="replace").strip().splitlines()[-3:]
                failures.append(f"camera {i}: exit {rc}: {' | '.join(tail)}")
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    if failures:
        raise UserError("; ".join(failures))
    summaries = [json.loads(j.read_text()) for j in jsons]
    frames = sum(s["frames_out"] for s in summaries)
    captured = sum(s["captured"] for s in summaries)
    # the window in which the cameras ran: first capture of any to last output of any (perf_counter is
    # CLOCK_MONOTONIC, shared by the processes of one host)
    wall = max(s["t_last_out"] for s in summaries) - min(s["t_first_capture"] for s in summaries)
    e2e = [s["latency"]["end_to_end"] for s in summaries]
    return {
        "cameras": n,
        "frames_out": frames,
        "frames_sent": captured,
        "dropped": sum(s["dropped"] for s in summaries),
        "wall_s": wall,
        "aggregate_fps": frames / wall if wall > 0 else float("nan"),
        "per_camera_fps": [s["pipeline_fps"] for s in summaries],
        "p50_ms": statistics.median(x["p50_ms"] for x in e2e),
        "p99_ms": max(x["p99_ms"] for x in e2e),
        "backend": summaries[0]["backend"],
    }


def run_bench(cfg: ServeBenchConfig, log=print) -> dict:
    if not cfg.cameras or min(cfg.cameras) < 1:
        raise UserError("--cameras must be positive counts, e.g. 1,2,4,8")
    if cfg.frames < 2:
        raise UserError(f"--frames must be >= 2, got {cfg.frames}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mambalitesr-bench-serve-") as tmp:
        tmp = Path(tmp)
        server = ServerProcess(cfg, tmp / "serve.log")
        try:
            server.wait_ready()
            log(f"bench serve: server ready at {server.url}")
            triton_args = ["--backend", "triton", "--url", server.url] + ["--triton-shm", "on" if cfg.shm else "off"]
            for n in cfg.cameras:
                before = batch_stats(server.url)
                step = run_cameras(n, cfg, triton_args, _fresh(tmp / f"triton{n}"))
                batches = _diff(batch_stats(server.url), before)
                executed = sum(b * c for b, c in batches.items())
                expected = step["frames_sent"] + n * (WARMUP + PROBE)  # each camera's warm-up and scale probe
                step.update(mode="triton", batch_sizes=batches, server_frames=executed,
                            nothing_lost=step["frames_sent"] == step["frames_out"] and executed == expected
                            and step["dropped"] == 0,
                            server_frames_expected=expected)
                rows.append(step)
                log(_line(step))
        finally:
            rc = server.close()
            log(f"bench serve: server stopped (exit {rc})")
        if cfg.local:
            local_args = ["--backend", "torch", "--threads", str(cfg.threads)]
            for n in cfg.cameras:
                step = run_cameras(n, cfg, local_args, _fresh(tmp / f"local{n}"))
                step.update(mode="local", batch_sizes=None, nothing_lost=step["frames_sent"] == step["frames_out"]
                            and step["dropped"] == 0)
                rows.append(step)
                log(_line(step))
    return {"config": {k: v for k, v in cfg.__dict__.items()}, "rows": rows}


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _line(r: dict) -> str:
    batches = ", ".join(f"{b}x{c}" for b, c in (r.get("batch_sizes") or {}).items())
    return (f"  {r['mode']:6s} {r['cameras']} camera(s): {r['aggregate_fps']:.2f} fps aggregate, p50 {r['p50_ms']:.0f} ms, "
            f"p99 {r['p99_ms']:.0f} ms, sent {r['frames_sent']} / received {r['frames_out']}"
            + (f", server batches (B x runs) {batches}" if batches else "")
            + ("" if r["nothing_lost"] else "  ** FRAMES LOST **"))


def to_markdown(result: dict, command: str, device: str) -> str:
    c = result["config"]
    w, h = c["size"]
    lines = [
        f"# `mambalitesr bench serve` on {device}",
        "",
        f"Command: `{command}`",
        "",
        f"{w}x{h} synthetic frames, {c['frames']} per camera, torch backend with {c['threads']} thread(s); server max batch "
        f"{c['max_batch_size']}, queue delay {c['queue_delay_us']} us; every process pinned to CPUs "
        f"{c['cpus'] or 'all'}; shared memory {'on' if c['shm'] else 'off'}.",
        "Aggregate fps = all frames out / the window from the first capture of any camera to the last output of "
        "any camera; p50 = median of the cameras' "
        "end-to-end p50, p99 = the worst camera's p99. Batch sizes: B x executions from Triton's statistics "
        "(each camera's warm-up and 16x16 scale-probe frame included).",
        "",
        "| mode | cameras | aggregate fps | p50 ms | p99 ms | sent | received | server frames | batch sizes (B x runs) | nothing lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        batches = ", ".join(f"{b}x{n}" for b, n in (r.get("batch_sizes") or {}).items()) or "-"
        server = f"{r['server_frames']} (expected {r['server_frames_expected']})" if r["mode"] == "triton" else "-"
        lines.append(f"| {r['mode']} | {r['cameras']} | {r['aggregate_fps']:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
                     f"| {r['frames_sent']} | {r['frames_out']} | {server} | {batches} | {'yes' if r['nothing_lost'] else 'NO'} |")
    by = {(r["mode"], r["cameras"]): r for r in result["rows"]}
    ns = sorted({r["cameras"] for r in result["rows"]})
    if ("triton", ns[0]) in by and ("triton", ns[-1]) in by:
        a, b = by[("triton", ns[0])], by[("triton", ns[-1])]
        lines += ["", f"Triton: {ns[-1]} cameras give {b['aggregate_fps']:.2f} fps aggregate vs {a['aggregate_fps']:.2f} "
                  f"with {ns[0]} ({b['aggregate_fps'] / a['aggregate_fps']:.2f}x)."]
    return "\n".join(lines) + "\n"


def write_results(result: dict, results_dir: Path, device: str, command: str) -> tuple[Path, Path]:
    from mambalitesr.imageio import atomic_path

    results_dir = results_dir / "serve"
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = dict(result, device=device, command=command, finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   host={"cpus_visible": len(os.sched_getaffinity(0)), "machine": os.uname().machine})
    paths = results_dir / f"{device}.json", results_dir / f"{device}.md"
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(to_markdown(result, command, device))
    return paths
