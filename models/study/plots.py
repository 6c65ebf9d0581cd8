"""The study's figures: the Pareto front, PSNR against size with its fit, and the longer-budget rung.

Glossary (code name -> paper symbol): see :mod:`mambalitesr.models.study.fit`; rows are
``fit.trial_rows`` dicts, PSNR the held-out PSNR-Y in dB, K directions.
"""
from __future__ import annotations

import math
from pathlib import Path

from mambalitesr.models.study import fit


def _readable_log_ticks(axis, unit: str) -> None:
    """Label a log axis at 1, 2 and 5 times powers of ten (20K, 50K, 100K; or 200, 500, 1000)."""
    import matplotlib.ticker as ticker

    def label(x, _pos):
        lead = round(x / 10 ** math.floor(math.log10(x)), 6)
        if lead not in (1, 2, 5):
            return ""
        return f"{x / 1000:g}K" if unit == "K" else f"{x:g}"

    axis.set_major_formatter(ticker.FuncFormatter(label))
    axis.set_minor_formatter(ticker.FuncFormatter(label))


def plot_front(rows: list[dict], front: list[dict], decision: dict, path: Path, frame: str = "320x180",
               title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mambalitesr.imageio import atomic_path

    done = fit.complete(rows)
    on_front = {r["number"] for r in front}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, xkey, xlabel in ((axes[0], "params", "parameters"), (axes[1], "latency_ms", f"CPU latency at {frame} (ms, 1 thread)")):
        for K, marker in ((1, "o"), (4, "s")):
            pts = [r for r in done if r["directions"] == K]
            sc = ax.scatter([r[xkey] for r in pts], [r["psnr"] for r in pts], c=[math.log10(r["macs"]) for r in pts],
                            cmap="viridis", marker=marker, s=40, edgecolors="none", label=f"K={K}",
                            vmin=min(math.log10(r["macs"]) for r in done), vmax=max(math.log10(r["macs"]) for r in done))
        front2 = sorted(fit.pareto_front(done, keys=(("psnr", 1), (xkey, -1))), key=lambda r: r[xkey])
        ax.step([r[xkey] for r in front2], [r["psnr"] for r in front2], where="post", color="tab:red", lw=1,
                label="2-D Pareto front")
        ax.scatter([r[xkey] for r in done if r["number"] in on_front], [r["psnr"] for r in done if r["number"] in on_front],
                   facecolors="none", edgecolors="tab:red", s=110, lw=1, label="3-D Pareto front")
        by_number = {r["number"]: r for r in done}
        labels: dict[int, list[str]] = {}
        for key, text in (("chosen", "study's pick"), ("student", "shipped"), ("paper", "paper")):
            if decision.get(key) and decision[key]["number"] in by_number:
                labels.setdefault(decision[key]["number"], []).append(text)
        for i, (number, texts) in enumerate(labels.items()):
            r = by_number[number]
            colour = "tab:red" if "study's pick" in texts else "black"
            ax.annotate(f"{' = '.join(texts)} (#{number})", (r[xkey], r["psnr"]), xytext=(0.45, 0.42 - 0.06 * i),
                        textcoords="axes fraction", color=colour, fontsize=9,
                        arrowprops={"arrowstyle": "-", "color": colour})
        ax.set_xscale("log")
        _readable_log_ticks(ax.xaxis, "K" if xkey == "params" else "")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out PSNR-Y (dB)")
        ax.grid(alpha=0.3)
    axes[0].axvline(decision["budget"], color="grey", ls="--", lw=0.8)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.colorbar(sc, ax=axes, label=f"log10 MACs per {frame} frame", shrink=0.85)
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_fit(rows: list[dict], fitted: dict, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mambalitesr.imageio import atomic_path

    done = fit.complete(rows)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    xs = np.linspace(min(math.log10(r["params"]) for r in done), max(math.log10(r["params"]) for r in done), 50)
    for K, colour in ((1, "tab:blue"), (4, "tab:orange")):
        pts = [r for r in done if r["directions"] == K]
        ax.scatter([r["params"] for r in pts], [r["psnr"] for r in pts], color=colour, s=30, label=f"K={K} trials")
        j = fitted.get("joint")
        if j and pts and (K == 1 or j["bK4"] is not None):
            ax.plot(10**xs, j["b0"] + j["b1"] * xs + (j["bK4"] if K == 4 else 0.0), color=colour, lw=1.2,
                    label=f"joint fit, K={K}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("held-out PSNR-Y (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_rung(rung_rows: list[dict], steps: int, screen_steps: int, path: Path, frame: str = "320x180",
              fitted: dict | None = None) -> None:
    """The promoted trials at the longer budget against parameters and latency, their 2-D Pareto fronts, and
    (hollow) where the screening had them; ``fitted`` (fit.fit_psnr_vs_size of these rows) adds its line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mambalitesr.imageio import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, xkey, xlabel in ((axes[0], "params", "parameters"), (axes[1], "latency_ms", f"CPU latency at {frame} (ms, 1 thread)")):
        for r in rung_rows:
            ax.plot([r[xkey]] * 2, [r["screen_psnr"], r["psnr"]], color="grey", lw=0.6, ls=":")
            colour = "tab:red" if r["reference"] == "student" else "black"
            ax.annotate(f"#{r['number']}" + (f" {'shipped' if r['reference'] == 'student' else r['reference']}"
                                             if r["reference"] else ""), (r[xkey], r["psnr"]),
                        xytext=(4, 4), textcoords="offset points", fontsize=8, color=colour)
        ax.scatter([r[xkey] for r in rung_rows], [r["screen_psnr"] for r in rung_rows], facecolors="none",
                   edgecolors="tab:blue", label=f"{screen_steps} steps (screening)")
        ax.scatter([r[xkey] for r in rung_rows], [r["psnr"] for r in rung_rows], color="tab:red", label=f"{steps} steps")
        front = sorted(fit.pareto_front(rung_rows, keys=(("psnr", 1), (xkey, -1))), key=lambda r: r[xkey])
        ax.step([r[xkey] for r in front], [r["psnr"] for r in front], where="post", color="tab:red", lw=1,
                label=f"Pareto front at {steps} steps")
        if xkey == "params" and fitted and fitted.get("joint"):
            j = fitted["joint"]
            xs = np.linspace(min(math.log10(r["params"]) for r in rung_rows), max(math.log10(r["params"]) for r in rung_rows), 50)
            ax.plot(10**xs, j["b0"] + j["b1"] * xs, color="tab:green", lw=1, ls="--",
                    label=f"fit: {j['b0']:.2f} {j['b1']:+.3f} log10(params), R^2 {j['r2']:.2f}"
                          + (" (K = 1)" if j["bK4"] is not None else ""))
        ax.set_xscale("log")
        _readable_log_ticks(ax.xaxis, "K" if xkey == "params" else "")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out PSNR-Y (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Promoted trials re-trained for {steps} steps (same seed and batches)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
