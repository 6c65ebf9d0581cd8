"""Web viewer benchmark: pipeline throughput and memory with 0 and then 20 MJPEG viewers watching.

Glossary: phase = ``--seconds`` of steady streaming with a given number of viewers; pipeline fps = frames
that reached the sink during the phase / its length (the pipeline's own RunStats.frames_out); drop =
1 - fps(20 viewers) / fps(0 viewers), against the 0-viewer phase(s) right before and after; RSS =
resident memory of this process (the pipeline + the viewer server), sampled every second; viewer fps =
frames each MJPEG client received per second; tick = one JPEG encode shared by all viewers; viewer CPU
per tick = CPU seconds of the viewer process (encoder and server) / ticks; CPU per frame = this process's CPU
seconds / frames out (the loss a CPU-bound pipeline would see is 1 - CPU/frame(0) / CPU/frame(viewers)).

Run:  python benchmarks/bench_web_viewer.py [--seconds 30] [--phases 0,20] [--source synthetic:160x120]
                                             [--model test_x4] [--threads N] [--json PATH]
The source is unpaced, so the pipeline runs as fast as the model allows and any cost of the viewers
shows as lost throughput. The model runs on all CPU cores but one (``--threads``): on a Jetson the model
runs on the GPU and the pipeline leaves CPU cores free, which is where the viewer process (SCHED_IDLE)
does its work; ``--threads`` = all cores is the worst case, a pipeline that is CPU-bound on every core,
where any other work on the machine, host steal on a virtual machine included, costs throughput.
Everything stays on loopback (127.0.0.1) and the run is bounded: each phase lasts ``--seconds``, the
clients are killed if they overrun. The clients run in a separate process, in
a session of their own, in SCHED_IDLE (``--client-sched idle``, the default; ``nice`` gives them
``--client-nice`` instead, also for their scheduler autogroup): on the device the browsers are on other
machines, so their reading should not be charged to the pipeline; the server's work is. The CPU
used by this process, by the viewer process and by the client process is printed too: unlike fps, it does
not depend on what else the machine runs.
Figures are measured on this machine when run; a shared machine makes them noisy (alternate phases,
``--phases 0,20,0,20``, to see the drift).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

TARGET_DROP = 0.10
CLIENT_MARGIN_S = 5.0  # clients stay connected this much longer than the measured window (their start-up)


def rss_mib(pid: int | str = "self") -> float | None:
    """Resident memory of process ``pid`` in MiB (Linux /proc; elsewhere this process's peak, from getrusage)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        if pid != "self":
            return None
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of process ``pid`` (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_ticks() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs so far (Linux /proc/stat): on a virtual machine, steal is
    the time the host gave to other guests, the main source of noise between phases."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def cpu_s(viewer_pid: int | None) -> dict[str, float | None]:
    """CPU seconds used so far: ``process`` (this process, all threads: the pipeline's stages, torch's pool,
    the web sink's hand-off) and ``viewer`` (the viewer process: JPEG encodes and serving).
    Unlike throughput, these do not depend on what else the machine is running."""
    return {"process": time.process_time(), "viewer": None if viewer_pid is None else _proc_cpu_s(viewer_pid)}


# -- client process ---------------------------------------------------------------------------------
async def _one_client(url: str, seconds: float, ready: asyncio.Event, counts: dict) -> None:
    import aiohttp

    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=seconds + 30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url + "stream.mjpg") as r:
            reader = aiohttp.MultipartReader.from_response(r)
            await ready.wait()
            start = time.monotonic()
            while time.monotonic() < deadline:
                part = await reader.next()
                if part is None:
                    break
                counts["bytes"] += len(await part.read())
                counts["frames"] += 1
            counts["seconds"] = time.monotonic() - start


async def _clients(url: str, n: int, seconds: float) -> list[dict]:
    ready = asyncio.Event()
    counts = [{"frames": 0, "bytes": 0, "seconds": 0.0} for _ in range(n)]
    tasks = [asyncio.create_task(_one_client(url, seconds, ready, c)) for c in counts]
    ready.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for c, res in zip(counts, results):
        c["error"] = None if res is None else repr(res)
    return counts


def client_main(url: str, n: int, seconds: float) -> None:
    start, cpu0 = time.monotonic(), time.process_time()
    counts = asyncio.run(_clients(url, n, seconds))
    print(json.dumps({"clients": counts, "cpu_cores": (time.process_time() - cpu0) / (time.monotonic() - start)}))


# -- pipeline side ----------------------------------------------------------------------------------
def _start_pipeline(args):
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.stream.pipeline import Pipeline
    from mambalitesr.runtime.core.processing import FrameProcessor
    from mambalitesr.runtime.stream.registry import parse_source
    from mambalitesr.runtime.web.sink import WebSink

    backend = create_backend("torch", model=args.model, weights=None, device="cpu", precision="fp32",
                             scan_backend=None, threads=args.threads)
    sink = WebSink(f"http://127.0.0.1:0?fps={args.viewer_fps:g}&quality={args.quality}", log=lambda m: None)
    pipeline = Pipeline(parse_source(args.source), FrameProcessor(backend), sink, warmup=2, log=lambda m: None)
    box: dict = {}

    def run():
        try:
            box["stats"] = pipeline.run()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="bench-pipeline", daemon=True)
    thread.start()
    return pipeline, sink, thread, box


