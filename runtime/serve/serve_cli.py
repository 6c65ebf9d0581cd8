"""``mambalitesr serve``: the student behind a real Triton Inference Server, HTTP and gRPC on loopback.

Glossary (option -> meaning):
    --backend torch|onnxruntime   our backend that runs the model inside pytriton's tritonserver (the
                                  ``nvidia-pytriton`` wheel's binary); requests from many clients with the same
                                  (h, w) are batched by Triton's dynamic batcher (--max-batch-size, --queue-delay-us)
    --model-repository REPO       instead: exec the ``tritonserver`` on PATH (or --tritonserver) on REPO, e.g.
                                  one from ``mambalitesr export triton`` (inside NVIDIA's Triton container)
    --host                        bind address (default 127.0.0.1: this machine only; 0.0.0.0 to serve the LAN)
    --http-port/--grpc-port/--metrics-port   8000 / 8001 / 8002 by default
    health                        GET /v2/health/live, /v2/health/ready and /v2/models/NAME/ready on the HTTP
                                  port; Triton's server-wide "ready" turns 200 before pytriton has loaded the
                                  model, so clients that start with the server wait for the model's own ready

SIGTERM or Ctrl-C stops the server cleanly (exit 0 / 130) and prints the batch sizes the model ran.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from mambalitesr import argtypes as t
from mambalitesr.errors import MissingDependency, UserError

TRITON_IMAGE_X86 = "nvcr.io/nvidia/tritonserver:25.01-py3"
TRITON_IMAGE_JETSON = "nvcr.io/nvidia/tritonserver:25.01-py3-igpu"
PLUGIN_FILE = "libmambalitesr_plugins.so"  # the file names `mambalitesr export triton` writes (export/triton_repo.py)
SERVER_PLUGIN_FILE = "libmambalitesr_plugins_autoreg.so"  # registers its creator when dlopened, as Triton does


def register(subparsers) -> None:
    from mambalitesr.runtime.backends.options import add_backend_arguments

    p = subparsers.add_parser(
        "serve", help="serve the model through Triton Inference Server (HTTP + gRPC, dynamic batching)",
        description="Start a real Triton Inference Server for the student. By default the tritonserver that the "
        "nvidia-pytriton wheel ships runs our torch or onnxruntime backend with dynamic batching across requests; "
        "with --model-repository REPO the tritonserver on PATH serves REPO (e.g. from `mambalitesr export triton`). "
        "Clients: `mambalitesr camera --backend triton --url HOST:GRPC_PORT`.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--http-port", type=t.port, default=8000, help="HTTP/REST port (default 8000)")
    p.add_argument("--grpc-port", type=t.port, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=t.port, default=8002, help="Prometheus metrics port (default 8002)")
    p.add_argument("--model-name", default="mambalitesr", help="name clients ask for (default mambalitesr)")
    p.add_argument("--max-batch-size", type=t.int_range(1, 1024), default=8, help="largest batch the server forms (default 8)")
    p.add_argument("--queue-delay-us", type=t.int_range(0, 10**7), default=2000,
                   help="how long the dynamic batcher waits to fill a batch, microseconds (default 2000)")
    p.add_argument("--model-repository", default=None, metavar="REPO",
                   help="serve REPO with the tritonserver on PATH instead (NVIDIA's Triton container)")
    p.add_argument("--tritonserver", default=None, metavar="PATH", help="the tritonserver binary for --model-repository")
    p.add_argument("--log-verbose", type=t.int_range(0, 10), default=0, help="tritonserver's --log-verbose level (default 0)")
    add_backend_arguments(p, ("torch", "onnxruntime"))
    p.set_defaults(func=run)


def run(args) -> int:
    from mambalitesr.runtime.serve.ports import check_free

    if args.max_batch_size < 1:
        raise UserError(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    if args.queue_delay_us < 0:
        raise UserError(f"--queue-delay-us must be >= 0, got {args.queue_delay_us}")
    ports = {"HTTP": args.http_port, "gRPC": args.grpc_port, "metrics": args.metrics_port}
    if args.model_repository:
        return _exec_tritonserver(args, ports)
    check_free(args.host, ports)
    return _serve_pytriton(args)


def tritonserver_argv(binary: str, args) -> list[str]:
    repo = Path(args.model_repository).resolve()
    argv = [binary, f"--model-repository={repo}", f"--http-address={args.host}", f"--http-port={args.http_port}",
            f"--grpc-address={args.host}", f"--grpc-port={args.grpc_port}", f"--metrics-port={args.metrics_port}",
            f"--log-verbose={args.log_verbose}"]
    plugin = repo / "plugins" / SERVER_PLUGIN_FILE
    if plugin.is_file():  # the tensorrt_plan model needs the SelectiveScan plugin loaded by the server
        argv.append(f"--backend-config=tensorrt,plugins={plugin}")
    elif (repo / "plugins" / PLUGIN_FILE).is_file():
        raise UserError(f"{repo / 'plugins'} has {PLUGIN_FILE} but not {SERVER_PLUGIN_FILE}: Triton's TensorRT "
                        "backend only dlopens plugin libraries, so it needs the variant that registers itself when "
                        "loaded (CMake builds it beside the other when libnvinfer is found; see the repository's README)")
    return argv


def _exec_tritonserver(args, ports) -> int:
    from mambalitesr.runtime.serve.ports import check_free

    for flag in ("model", "weights", "device", "precision", "scan_backend", "threads", "onnx", "providers"):
        if getattr(args, flag, None) is not None:
            raise UserError(f"--{flag.replace('_', '-')} chooses our own backend; with --model-repository the "
                            "repository's config.pbtxt files choose the models")
    repo = Path(args.model_repository)
    if not repo.is_dir():
        raise UserError(f"{repo}: no such model repository folder")
    binary = args.tritonserver or shutil.which("tritonserver")
    if not binary or not Path(binary).is_file():
        raise MissingDependency(
            "--model-repository needs NVIDIA's tritonserver (not on PATH): run inside the Triton container, "
            f"{TRITON_IMAGE_X86} (x86-64) or {TRITON_IMAGE_JETSON} (JetPack 6), or pass --tritonserver PATH; "
            "without a repository, `mambalitesr serve --backend torch` uses the tritonserver from nvidia-pytriton"
        )
    check_free(args.host, ports)
    argv = tritonserver_argv(binary, args)
    print("serve: exec " + " ".join(argv), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(binary, argv)  # the server owns the process from here: its signals, its exit status
    return 1  # not reached


def _serve_pytriton(args) -> int:
    from mambalitesr import stopping
    from mambalitesr.runtime.backends import create_backend
    from mambalitesr.runtime.backends.options import backend_options
    from mambalitesr.runtime.serve.pytriton_server import BatchCounter, ServeConfig, start

    options = backend_options(args)
    backend = create_backend(args.backend, **options)
    backend.warm_up(1, (16, 16))
    cfg = ServeConfig(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                      metrics_port=args.metrics_port, model_name=args.model_name,
                      max_batch_size=args.max_batch_size, queue_delay_us=args.queue_delay_us,
                      log_verbose=args.log_verbose)
    counter = BatchCounter()
    stop = threading.Event()

    def first(name: str) -> None:  # SIGINT/SIGTERM through mambalitesr/stopping.py, as every command
        print(f"serve: {name}: stopping the server (again to stop at once)", file=sys.stderr, flush=True)
        stop.set()

    def second(name: str) -> None:  # the server's own shutdown is too slow for the user: end it and us now
        _kill_children()
        stopping.abandon(name)

    triton = None
    # The first signal ends the wait below and the server stops cleanly; a second one while it stops ends it now.
    with stopping.graceful(first, second):
        try:
            triton = start(backend, cfg, counter)
            host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
            print(f"serve: ready: model {cfg.model_name!r} ({backend.describe()}); HTTP http://{host}:{cfg.http_port} "
                  f"(health /v2/health/ready, model /v2/models/{cfg.model_name}/ready), gRPC {host}:{cfg.grpc_port}, "
                  f"metrics :{cfg.metrics_port}; dynamic batching up to {cfg.max_batch_size}, queue delay "
                  f"{cfg.queue_delay_us} us", file=sys.stderr, flush=True)
            print(f"serve: clients: mambalitesr camera --backend triton --url {host}:{cfg.grpc_port}", file=sys.stderr,
                  flush=True)
            while not stop.wait(0.5):
                if not triton.is_alive():
                    raise UserError("tritonserver exited unexpectedly (see its log above)")
        finally:
            if triton is not None:
                triton.stop()
            backend.close()
            received = stopping.received()
            sizes = ", ".join(f"{b}: {n}" for b, n in sorted(counter.counts.items())) or "none"
            print(f"serve: stopped{' (' + signal.Signals(received).name + ')' if received else ''}; "
                  f"batch sizes run (B: executions): {sizes}", file=sys.stderr, flush=True)
    return 128 + signal.SIGINT if received == signal.SIGINT else 0


def _kill_children() -> None:
    """SIGKILL the processes this one started (pytriton's tritonserver and its stubs), so none outlives us."""
    pids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:  # a thread that ended meanwhile
            continue
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
