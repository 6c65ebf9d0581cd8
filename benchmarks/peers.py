"""Our models beside the convolutional SR networks users compare them with: SAFMN, SPAN, FSRCNN.

Glossary (code name -> meaning):
    peer        another SR network, built with random weights: its latency depends on its architecture and
                the input size only (definitions in peer_arch.py, which says why not spandrel's)
    published   a peer's Set5 x4 PSNR-Y as printed in its paper (benchmarks/published.py), never measured here
    measured    our models' Set5 x4 PSNR-Y, measured by this run when --data is given
    round       one call of every model on the same input, in a fixed order: models are interleaved, so a
                slow phase of the machine (another job on the core) hits all of them alike
    t_i         wall time of call i (time.perf_counter); the row keeps the median, min and every t_i
    ratio_640   a model's median at 640x360 over its median at 320x180 (4x the pixels)

Lane: torch fp32 on the CPU (our models on their fastest scan, the fused native path). Results go to
``<results-dir>/peers/<device>.json`` and ``.md`` with a quality-vs-latency chart (``.png``).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mambalitesr.errors import UserError

PEER_NAMES = ("safmn", "span", "fsrcnn")


@dataclass(frozen=True)
class PeerInfo:
    label: str
    published_psnr: float | None  # Set5 x4 PSNR-Y from the paper, None where we have no checked figure
    source: str


PEERS = {
    "safmn": PeerInfo("SAFMN", 32.18, "Sun et al., ICCV 2023, x4 table (dim 36, 8 blocks, ffn 2.0)"),
    "span": PeerInfo("SPAN", 32.20, "Wan et al., CVPRW 2024, x4 table (48 features); the figure is quoted from "
                                    "memory of that table, not re-checked against the paper here"),
    "fsrcnn": PeerInfo("FSRCNN", 30.71, "Dong et al., ECCV 2016 (d 56, s 12, m 4); x4 as re-reported by later "
                                        "tables (Y channel); here on RGB"),
}


def build_peer(name: str, scale: int = 4):
    """A peer network with random weights, eval mode, (B, 3, h, w) -> (B, 3, s h, s w)."""
    from mambalitesr.benchmarks import peer_arch

    builders = {"safmn": lambda: peer_arch.SAFMN(scale=scale), "span": lambda: peer_arch.SPAN(scale=scale),
                "fsrcnn": lambda: peer_arch.fsrcnn(scale)}
    if name not in builders:
        raise UserError(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")
    return builders[name]().eval()


@dataclass
class Entry:
    name: str  # our registry name or a peer name
    label: str
    kind: str  # "ours" or "peer"
    params: int
    psnr: float | None = None
    psnr_kind: str = ""  # "measured" or "published"
    module: object = field(default=None, repr=False)


def _entries(models: list[tuple[str, str | None]], peers: list[str], data: Path | None) -> list[Entry]:
    from mambalitesr.models.registry import create_model
    from mambalitesr.models.scan_native import load_library

    load_library()  # our lane is the native path: a missing library is an error, not a slower row
    out = []
    for name, weights in models:
        module = create_model(name, weights=weights, scan_backend="native")
        e = Entry(name, name, "ours", sum(p.numel() for p in module.parameters()), module=module)
        if data is not None:
            from mambalitesr.models.evaluate import evaluate, torch_upscaler

            e.psnr = evaluate(torch_upscaler(module), data, module.config.scale, progress=False)["psnr_y"]
            e.psnr_kind = "measured"
        out.append(e)
    for name in peers:
        module = build_peer(name)
        info = PEERS[name]
        out.append(Entry(name, info.label, "peer", sum(p.numel() for p in module.parameters()), info.published_psnr,
                         "published", module))
    return out


def time_round_robin(entries: list[Entry], hw: tuple[int, int], repeats: int,
                     warmup: int = 1) -> dict[str, tuple[list[float], list[float]]]:
    """(wall, process CPU) seconds per call of every entry on one (1, 3, h, w) input, models interleaved.
    CPU time is kept beside wall time: on a shared core it hardly grows with the other jobs' load."""
    import torch

    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    times: dict[str, tuple[list[float], list[float]]] = {e.name: ([], []) for e in entries}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for e in entries:
                t0, c0 = time.perf_counter(), time.process_time()
                e.module(x)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if i >= warmup:
                    times[e.name][0].append(dt)
                    times[e.name][1].append(dc)
    return times


def run_peers(models, peers, sizes, repeats: int, threads: int | None, data: Path | None,
              results_dir: Path, device: str, note: str | None) -> dict:
    import torch

    from mambalitesr.benchmarks.results import cpu_model, mixer_width
    from mambalitesr.runtime.memory import keep_freed_memory

    keep_freed_memory()  # as the runtime does: frames reuse pages instead of mapping fresh ones
    if threads:
        torch.set_num_threads(threads)
    entries = _entries(models, peers, data)
    load_before = os.getloadavg()
    rows = []
    for hw in sizes:
        print(f"timing {hw[1]}x{hw[0]}: {', '.join(e.label for e in entries)} x{repeats}", file=sys.stderr)
        times = time_round_robin(entries, hw, repeats)
        for e in entries:
            t, c = times[e.name]
            rows.append({"model": e.name, "label": e.label, "kind": e.kind, "params": e.params,
                         "h": hw[0], "w": hw[1], "median_s": statistics.median(t), "min_s": min(t), "times_s": t,
                         "cpu_median_s": statistics.median(c), "cpu_s": c,
                         "psnr_set5": e.psnr, "psnr_kind": e.psnr_kind})
    result = {
        "schema": "mambalitesr-peers-1", "device": device, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu": cpu_model(), "mixer_width": mixer_width(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "command": " ".join(sys.argv), "note": note, "repeats": repeats, "rows": rows,
    }
    result["summary"] = summarize(rows)
    write_results(result, results_dir, device)
    return result


