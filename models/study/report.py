"""models/study/README.md and its plots, rebuilt from the stored study (and train_cost.json) alone.

Glossary (code name -> paper symbol): see :mod:`mambalitesr.models.study.fit`; front the trials no
other trial beats on all of PSNR (up), |theta| (down) and CPU latency (down).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from mambalitesr.models.study import fit, search, space

COST_FILE = "train_cost.json"


def _fmt(v, spec: str = "", none: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def _cfg_text(r: dict) -> str:
    return (f"C{r['embed_dim']} G{r['groups']} M{r['mixers']} N{r['d_state']} E{r['expand']} "
            f"r{r['rank'] if r['rank'] is not None else '-'} K{r['directions']}")


def plot_front(rows: list[dict], front: list[dict], decision: dict, path: Path, frame: str = "320x180") -> None:
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
        for key, colour, text in (("chosen", "tab:red", "shipped"), ("paper", "black", "paper"), ("student", "tab:blue", "current")):
            r = decision.get(key)
            if r:
                ax.annotate(f"{text} (#{r['number']})", (r[xkey], r["psnr"]), xytext=(8, -14), textcoords="offset points",
                            color=colour, fontsize=9, arrowprops={"arrowstyle": "-", "color": colour})
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out PSNR-Y (dB)")
        ax.grid(alpha=0.3)
    axes[0].axvline(decision["budget"], color="grey", ls="--", lw=0.8)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.colorbar(sc, ax=axes, label=f"log10 MACs per {frame} frame", shrink=0.85)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_fit(rows: list[dict], fitted: dict, path: Path) -> None:
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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _noise_lines(study, rows: list[dict], tolerance: float) -> list[str]:
    """What one seed per trial can resolve: reruns of stored trials with other seeds (`mambalitesr search rerun`)."""
    import statistics

    steps = study.user_attrs.get("budget", {}).get("steps")
    reruns = [v for k, v in sorted(study.user_attrs.items()) if k.startswith("rerun:") and v.get("steps", steps) == steps]
    lines = [f"Caveat: every trial is one training run (seed {study.user_attrs.get('seed')}) at a short budget."]
    if not reruns:
        return lines + ["No trial was re-run with another seed yet (`mambalitesr search rerun --trial N --seed S`), so "
                        "the seed-to-seed spread, and with it whether differences of the order of the "
                        f"{tolerance} dB tolerance are real, is not measured."]
    by_trial: dict[int, list[float]] = {}
    for r in reruns:
        by_trial.setdefault(r["trial"], []).append(r["psnr"])
    spreads = []
    for number, values in sorted(by_trial.items()):
        stored = next((x["psnr"] for x in rows if x["number"] == number), None)
        allv = values + ([stored] if stored is not None else [])
        sd = statistics.stdev(allv) if len(allv) > 1 else float("nan")
        spreads.append(sd)
        lines.append(f"- trial {number}: PSNR over {len(allv)} seeds {', '.join(f'{v:.3f}' for v in allv)} dB "
                     f"(sd {sd:.3f} dB)")
    lines.append(f"Seed-to-seed sd, pooled: {math.sqrt(statistics.mean(s * s for s in spreads)):.3f} dB: differences "
                 "below about twice this are not resolved by one run per config.")
    return lines


def _longer_budget_lines(study, rows: list[dict]) -> list[str]:
    """Trials re-trained with more steps (`mambalitesr search rerun --steps T`): does the short budget's ranking hold?"""
    steps = study.user_attrs.get("budget", {}).get("steps")
    longer = [v for k, v in sorted(study.user_attrs.items()) if k.startswith("rerun:") and v.get("steps", steps) != steps]
    lines = ["## Does the ranking hold with more steps?", ""]
    if not longer:
        return lines + ["Not checked yet: `mambalitesr search rerun --trial N ... --steps T` re-trains trials with a longer "
                        "budget and stores the result here.", ""]
    by_number = {r["number"]: r for r in rows}
    lines += ["| trial | config | params | PSNR at the study's budget | steps | seed | PSNR | gain |", "|---|---|---|---|---|---|---|---|"]
    for v in sorted(longer, key=lambda v: (v["steps"], v["trial"])):
        r = by_number[v["trial"]]
        lines.append(f"| {v['trial']} | {_cfg_text(r)} | {r['params']:,} | {_fmt(r['psnr'], '.3f')} | {v['steps']} | "
                     f"{v['seed']} | {v['psnr']:.3f} | {v['psnr'] - r['psnr']:+.3f} |")
    return lines + [""]


