"""What low rank saves in training: step time, peak memory and (where a power reader exists) energy per step.

Glossary (code name -> paper symbol): r rank of in_proj / out_proj (None = full rank), B batch,
p LR patch; step_cpu_ms CPU time (process time) of one optimiser step (forward, L1 loss, backward,
Adam) at torch threads 1; step_wall_ms its wall time; peak_rss_mb the process's peak resident
memory (getrusage ru_maxrss), base_rss_mb the resident memory just before the first step (torch,
model, optimiser, batch), so peak - base is what training itself adds; j_per_step energy per step
from the board power reader (jtop, tegrastats or NVML via mambalitesr.runtime.power), None when
this machine has none.

Each measurement runs in its own process (``python -m mambalitesr.benchmarks.train_cost``), so
one config's peak memory cannot hide another's; rank r and full rank alternate, repeated, to
spread the noise of a shared machine evenly over both.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_here(cfg_json: str, steps: int, batch: int, patch: int, backend: str, warmup: int = 2) -> dict:
    """Train ``cfg`` on random batches in this process; the figures of the module docstring."""
    import resource

    import torch
    import torch.nn.functional as F

    from mambalitesr.models.config import SRConfig
    from mambalitesr.models.network import MambaSR
    from mambalitesr.runtime.power import PowerMonitor, open_power_source

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = SRConfig.from_json(cfg_json)
    model = MambaSR(cfg).set_scan_backend(backend).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lr = torch.rand(batch, 3, patch, patch)  # (B, 3, p, p)
    hr = torch.rand(batch, 3, cfg.scale * patch, cfg.scale * patch)  # (B, 3, s p, s p)

    def step():
        loss = F.l1_loss(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    told = []
    source = open_power_source("auto", say=told.append)
    base = _rss_mb()
    for _ in range(warmup):
        step()
    cpu, wall = [], []
    with PowerMonitor(source) as monitor:
        monitor.begin()
        for _ in range(steps):
            c0, t0 = time.process_time(), time.perf_counter()
            step()
            cpu.append(1000 * (time.process_time() - c0))
            wall.append(1000 * (time.perf_counter() - t0))
        power = monitor.end(frames=steps)
    return {
        "rank": cfg.rank, "params": sum(p.numel() for p in model.parameters()),
        "step_cpu_ms": statistics.median(cpu), "step_wall_ms": statistics.median(wall),
        "base_rss_mb": base, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "j_per_step": power.j_per_frame, "power_source": monitor.name,
        "power_note": told[0] if told else (power.telemetry_lost or ""),
    }


def measure(cfg_json: str, steps: int, batch: int, patch: int, backend: str) -> dict:
    """``measure_here`` in a fresh interpreter (its own peak memory), at the caller's CPU priority."""
    cmd = [sys.executable, "-m", "mambalitesr.benchmarks.train_cost", "--config", cfg_json, "--steps", str(steps),
           "--batch", str(batch), "--patch", str(patch), "--scan", backend]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"training-cost measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_ranks(configs: dict, steps: int = 10, batch: int = 16, patch: int = 48, backend: str = "native",
                  repeats: int = 2, say=lambda m: None) -> dict:
    """{label: {"low": [runs], "full": [runs]}} for each labelled SRConfig (low rank) against its full-rank twin."""
    out = {}
    for label, cfg in configs.items():
        runs = {"low": [], "full": []}
        for _ in range(repeats):
            for kind, c in (("low", cfg), ("full", cfg.replace(rank=None))):
                runs[kind].append(measure(c.to_json(), steps, batch, patch, backend))
                say(f"train cost: {label} {kind}: {runs[kind][-1]['step_cpu_ms']:.0f} ms/step CPU, "
                    f"peak {runs[kind][-1]['peak_rss_mb']:.0f} MB")
        out[label] = {"config": json.loads(cfg.to_json()), **runs}
    return {"steps": steps, "batch": batch, "patch": patch, "backend": backend, "repeats": repeats, "host": _host(),
            "results": out}


def _host() -> str:
    """The CPU the figures were measured on (model name, logical cores), for the report."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores"


def cost_command(args: argparse.Namespace) -> int:
    """``mambalitesr search cost``: measure the study's configs and write train_cost.json beside its database."""
    import json
    from pathlib import Path

    from mambalitesr.errors import UserError
    from mambalitesr.imageio import atomic_path
    from mambalitesr.models.config import SRConfig
    from mambalitesr.models.registry import STUDENT
    from mambalitesr.models.study import fit, space
    from mambalitesr.models.study.report import COST_FILE
    from mambalitesr.models.study.search import load_study, sqlite_path

    db = sqlite_path(args.storage)
    if db is None:
        raise UserError("`search cost` writes train_cost.json next to the study database: use a sqlite:/// storage")
    configs = {"paper (r=2)": space.decode(space.PAPER)[0], f"shipped (r={STUDENT.rank})": STUDENT}
    decision = fit.study_decision(load_study(args.storage, args.study_name), args.budget_params, args.tolerance)["decision"]
    if decision.get("chosen"):
        chosen = SRConfig(**decision["chosen_config"])
        if chosen == STUDENT:
            pass  # the pick is the shipped config, already measured
        elif chosen.rank is not None and space.effective_rank(chosen) is not None:
            configs[f"study's pick, trial {decision['chosen']['number']} (r={chosen.rank})"] = chosen
        else:
            print("the study's pick is full rank: nothing to compare for it", file=sys.stderr)
    result = compare_ranks(configs, steps=args.steps, batch=args.batch, patch=args.patch, backend=args.scan,
                           repeats=args.repeats, say=lambda m: print(m, file=sys.stderr, flush=True))
    path = db.parent / COST_FILE
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    print(path)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one training-cost measurement (internal to `mambalitesr search cost`)")
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--scan", default="native")
    args = p.parse_args(argv)
    print(json.dumps(measure_here(args.config, args.steps, args.batch, args.patch, args.scan)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