def _lower_priority(sched: str, nice: int) -> None:
    """In the client process before exec: SCHED_IDLE, or niceness ``nice`` for it and its autogroup (Linux)."""
    if sched == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    if nice:
        os.nice(nice)
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(min(nice, 19)))
        except OSError:
            pass  # no autogroup scheduling here: the process niceness above is what applies


def _phase(pipeline, sink, viewers: int, seconds: float, args) -> dict:
    proc = None
    if viewers:
        cmd = [sys.executable, os.path.abspath(__file__), "--clients-only", sink.url, str(viewers), f"{seconds + CLIENT_MARGIN_S:g}"]
        # the stand-in for browsers on other machines: low priority, and in a session of its own whose
        # scheduler autogroup is lowered too (a new autogroup otherwise competes at full weight)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=lambda: _lower_priority(args.client_sched, args.client_nice))
        deadline = time.monotonic() + 60
        while sink.viewers < viewers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the {viewers} clients did not connect: {proc.communicate()[1][-2000:]}")
            time.sleep(0.1)
    stats = pipeline.stats
    rss, viewer_rss = [rss_mib()], [rss_mib(sink.viewer.pid)]
    cpu0, ticks0 = cpu_s(sink.viewer.pid), machine_ticks()
    encodes0, frames0, t0 = sink.encodes, stats.frames_out, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        time.sleep(min(1.0, seconds - (time.perf_counter() - t0)))
        rss.append(rss_mib())
        viewer_rss.append(rss_mib(sink.viewer.pid))
    elapsed = time.perf_counter() - t0
    cpu1, ticks1 = cpu_s(sink.viewer.pid), machine_ticks()
    result = {
        "viewers": viewers,
        "seconds": elapsed,
        "frames": stats.frames_out - frames0,
        "pipeline_fps": (stats.frames_out - frames0) / elapsed,
        "encodes_per_s": (sink.encodes - encodes0) / elapsed,
        "rss_mib": {"start": rss[0], "middle": rss[len(rss) // 2], "end": rss[-1], "max": max(rss)},
        "viewer_rss_mib": None if None in viewer_rss else {"start": viewer_rss[0], "end": viewer_rss[-1],
                                                           "max": max(viewer_rss)},
        "cpu_cores": {k: None if cpu1[k] is None or cpu0[k] is None else (cpu1[k] - cpu0[k]) / elapsed for k in cpu1},
    }
    if ticks0 and ticks1 and ticks1[1] > ticks0[1]:
        result["steal"] = (ticks1[0] - ticks0[0]) / (ticks1[1] - ticks0[1])
    frames = result["frames"]
    result["cpu_ms_per_frame"] = (cpu1["process"] - cpu0["process"]) / frames * 1000 if frames else None
    if proc is not None:
        try:
            out, err = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        report = json.loads(out) if out.strip() else {"clients": []}
        clients = report["clients"]
        if len(clients) != viewers or any(c["error"] for c in clients):
            raise SystemExit(f"client failures: {clients} {err[-2000:]}")
        per_client = [c["frames"] / c["seconds"] for c in clients]
        result["viewer_fps"] = {"min": min(per_client), "mean": sum(per_client) / len(per_client)}
        result["viewer_mib_per_s"] = sum(c["bytes"] / c["seconds"] for c in clients) / 2**20
        result["clients_cpu_cores"] = report["cpu_cores"]
    return result


def _print_phase(r: dict) -> None:
    m = r["rss_mib"]
    line = (f"  {r['viewers']:>2} viewers: pipeline {r['pipeline_fps']:6.2f} fps ({r['frames']} frames in "
            f"{r['seconds']:.1f} s), {r['encodes_per_s']:5.2f} JPEG encodes/s; RSS start {m['start']:.0f} MiB, "
            f"middle {m['middle']:.0f}, end {m['end']:.0f}, max {m['max']:.0f}")
    if r.get("steal") is not None:
        line += f"; CPU time stolen by the host {r['steal'] * 100:.1f}%"
    c = r["cpu_cores"]
    viewer = "n/a" if c["viewer"] is None else f"{c['viewer'] * 100:.1f}%"
    per_frame = "n/a" if r["cpu_ms_per_frame"] is None else f"{r['cpu_ms_per_frame']:.1f} ms"
    line += (f"\n              CPU (% of one core): this process {c['process'] * 100:.1f}% ({per_frame} per frame out)"
             f"; the viewer process {viewer}")
    if "clients_cpu_cores" in r:
        line += f"; the client process {r['clients_cpu_cores'] * 100:.1f}%"
    if "viewer_fps" in r:
        line += (f"\n              each viewer got {r['viewer_fps']['mean']:.2f} fps (min {r['viewer_fps']['min']:.2f}), "
                 f"{r['viewer_mib_per_s']:.1f} MiB/s sent in all")
    print(line, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default 30)")
    p.add_argument("--phases", default="0,20", help="viewers per phase, comma-separated (default 0,20)")
    p.add_argument("--source", default="synthetic:160x120", help="an unpaced source (default synthetic:160x120)")
    p.add_argument("--model", default="test_x4", help="torch registry model (default test_x4)")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="torch CPU threads (default: all cores but one, see above; all cores is the worst case)")
    p.add_argument("--viewer-fps", type=float, default=30.0, help="the viewer's encode cap (default 30)")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality (default 85)")
    p.add_argument("--client-sched", choices=("idle", "nice"), default="idle" if hasattr(os, "SCHED_IDLE") else "nice",
                   help="the client process's scheduling: SCHED_IDLE (default on Linux) or --client-nice")
    p.add_argument("--client-nice", type=int, default=10, help="niceness of the client process with "
                                                                "--client-sched nice (default 10)")
    p.add_argument("--json", default=None, help="also write the figures as JSON")
    p.add_argument("--clients-only", nargs=3, metavar=("URL", "N", "SECONDS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.clients_only:
        url, n, seconds = args.clients_only
        client_main(url, int(n), float(seconds))
        return 0
    phases = [int(v) for v in args.phases.split(",")]
    if not re.match(r"^synthetic(:\d+x\d+)?$", args.source):
        print("note: --source should be an unpaced synthetic pattern for a throughput figure", file=sys.stderr)

    pipeline, sink, thread, box = _start_pipeline(args)
    deadline = time.monotonic() + 300
    while pipeline.stats.frames_out < 3:  # past the warm-up and the first frames
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"the pipeline did not start: {box.get('error')}")
        time.sleep(0.2)
    print(f"web viewer benchmark: {pipeline.source.describe()} -> {pipeline.backend.describe()}", flush=True)
    print(f"  viewer {sink.url} (<= {args.viewer_fps:g} fps, JPEG q{args.quality}); {args.seconds:g} s per phase; "
          f"clients in one separate process at {'SCHED_IDLE' if args.client_sched == 'idle' else f'nice {args.client_nice}'}; viewer process below the pipeline's "
          f"priority: {sink.viewer.lowered or 'no'}", flush=True)
    results = []
    try:
        for viewers in phases:
            results.append(_phase(pipeline, sink, viewers, args.seconds, args))
            _print_phase(results[-1])
    finally:
        pipeline.request_stop("benchmark done")
        thread.join(60)
    loaded = [r for r in results if r["viewers"] > 0]
    for i, r in enumerate(results):
        # the reference is the 0-viewer phase(s) right before and after: on a shared machine the rate drifts
        ref = [results[j]["pipeline_fps"] for j in (i - 1, i + 1) if 0 <= j < len(results) and results[j]["viewers"] == 0]
        if r["viewers"] and ref:
            r["drop"] = 1 - r["pipeline_fps"] / (sum(ref) / len(ref))
    base = [r["pipeline_fps"] for r in results if r["viewers"] == 0]
    if len(base) > 1:
        print(f"  the 0-viewer phases differ by {(max(base) / min(base) - 1) * 100:.1f}% among themselves: "
              f"fps differences below that are the machine's noise")
    measured = [r for r in loaded if "drop" in r]
    if measured:
        mean_drop = sum(r["drop"] for r in measured) / len(measured)
        verdict = "within" if mean_drop < TARGET_DROP else "OVER"
        drops = ", ".join(f"{r['drop'] * 100:.1f}%" for r in measured)
        median = statistics.median(r["drop"] for r in measured)
        print(f"  throughput drop with viewers (each against the 0-viewer phases around it): {drops}; mean "
              f"{mean_drop * 100:.1f}% ({verdict} the {TARGET_DROP * 100:.0f}% target), median {median * 100:.1f}%")
    base_cpu = [r["cpu_ms_per_frame"] for r in results if r["viewers"] == 0 and r["cpu_ms_per_frame"]]
    loaded_cpu = [r["cpu_ms_per_frame"] for r in loaded if r["cpu_ms_per_frame"]]
    if base_cpu and loaded_cpu:
        b, v = sum(base_cpu) / len(base_cpu), sum(loaded_cpu) / len(loaded_cpu)
        print(f"  CPU per frame out: {b:.1f} ms with 0 viewers, {v:.1f} ms with viewers: a CPU-bound pipeline would "
              f"lose about {(1 - b / v) * 100:.1f}% throughput (robust to the machine's load, unlike fps)")
    for r in loaded:
        cores = r["cpu_cores"]
        if cores["viewer"] is not None and r["encodes_per_s"] > 0:
            r["viewer_cpu_ms_per_tick"] = cores["viewer"] / r["encodes_per_s"] * 1000
            print(f"  viewer CPU with {r['viewers']} viewers: {r['viewer_cpu_ms_per_tick']:.1f} ms per tick "
                  f"(bicubic + JPEG once, sent {r['viewers']} times), {cores['viewer'] / cores['process'] * 100:.1f}% "
                  f"of the pipeline process's CPU")
    if loaded:
        rss = loaded[-1]["rss_mib"]
        print(f"  memory with {loaded[-1]['viewers']} viewers: {rss['start']:.0f} -> {rss['middle']:.0f} -> "
              f"{rss['end']:.0f} MiB (change {rss['end'] - rss['start']:+.1f} MiB)")
        v = loaded[-1]["viewer_rss_mib"]
        if v:
            print(f"  the viewer process's memory: {v['start']:.0f} -> {v['end']:.0f} MiB (max {v['max']:.0f})")
    if args.json:
        from mambalitesr.imageio import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"phases": results, "source": pipeline.source.describe(),
                                       "backend": pipeline.backend.describe()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