def _cost_section(cost: dict | None) -> list[str]:
    lines = ["## Low rank against full rank: training cost", ""]
    if cost is None:
        return lines + [f"Not measured yet: run `mambalitesr search cost` (writes `{COST_FILE}`).", ""]
    lines += [
        f"Same config, rank r against full rank (r = None); random batches of B = {cost['batch']}, "
        f"p = {cost['patch']} (the main run's shape), torch threads 1, {cost['backend']} scan; median of "
        f"{cost['steps']} steps per process, {cost['repeats']} processes per variant, alternating.",
        "",
        "| config | rank | params | step CPU (ms) | step wall (ms) | peak RSS (MB) | RSS added by training (MB) | J/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    import statistics

    notes = set()
    for label, entry in cost["results"].items():
        for kind in ("low", "full"):
            runs = entry[kind]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            joules = [r["j_per_step"] for r in runs if r["j_per_step"] is not None]
            notes.update(r["power_note"] for r in runs if r["power_note"])
            rank = runs[0]["rank"] if runs[0]["rank"] is not None else "full"
            added = statistics.median(r["peak_rss_mb"] - r["base_rss_mb"] for r in runs)
            energy = f"{statistics.median(joules):.2f}" if joules else "not measured"
            lines.append(f"| {label} | {rank} | {runs[0]['params']:,} | {med('step_cpu_ms'):.0f} | "
                         f"{med('step_wall_ms'):.0f} | {med('peak_rss_mb'):.0f} | {added:.0f} | {energy} |")
    lines.append("")
    for label, entry in cost["results"].items():
        ratio = lambda f: statistics.median(map(f, entry["low"])) / statistics.median(map(f, entry["full"]))  # noqa: E731
        lines.append(f"- {label}: rank r against full rank, step CPU time x {ratio(lambda r: r['step_cpu_ms']):.2f}, "
                     f"peak RSS x {ratio(lambda r: r['peak_rss_mb']):.2f}, RSS added by training x "
                     f"{ratio(lambda r: r['peak_rss_mb'] - r['base_rss_mb']):.2f}.")
    lines.append("")
    if notes:
        lines += ["Energy: " + "; ".join(sorted(notes)) + ". No energy per step is reported where no reader exists.", ""]
    return lines


def build_report(storage: str = search.DEFAULT_STORAGE, name: str = search.STUDY_NAME,
                 out_dir: Path = search.STUDY_DIR, budget_params: int = 150_000, tolerance: float = 0.1) -> Path:
    """Write README.md, pareto.png and fit.png into ``out_dir`` from the stored study; returns the README path."""
    from mambalitesr.imageio import atomic_path

    study = search.load_study(storage, name)
    rows = fit.trial_rows(study)
    done = fit.complete(rows)
    if not done:
        raise search.UserError("the stored study has no completed trial yet; nothing to report")
    out_dir = Path(out_dir)
    attrs = study.user_attrs
    budget, holdout = attrs.get("budget", {}), attrs.get("holdout", {})
    hw = attrs.get("latency_hw", [180, 320])
    frame = f"{hw[1]}x{hw[0]}"
    fitted = fit.fit_psnr_vs_size(rows)
    decision = fit.decide(rows, budget_params, tolerance)
    front = fit.pareto_front(done)
    imps = fit.importances(study)
    plot_front(rows, front, decision, out_dir / "pareto.png", frame)
    if fitted.get("joint"):
        plot_fit(rows, fitted, out_dir / "fit.png")
    cost_path = out_dir / COST_FILE
    cost = json.loads(cost_path.read_text()) if cost_path.is_file() else None

    states = {}
    for r in rows:
        key = "rejected (over budget)" if r["state"] == "PRUNED" and r["note"].startswith(tuple("0123456789")) else r["state"].lower()
        states[key] = states.get(key, 0) + 1
    L = ["# Hyper-parameter study of the x4 student", "",
         "Regenerate this page and its plots from the stored study with `mambalitesr search report`",
         "(the study itself: `models/study/study.db`, Optuna, SQLite; resume or extend it with `mambalitesr search run`).", "",
         "## What was run", "",
         f"- Trials: {len(rows)} ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}). Objectives: maximise "
         "held-out PSNR-Y, minimise parameters, minimise CPU latency (multi-objective TPE, seeded per trial from "
         f"(seed {attrs.get('seed')}, trial count)). The paper's choice and the current student were enqueued as trials.",
         f"- Space: C in {space.CHOICES['embed_dim']}, G in {space.CHOICES['groups']}, M in {space.CHOICES['mixers']}, "
         f"N in {space.CHOICES['d_state']}, E in {space.CHOICES['expand']}, r in {space.CHOICES['rank']} (None = full), "
         f"K in {space.CHOICES['directions']}, a in [{space.ALPHA_RANGE[0]}, {space.ALPHA_RANGE[1]}]; anchor skip on, "
         f"x{space.SCALE}; configs above {space.MAX_PARAMS:,} parameters rejected untrained.",
         f"- Budget per trial (identical for all, same batches and seed): {budget.get('steps')} steps, batch "
         f"{budget.get('batch')}, LR patch {budget.get('patch')}, lr {budget.get('lr')} (10% warm-up, cosine), EMA of the "
         f"weights with a ~5% window, distillation from dvmsr_x4 (cached teacher outputs), threads 1. "
         "**This is a very short budget**, forced by the machine (2 CPU cores shared with the main training run and "
         "other jobs, the study at nice 15): the PSNR compares how far each config gets in a fixed small budget, "
         "which ranks configs but is well below their converged PSNR.",
         f"- Validation: one training image in {holdout.get('every')} held out ({holdout.get('images')} of "
         f"{holdout.get('of')} images of {', '.join(holdout.get('train_dirs', []))}), never trained on; PSNR-Y with a "
         f"shave of s = {space.SCALE}, whole images, EMA weights. Bicubic on the same images: "
         f"{_fmt(holdout.get('bicubic_psnr'), '.3f')} dB; nearest-neighbour: {_fmt(holdout.get('nearest_psnr'), '.3f')} dB. "
         "Set5/Set14 are never used here.",
         f"- Latency: CPU time of one forward pass of a {frame} frame (batch 1, torch threads 1, "
         f"{budget.get('scan_backend')} scan), median of "
         "the timed runs after a warm-up. CPU time rather than wall time because the machine was shared: wall times "
         "(kept in the database as `wall_ms`) include waiting for a core and were several times larger and erratic.",
         ("- Pruning at half budget (a multi-objective study has no `trial.report`, so a stated rule): (1) diverged, "
          "half-budget PSNR below nearest-neighbour upsampling (where the anchor-skip network starts); (2) dominated, "
          f"a completed trial with no more parameters and no more MACs was already {search.PRUNE_MARGIN_DB} dB or more "
          f"ahead at half budget (active after {search.PRUNE_MIN_COMPLETE} completed trials)."
          if attrs.get("prune", True) else "- Pruning: off (every trial trained to the end)."), ""]

    # -- decision --------------------------------------------------------------------------------
    L += ["## Decision", ""]
    ch, best = decision.get("chosen"), decision.get("best")
    if ch is None:
        L += [f"No completed trial under {budget_params:,} parameters.", ""]
    else:
        L += [f"Rule: the best PSNR under {budget_params:,} parameters is trial {best['number']} "
              f"({_fmt(best['psnr'], '.3f')} dB, {best['params']:,} params); the shipped student is the smallest trial "
              f"within {tolerance} dB of it: **trial {ch['number']}**, {_cfg_text(ch)}, a = {ch['alpha']:.2f}: "
              f"{ch['psnr']:.3f} dB, {ch['params']:,} parameters, {ch['macs'] / 1e9:.2f} GMACs and "
              f"{ch['latency_ms']:.0f} ms CPU per {frame} frame.", "",
              f"- On the measured Pareto front (PSNR, parameters, latency): {'yes' if decision['chosen_on_front_3d'] else 'no'}; "
              f"on the PSNR-parameters front it trails the best no-larger trial by {decision['chosen_front_gap_db']:.3f} dB.", ""]
        for ref, label in (("paper", "the paper's choice (embed 32, 8 mixers, rank 2)"), ("student", "the current student (registry STUDENT)")):
            r, vs = decision.get(ref), decision.get(f"vs_{ref}")
            if r is None:
                L.append(f"- {label}: not in the study.")
                continue
            same = vs["best_at_its_size"]
            L.append(f"- Against {label}, trial {r['number']} at the same budget ({r['psnr']:.3f} dB, {r['params']:,} params, "
                     f"{r['latency_ms']:.0f} ms): the shipped student is {vs['psnr_gain_db']:+.3f} dB with "
                     f"{vs['params_ratio']:.2f} x the parameters and {vs['latency_ratio']:.2f} x the latency; the best trial "
                     f"no larger than it (trial {same['number']}, {same['params']:,} params) reaches {same['psnr']:.3f} dB "
                     f"({same['psnr'] - r['psnr']:+.3f} dB).")
        L += [""] + _noise_lines(study, rows, tolerance) + ["",
              "The shipped student's config (SRConfig JSON) and a:", "", "```json",
              json.dumps({"config": decision["chosen_config"], "alpha": round(decision["chosen_alpha"], 4)}, indent=2),
              "```", ""]
    L += ["![Pareto front](pareto.png)", ""]

    # -- fit ---------------------------------------------------------------------------------------
    L += ["## PSNR against size", ""]
    j = fitted.get("joint")
    if j:
        k4 = f" {j['bK4']:+.3f} [K = 4]" if j["bK4"] is not None else ""
        L += [f"Least squares over the {fitted['n']} completed trials:", "",
              f"    PSNR = {j['b0']:.3f} {j['b1']:+.3f} log10(params){k4}   (R^2 = {j['r2']:.3f}, residual sd {j['resid_sd']:.3f} dB)", "",
              f"so each doubling of the parameters is worth {j['b1'] * math.log10(2):.3f} dB at this budget.", ""]
        for K, f in fitted["families"].items():
            L.append(f"- family K = {K} ({f['n']} trials): PSNR = {f['b0']:.3f} {f['b1']:+.3f} log10(params), "
                     f"R^2 = {f['r2']:.3f}, residual sd {f['resid_sd']:.3f} dB")
        L += ["", "![fit](fit.png)", ""]
    else:
        L += ["Too few completed trials to fit.", ""]

    # -- importances ---------------------------------------------------------------------------------
    L += ["## Importances", "", "fANOVA (Optuna's default evaluator, seed 0) over the completed trials: the share of "
          "each objective's variance explained by each parameter.", ""]
    if imps:
        names = list(imps["psnr"])
        L += ["| parameter | PSNR | params | latency |", "|---|---|---|---|"]
        L += [f"| {n} | {imps['psnr'].get(n, 0):.3f} | {imps['params'].get(n, 0):.3f} | {imps['latency_ms'].get(n, 0):.3f} |"
              for n in names]
        L.append("")
    else:
        L += ["Too few completed trials.", ""]

    L += _longer_budget_lines(study, rows)
    L += _cost_section(cost)

    # -- exactness of the analytic model -------------------------------------------------------------
    measured = [r for r in rows if r["params"] is not None]
    exact = sum(r["params"] == r["analytic_params"] for r in measured)
    mac_err = max((abs(r["macs"] - r["analytic_macs"]) / r["macs"] for r in measured), default=float("nan"))
    L += ["## Analytic size model", "",
          f"For all {len(measured)} measured trials the analytic parameter count equals the counted one in "
          f"{exact} of {len(measured)}, and the analytic MACs at {frame} differ from torch's flop counter by at most "
          f"{100 * mac_err:.4f}% (models/complexity.py).", ""]

    # -- table -------------------------------------------------------------------------------------------
    front_ids = {r["number"] for r in front}
    L += ["## All trials", "", f"front: on the 3-D Pareto front. Latency: CPU ms per {frame} frame. PSNR: held-out, dB.", "",
          "| # | state | config | a | params | GMACs | latency | PSNR @half | PSNR | front | note |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["embed_dim"] is None:
            continue
        L.append(f"| {r['number']} | {r['state'].lower()} | {_cfg_text(r)} | {_fmt(r['alpha'], '.2f')} | "
                 f"{_fmt(r['params'] or r['analytic_params'], ',')} | {_fmt(r['macs'] and r['macs'] / 1e9, '.2f')} | "
                 f"{_fmt(r['latency_ms'], '.0f')} | {_fmt(r['half_psnr'], '.3f')} | {_fmt(r['psnr'], '.3f')} | "
                 f"{'*' if r['number'] in front_ids else ''} | {r['reference'] + (': ' if r['reference'] and r['note'] else '') + r['note']} |")
    L.append("")
    readme = out_dir / "README.md"
    with atomic_path(readme) as tmp:
        Path(tmp).write_text("\n".join(L))
    return readme