def summarize(rows: list[dict]) -> list[str]:
    """The acceptance sentences, computed from the rows: wall-time medians, then CPU-time medians."""
    lines = []
    for key, what in (("median_s", "wall"), ("cpu_median_s", "CPU")):
        lines.append(f"by {what} time:")
        lines += ["  " + line for line in _ratios({(r["model"], r["h"], r["w"]): r[key] for r in rows})]
    return lines


def _ratios(med: dict) -> list[str]:
    lines = []
    for (h, w) in sorted({(h, w) for (_, h, w) in med}):
        def get(name):
            return med.get((name, h, w))

        st, te, sa, sp = get("mambalitesr_x4"), get("dvmsr_x4"), get("safmn"), get("span")
        if st and sa:
            lines.append(f"{w}x{h}: student {st:.3f} s vs SAFMN {sa:.3f} s ({st / sa:.2f}x SAFMN's time)")
        if st and sp:
            lines.append(f"{w}x{h}: student {st:.3f} s vs SPAN {sp:.3f} s ({st / sp:.2f}x SPAN's time)")
        if st and te:
            lines.append(f"{w}x{h}: teacher/student = {te / st:.2f} ({te:.3f} s / {st:.3f} s)")
    for name in sorted({name for (name, _, _) in med}):
        a, b = med.get((name, 180, 320)), med.get((name, 360, 640))
        if a and b:
            lines.append(f"{name}: 640x360 costs {b / a:.2f}x the 320x180 frame (4x the pixels)")
    return lines


def peers_dir(results_dir: Path) -> Path:
    """Peers results live in their own folder: a different schema from <device>.json beside it."""
    return results_dir / "peers"


def write_results(result: dict, results_dir: Path, device: str) -> None:
    folder = peers_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / device
    _atomic_write(stem.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    _atomic_write(stem.with_suffix(".md"), render_markdown(result, stem.name + ".png"))
    try:
        plot(result, stem.with_suffix(".png"))
    except ImportError as exc:
        print(f"no chart: {exc} (pip install matplotlib)", file=sys.stderr)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def render_markdown(result: dict, png: str) -> str:
    machine = result["machine"]
    cpu = f"{machine['cpu']}, " if machine.get("cpu") else ""  # older files name no CPU model or mixer width
    width = f"C mixer {machine['mixer_width']} lanes, " if machine.get("mixer_width") else ""
    out = [f"# Peers on {result['device']}", "",
           f"Generated {result['created']} by `{result['command']}`; {cpu}{width}torch {result['machine']['torch']}, "
           f"{result['machine']['threads']} thread(s), CPU affinity {result['machine']['affinity']}, load average "
           f"{result['machine']['loadavg_before'][0]:.1f} before / {result['machine']['loadavg_after'][0]:.1f} after, "
           f"{result['repeats']} timed rounds after one warm-up round, models interleaved per round.", ""]
    if result.get("note"):
        out += [f"Note: {result['note']}", ""]
    out += ["| model | params | input | median s (wall) | min s (wall) | median s (CPU) | Set5 x4 PSNR-Y |",
            "|---|---:|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        psnr = f"{r['psnr_set5']:.2f} ({r['psnr_kind']})" if r["psnr_set5"] else "-"
        out.append(f"| {r['label']} | {r['params']:,} | {r['w']}x{r['h']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                   f"{r['cpu_median_s']:.3f} | {psnr} |")
    out += ["", "Peers run with random weights (latency does not depend on them); their PSNR is the published "
            "figure (benchmarks/peers.py gives the sources), ours is measured on Set5 when the run had --data.", ""]
    out += [f"  - {line.strip()}" if line.startswith("  ") else f"- {line}" for line in result["summary"]]
    out += ["", f"![quality vs latency]({png})", ""]
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if (r["h"], r["w"]) == (180, 320) and r["psnr_set5"]]
    if not rows:
        path.unlink(missing_ok=True)
        return
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    # CPU time: on a shared core it is the figure that does not depend on the other jobs (wall time is in the table)
    for i, r in enumerate(sorted(rows, key=lambda r: r["cpu_median_s"])):
        marker = "o" if r["kind"] == "ours" else "s"
        ax.scatter(r["cpu_median_s"], r["psnr_set5"], marker=marker, s=40)
        ax.annotate(f"{r['label']} ({r['psnr_kind']})", (r["cpu_median_s"], r["psnr_set5"]),
                    textcoords="offset points", xytext=(6, 8 if i % 2 else -12), fontsize=8)
    ax.margins(x=0.25, y=0.1)
    ax.set_xlabel(f"median CPU s per 320x180 -> x4 frame ({result['machine']['threads']} thread, process CPU time)")
    ax.set_ylabel("Set5 x4 PSNR-Y (dB)")
    ax.set_title("Quality vs latency (o ours, measured PSNR; s peers, published PSNR)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
