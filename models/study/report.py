"""models/study/README.md and its plots, rebuilt from the stored study (and the train_cost.json beside it) alone.

Glossary (code name -> paper symbol): see :mod:`mambalitesr.models.study.fit`; front the trials no
other trial beats on all of PSNR (up), |theta| (down) and CPU latency (down).
"""
from __future__ import annotations

from dataclasses import dataclass

import json
import math
from pathlib import Path

from mambalitesr.models.study import fit, search, space
from mambalitesr.models.study.plots import plot_fit, plot_front, plot_rung

COST_FILE = "train_cost.json"


def _fmt(v, spec: str = "", none: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def _cfg_text(r: dict) -> str:
    return (f"C{r['embed_dim']} G{r['groups']} M{r['mixers']} N{r['d_state']} E{r['expand']} "
            f"r{r['rank'] if r['rank'] is not None else '-'} K{r['directions']}")


def _ref_rows(rows: list[dict]) -> dict[str, dict]:
    return {r["reference"]: r for r in fit.complete(rows) if r["reference"]}


def _config_diff(stored_json: str | None, cfg) -> list[str]:
    """Fields where a stored trial's config differs from ``cfg`` (an SRConfig)."""
    import dataclasses

    stored = json.loads(stored_json) if stored_json else {}
    return [f"{k} {stored.get(k)!r} vs {v!r}" for k, v in dataclasses.asdict(cfg).items() if stored.get(k) != v]


def _position_text(pos: float | None, smaller: str, noise: float | None) -> str:
    """``pos`` from fit.front_position, in words; ``noise`` the dB below which two single runs are not resolved."""
    if pos is None:
        return f"on the front (no other trial is {smaller})"
    within = f" (within the {noise:.3f} dB seed-noise threshold)" if noise is not None and abs(pos) < noise else ""
    if pos >= 0:
        return f"on the front, {pos:.3f} dB above the best other trial {smaller}{within}"
    return f"{-pos:.3f} dB below the front: a trial {smaller} is better by that much{within}"


def _margin_lines(study, sd: dict, rows: list[dict], budget_params: int, tolerance: float) -> list[str]:
    """How close the rule came to picking a smaller trial, against the seed noise of the deciding budget."""
    ch, best = sd["decision"].get("chosen"), sd["decision"].get("best")
    steps, pool = sd["rung"] if sd["rung"] else (study.user_attrs.get("budget", {}).get("steps"), fit.complete(rows))
    smaller = [r for r in pool if r["params"] < ch["params"] and r["params"] <= budget_params]
    if not smaller:
        return []
    r = max(smaller, key=lambda x: x["psnr"])
    gap = best["psnr"] - r["psnr"]
    seed_sd, _ = fit.seed_sd(fit.psnr_runs(study, rows).get(steps, {}))
    line = (f"Closest miss: the best smaller trial is trial {r['number']} ({_cfg_text(r)}, {r['params']:,} params), "
            f"{gap:.3f} dB behind the best, {gap - tolerance:.3f} dB outside the {tolerance} dB tolerance.")
    if seed_sd is None:
        line += " The seed noise at this budget is not measured, so whether that margin is real is not known."
    else:
        noise = 2 * math.sqrt(2) * seed_sd
        line += (f" Against the seed-noise threshold at this budget ({noise:.3f} dB, from a pooled sd of {seed_sd:.3f} dB), "
                 + ("that margin is not resolved: with another seed the rule could pick the smaller trial."
                    if abs(gap - tolerance) < noise else "that margin is resolved."))
    return [line, ""]


def _pick_lines(sd: dict, rows: list[dict], frame: str, budget_params: int, tolerance: float, where: str) -> list[str]:
    """Which config the study picks, and whether it is the shipped one."""
    from mambalitesr.models.registry import STUDENT

    decision = sd["decision"]
    ch, best = decision.get("chosen"), decision.get("best")
    if ch is None:
        return [f"No completed trial under {budget_params:,} parameters.", ""]
    L = [f"Rule (stated in models/study/fit.py): among the trials {where} with at most {budget_params:,} parameters, "
         f"the best PSNR is trial {best['number']} ({best['psnr']:.3f} dB, {best['params']:,} params); the pick is the "
         f"smallest trial within {tolerance} dB of it.", "",
         f"**The study picks trial {ch['number']}**: {_cfg_text(ch)}, a = {ch['alpha']:.2f}: {ch['psnr']:.3f} dB {where}, "
         f"{ch['params']:,} parameters, {ch['macs'] / 1e9:.2f} GMACs and {ch['latency_ms']:.0f} ms CPU per {frame} frame.", ""]
    shipped = _ref_rows(rows).get("student")
    is_shipped = (shipped is not None and ch["number"] == shipped["number"]
                  and not _config_diff(shipped["config"], STUDENT))
    if is_shipped:
        L += ["This is the shipped `mambalitesr_x4` config (registry STUDENT, a = 0.8): the rule keeps it, so the "
              "decision needs no new full-budget training. How firm the pick is: see the closest miss below.", ""]
    else:
        L += ["This is **not** the shipped `mambalitesr_x4` config (registry STUDENT). The full-budget retrain of the "
              "picked config is pending: the shipped weights stay until that retrain is compared with them on the "
              "validation split.", ""]
    return L


def _shipped_lines(study, sd: dict, rows: list[dict], where: str) -> list[str]:
    """Where the shipped config sits against the measured Pareto fronts, in dB."""
    from mambalitesr.models.registry import STUDENT

    shipped = _ref_rows(rows).get("student")
    L = ["### The shipped config against the Pareto front", ""]
    if shipped is None:
        return L + ["The shipped config is not among the trials.", ""]
    diff = _config_diff(shipped["config"], STUDENT)
    L += [f"The shipped `mambalitesr_x4` config is trial {shipped['number']} ({_cfg_text(shipped)}, a = "
          f"{shipped['alpha']:.2f}, {shipped['params']:,} params, {shipped['latency_ms']:.0f} ms)"
          + (f"; **the registry has changed since** ({'; '.join(diff)})." if diff else "."), ""]
    runs = fit.psnr_runs(study, rows)
    screen_steps = study.user_attrs.get("budget", {}).get("steps")
    stages = [(f"screening, {screen_steps} steps ({len(fit.complete(rows))} trials)", screen_steps, fit.complete(rows))]
    if sd["rung"]:
        stages.insert(0, (f"{where} ({len(sd['rung'][1])} promoted trials)", sd["rung"][0], sd["rung"][1]))
    L += ["| budget | PSNR (dB) | on the 3-D front | against the PSNR-params front | against the PSNR-latency front |",
          "|---|---|---|---|---|"]
    for label, steps, pool in stages:
        row = next((r for r in pool if r["number"] == shipped["number"]), None)
        if row is None:
            L.append(f"| {label} | not run | | | |")
            continue
        seed_sd, _ = fit.seed_sd(runs.get(steps, {}))
        noise = 2 * math.sqrt(2) * seed_sd if seed_sd is not None else None
        on3 = any(r["number"] == row["number"] for r in fit.pareto_front(pool))
        L.append(f"| {label} | {row['psnr']:.3f} | {'yes' if on3 else 'no'} | "
                 f"{_position_text(fit.front_position(row, pool, 'params'), 'no larger', noise)} | "
                 f"{_position_text(fit.front_position(row, pool, 'latency_ms'), 'no slower', noise)} |")
    return L + ["", "Seed-noise threshold: 2 x sqrt(2) x the pooled seed-to-seed sd of that budget (see Seed noise); "
                "no threshold is given where that sd is not measured.", ""]


def _paper_lines(study, rows: list[dict]) -> list[str]:
    """The shipped config against the paper's choice at equal training budget, with the seed noise of each budget."""
    from mambalitesr.models.registry import get_entry

    refs = _ref_rows(rows)
    L = ["### The shipped config against the paper's choice, at equal training budget", ""]
    paper, shipped = refs.get("paper"), refs.get("student")
    if paper is None or shipped is None:
        return L + ["The paper's choice or the shipped config is not among the trials.", ""]
    diff = _config_diff(paper["config"], get_entry("mambalitesr_paper_x4").config)
    L += [f"The paper's choice (embed 32, 4 x 2 = 8 mixers, rank 2) is trial {paper['number']} ({_cfg_text(paper)}, "
          f"a = {paper['alpha']:.2f}, {paper['params']:,} params); it differs from the registry's `mambalitesr_paper_x4` "
          f"only in {'; '.join(diff) if diff else 'nothing'} (every trial uses the anchor skip). Gain = PSNR of the "
          f"shipped config (trial {shipped['number']}) minus that of the paper's, same steps, same seed, same batches:", "",
          "| steps | seeds | shipped (dB) | paper (dB) | gain (dB) | seed-to-seed sd at this budget | verdict |",
          "|---|---|---|---|---|---|---|"]
    for g in fit.paired_gain(fit.psnr_runs(study, rows), shipped["number"], paper["number"]):
        if g["seed_sd"] is None:
            noise, verdict = "not measured", "not judged: no trial re-run with another seed at this budget"
        else:
            noise = f"{g['seed_sd']:.3f} ({g['sd_trials']} trial(s))"
            verdict = (f"{'resolved' if g['resolved'] else 'within seed noise'} (2 standard errors of the gain: "
                       f"{2 * g['se']:.3f} dB)")
        L.append(f"| {g['steps']} | {', '.join(map(str, g['seeds']))} | {', '.join(f'{v:.3f}' for v in g['a'])} | "
                 f"{', '.join(f'{v:.3f}' for v in g['b'])} | {g['mean']:+.3f} | {noise} | {verdict} |")
    return L + [""]


def _noise_lines(study, rows: list[dict], tolerance: float) -> list[str]:
    """What one seed per trial can resolve: the same trial trained with other seeds (`search rerun --seed`), per budget."""
    runs = fit.psnr_runs(study, rows)
    lines = ["### Seed noise", "", f"Every trial of the screening is one training run (seed {study.user_attrs.get('seed')})."]
    repeated = [(steps, n, seeds) for steps, by_trial in sorted(runs.items())
                for n, seeds in sorted(by_trial.items()) if len(seeds) > 1]
    if not repeated:
        return lines + ["No trial was re-run with another seed yet (`mambalitesr search rerun --trial N --seed S`), so "
                        "the seed-to-seed spread, and with it whether differences of the order of the "
                        f"{tolerance} dB tolerance are real, is not measured.", ""]
    for steps, n, seeds in repeated:
        lines.append(f"- trial {n}, {steps} steps: PSNR over {len(seeds)} seeds "
                     f"{', '.join(f'{v:.3f}' for _, v in sorted(seeds.items()))} dB")
    base_seed = study.user_attrs.get("seed")
    for steps, by_trial in sorted(runs.items()):
        sd, pooled = fit.seed_sd(by_trial)
        if sd is None:
            continue
        first = [seeds[base_seed] for seeds in by_trial.values() if base_seed in seeds]
        lines.append(f"- pooled seed-to-seed sd at {steps} steps: {sd:.3f} dB ({pooled} trial(s)); a difference "
                     f"between two single runs is resolved above about 2 x sqrt(2) x sd = {2 * math.sqrt(2) * sd:.3f} dB"
                     + (f"; the {len(first)} trials run at this budget (seed {base_seed}) span "
                        f"{max(first) - min(first):.3f} dB." if len(first) > 2 else "."))
    return lines + [""]


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
    lines.append("")
    rung_info = fit.rung(study, rows)
    if rung_info and len(rung_info[1]) >= 3:
        import numpy as np

        ranks = lambda xs: np.argsort(np.argsort(xs))  # noqa: E731 - no ties among these PSNRs
        screen = ranks([r["screen_psnr"] for r in rung_info[1]])
        longer = ranks([r["psnr"] for r in rung_info[1]])
        rho = float(np.corrcoef(screen, longer)[0, 1])
        lines += [f"Rank agreement between the screening and {rung_info[0]} steps over the {len(rung_info[1])} promoted "
                  f"trials (same seed): Spearman rho = {rho:+.2f} (+1: the same order, 0: unrelated).", ""]
    return lines


def _cost_section(cost: dict | None) -> list[str]:
    lines = ["## Low rank against full rank: training cost", ""]
    if cost is None:
        return lines + [f"Not measured yet: run `mambalitesr search cost` (writes `{COST_FILE}`).", ""]
    lines += [
        f"Same config, rank r against full rank (r = None); one optimiser step (forward, L1 loss, backward, Adam) on "
        f"random batches of B = {cost['batch']} LR patches of p = {cost['patch']}, torch threads 1, {cost['backend']} "
        f"scan; median of {cost['steps']} steps per process after 2 warm-up steps, {cost['repeats']} processes per "
        "variant, alternating (`mambalitesr search cost`, at lowered priority on the shared machine"
        + (f": {cost['host']}" if cost.get("host") else "") + "). CPU time is the figure to compare; wall time "
        "includes waiting for a shared core.",
        "",
        "| config | rank | params | step CPU (ms), median | per process | step wall (ms) | peak RSS (MB) | RSS added by training (MB) | J/step |",
        "|---|---|---|---|---|---|---|---|---|",
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
            per = ", ".join(f"{r['step_cpu_ms']:.0f}" for r in runs)
            lines.append(f"| {label} | {rank} | {runs[0]['params']:,} | {med('step_cpu_ms'):.0f} | {per} | "
                         f"{med('step_wall_ms'):.0f} | {med('peak_rss_mb'):.0f} | {added:.0f} | {energy} |")
    lines.append("")
    from mambalitesr.models.complexity import analytic_macs
    from mambalitesr.models.config import SRConfig

    ratios = []
    for label, entry in cost["results"].items():
        ratio = lambda f: statistics.median(map(f, entry["low"])) / statistics.median(map(f, entry["full"]))  # noqa: E731
        ratios += [ratio(lambda r: r["step_cpu_ms"]), ratio(lambda r: r["peak_rss_mb"] - r["base_rss_mb"])]
        cfg = SRConfig(**entry["config"])
        macs = analytic_macs(cfg, cost["patch"], cost["patch"]) / analytic_macs(cfg.replace(rank=None), cost["patch"], cost["patch"])
        lines.append(f"- {label}: rank r against full rank, parameters x {ratio(lambda r: r['params']):.2f}, "
                     f"forward MACs x {macs:.2f}, step CPU "
                     f"time x {ratio(lambda r: r['step_cpu_ms']):.2f}, peak RSS x {ratio(lambda r: r['peak_rss_mb']):.2f}, "
                     f"RSS added by training x {ratio(lambda r: r['peak_rss_mb'] - r['base_rss_mb']):.2f}.")
    lines.append("")
    if ratios and all(0.95 <= x <= 1.05 for x in ratios):
        lines += ["On this CPU, low rank changes neither the training step time nor the training memory by more than 5%, "
                  "although it removes parameters and multiply-adds: a step's time is not set by the projections' "
                  "multiply-adds (the selective scan, outside the MAC count, and the element-wise work remain). The "
                  "paper's claim of a lower training cost is not reproduced here; energy is not measured (below).", ""]
    if notes:
        lines += ["Energy: no power reader exists on the machine that measured this (" + "; ".join(sorted(notes))
                  + "), so energy per step is not reported; on a Jetson, `mambalitesr search cost` reads jtop or "
                  "tegrastats and fills the J/step column.", ""]
    return lines


def _fit_lines(fitted: dict, what: str, where: str) -> list[str]:
    j = fitted.get("joint")
    if not j:
        return [f"Too few {what} to fit ({fitted.get('n', 0)}).", ""]
    k4 = f" {j['bK4']:+.4f} [K = 4]" if j["bK4"] is not None else ""
    L = [f"Least squares over the {fitted['n']} {what}"
         + (f" ({fitted['n_k4']} of them K = 4, too few for a K term)" if j["bK4"] is None and fitted.get("n_k4") else "")
         + ":", "",
         f"    PSNR = {j['b0']:.4f} {j['b1']:+.4f} log10(params){k4}   (R^2 = {j['r2']:.3f}, residual sd {j['resid_sd']:.3f} dB)", "",
         f"so each doubling of the parameters is worth {j['b1'] * math.log10(2):+.3f} dB {where}."]
    for K, f in fitted.get("families", {}).items():
        if j["bK4"] is not None:
            L.append(f"- family K = {K} ({f['n']} trials): PSNR = {f['b0']:.4f} {f['b1']:+.4f} log10(params), "
                     f"R^2 = {f['r2']:.3f}, residual sd {f['resid_sd']:.3f} dB")
    return L + [""]


def _predict(fitted: dict, row: dict) -> float:
    j = fitted["joint"]
    return j["b0"] + j["b1"] * math.log10(row["params"]) + ((j["bK4"] or 0.0) if row["directions"] == 4 else 0.0)


def _cost_path(storage: str, out_dir: Path) -> Path:
    """train_cost.json lives next to the study database (it is data, like the study), else in ``out_dir``."""
    db = search.sqlite_path(storage)
    return (db.parent if db is not None else out_dir) / COST_FILE


@dataclass
class _Gathered:
    """Everything the report's sections read, computed once from the stored study."""

    study: object
    sd: object
    rows: object
    done: object
    attrs: object
    budget: object
    holdout: object
    hw: object
    frame: object
    fitted: object
    screen_decision: object
    rung_info: object
    decision: object
    rung_fitted: object
    where: object
    front: object
    front_ids: object
    imps: object
    cost: object
    budget_params: object
    tolerance: object


def _gather(storage: str, name: str, out_dir: Path, budget_params: int, tolerance: float) -> _Gathered:
    """Load the study and compute the decision, fits, front, importances and the training-cost record."""
    study = search.load_study(storage, name)
    sd = fit.study_decision(study, budget_params, tolerance)
    rows = sd["rows"]
    done = fit.complete(rows)
    if not done:
        raise search.UserError("the stored study has no completed trial yet; nothing to report")
    out_dir = Path(out_dir)
    attrs = study.user_attrs
    budget, holdout = attrs.get("budget", {}), attrs.get("holdout", {})
    hw = attrs.get("latency_hw", [180, 320])
    frame = f"{hw[1]}x{hw[0]}"
    fitted = fit.fit_psnr_vs_size(rows)
    screen_decision, rung_info, decision = sd["screen"], sd["rung"], sd["decision"]
    rung_fitted = fit.fit_psnr_vs_size(rung_info[1]) if rung_info else None
    where = f"at {rung_info[0]} steps" if rung_info else "at the screening budget"
    front = fit.pareto_front(done)
    front_ids = {r["number"] for r in front}
    imps = fit.importances(study)
    cost_path = _cost_path(storage, out_dir)
    cost = json.loads(cost_path.read_text()) if cost_path.is_file() else None
    return _Gathered(study=study, sd=sd, rows=rows, done=done, attrs=attrs, budget=budget, holdout=holdout, hw=hw, frame=frame, fitted=fitted, screen_decision=screen_decision, rung_info=rung_info, decision=decision, rung_fitted=rung_fitted, where=where, front=front, front_ids=front_ids, imps=imps, cost=cost, budget_params=budget_params, tolerance=tolerance)


def _write_plots(ctx: _Gathered, out_dir: Path) -> None:
    """pareto.png, fit.png and rung.png."""
    rows, budget, frame, fitted = ctx.rows, ctx.budget, ctx.frame, ctx.fitted
    rung_info, decision, rung_fitted, front = ctx.rung_info, ctx.decision, ctx.rung_fitted, ctx.front
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_front(rows, front, decision, out_dir / "pareto.png", frame,
               f"Screening: every completed trial at {budget.get('steps')} steps (markers ringed: 3-D Pareto front)")
    if fitted.get("joint"):
        j = fitted["joint"]
        plot_fit(rows, fitted, out_dir / "fit.png",
                 f"Screening, {budget.get('steps')} steps: PSNR = {j['b0']:.3f} {j['b1']:+.4f} log10(params)"
                 + (f" {j['bK4']:+.4f} [K=4]" if j["bK4"] is not None else "") + f", R^2 = {j['r2']:.2f}")
    if rung_info:
        plot_rung(rung_info[1], rung_info[0], budget.get("steps"), out_dir / "rung.png", frame,
                  rung_fitted if rung_fitted.get("joint") else None)


def _run_lines(ctx: _Gathered) -> list[str]:
    """## What was run: trials, space, budget, validation, latency, pruning."""
    rows, attrs, budget = ctx.rows, ctx.attrs, ctx.budget
    holdout, frame = ctx.holdout, ctx.frame
    L: list[str] = []
    states = {}
    for r in rows:
        key = "rejected (over budget)" if r["state"] == "PRUNED" and r["note"].startswith(tuple("0123456789")) else r["state"].lower()
        states[key] = states.get(key, 0) + 1
    L += ["# Hyper-parameter study of the x4 student", "",
         "Generated by `mambalitesr search report` from the stored study (`models/study/study.db`, Optuna, SQLite, "
         "including the longer-budget and seed re-runs stored with it) and `train_cost.json` beside it; do not edit by "
         "hand. Resume or extend it with `mambalitesr search run` / `promote` / `rerun` "
         "`--storage sqlite:///models/study/study.db` (without `--storage`, `search` works on a study of your own "
         "in the user directory).", "",
         "## What was run", "",
         f"- Trials: {len(rows)} ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}). Objectives: maximise "
         "held-out PSNR-Y, minimise parameters, minimise CPU latency (multi-objective TPE, seeded per trial from "
         f"(seed {attrs.get('seed')}, trial count)). The paper's choice and the shipped student were enqueued as trials.",
         f"- Space: C in {space.CHOICES['embed_dim']}, G in {space.CHOICES['groups']}, M in {space.CHOICES['mixers']}, "
         f"N in {space.CHOICES['d_state']}, E in {space.CHOICES['expand']}, r in {space.CHOICES['rank']} (None = full), "
         f"K in {space.CHOICES['directions']}, a in [{space.ALPHA_RANGE[0]}, {space.ALPHA_RANGE[1]}]; anchor skip on, "
         f"x{space.SCALE}; configs above {space.MAX_PARAMS:,} parameters rejected untrained.",
         f"- Screening budget per trial (identical for all, same batches and seed): {budget.get('steps')} steps, batch "
         f"{budget.get('batch')}, LR patch {budget.get('patch')}, lr {budget.get('lr')} (10% warm-up, cosine), EMA of the "
         f"weights with a ~5% window, distillation from dvmsr_x4 (cached teacher outputs), threads 1. "
         "**This is a very short budget**, forced by the machine (2 CPU cores shared with the main training run and "
         "other jobs, the study at lowered priority): the PSNR compares how far each config gets in a fixed small "
         "budget, well below its converged PSNR.",
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

    return L


def _decision_lines(ctx: _Gathered) -> list[str]:
    """## Decision: the basis, the pick, its margins, the shipped and the paper's configs."""
    study, sd, rows, done = ctx.study, ctx.sd, ctx.rows, ctx.done
    budget, frame, screen_decision = ctx.budget, ctx.frame, ctx.screen_decision
    rung_info, decision, where = ctx.rung_info, ctx.decision, ctx.where
    budget_params, tolerance = ctx.budget_params, ctx.tolerance
    L: list[str] = []
    # -- decision --------------------------------------------------------------------------------
    L += ["## Decision", ""]
    screen_chosen = screen_decision.get("chosen")
    if rung_info:
        steps, rung_rows = rung_info
        spread = max(r["psnr"] for r in done) - min(r["psnr"] for r in done)
        L += [f"Basis: the {len(rung_rows)} trials promoted to a {steps}-step budget ({steps // budget.get('steps', 1)} x "
              "the screening's; same batch, patch, seed; `mambalitesr search promote`): both references and the best "
              "screening trial of each log-spaced parameter band under the budget "
              f"(trials {', '.join(str(r['number']) for r in rung_rows)}). The screening alone cannot decide: its "
              f"{len(done)} completed trials span only {spread:.3f} dB. "
              + (f"On the screening alone the rule would pick trial {screen_chosen['number']} "
                 f"({_cfg_text(screen_chosen)}, {screen_chosen['params']:,} params)." if screen_chosen else ""), ""]
    L += _pick_lines(sd, rows, frame, budget_params, tolerance, where)
    if decision.get("chosen"):
        L += _margin_lines(study, sd, rows, budget_params, tolerance)
    if decision.get("chosen"):
        L += ["The picked config (SRConfig JSON) and a:", "", "```json",
              json.dumps({"config": decision["chosen_config"], "alpha": round(decision["chosen_alpha"], 4)}, indent=2),
              "```", ""]
    L += _shipped_lines(study, sd, rows, where)
    L += _paper_lines(study, rows)
    L += _noise_lines(study, rows, tolerance)
    L += ["![Pareto front, screening](pareto.png)", ""]
    if rung_info:
        L += [f"![Pareto front, {rung_info[0]} steps](rung.png)", ""]

    return L


def _fit_lines_section(ctx: _Gathered) -> list[str]:
    """## PSNR against size (at the promoted rung and at the screening budget)."""
    budget, fitted, rung_info, rung_fitted, where = ctx.budget, ctx.fitted, ctx.rung_info, ctx.rung_fitted, ctx.where
    L: list[str] = []
    # -- fit ---------------------------------------------------------------------------------------
    L += ["## PSNR against size", ""]
    if rung_info:
        L += [f"### At {rung_info[0]} steps (the promoted trials)", ""] + _fit_lines(rung_fitted, "promoted trials", where)
        shipped = _ref_rows(rung_info[1]).get("student")
        if rung_fitted.get("joint") and shipped is not None:
            L += [f"The shipped config (trial {shipped['number']}) lies {shipped['psnr'] - _predict(rung_fitted, shipped):+.3f} dB "
                  "from this line.", ""]
        L += [f"### At the screening budget ({budget.get('steps')} steps, all completed trials)", ""]
    L += _fit_lines(fitted, "completed trials", f"at {budget.get('steps')} steps")
    if fitted.get("joint"):
        L += ["![fit](fit.png)", ""]

    return L


def _importance_lines(ctx: _Gathered) -> list[str]:
    """## Importances and per-factor effects."""
    study, rows, done, budget, imps = ctx.study, ctx.rows, ctx.done, ctx.budget, ctx.imps
    L: list[str] = []
    # -- importances ---------------------------------------------------------------------------------
    screen_sd, _ = fit.seed_sd(fit.psnr_runs(study, rows).get(budget.get("steps"), {}))
    spread = max(r["psnr"] for r in done) - min(r["psnr"] for r in done)
    L += ["## Importances and per-factor effects", "",
          "PED-ANOVA importances (`optuna.importance.PedAnovaImportanceEvaluator`, top 20% of the completed trials per "
          "objective; fANOVA would need scikit-learn): how strongly each parameter decides whether a screening trial "
          "lands among the best.", ""]
    if screen_sd is not None:
        L += [f"Read the PSNR column with care: the screening's PSNRs span {spread:.3f} dB against a seed-to-seed sd of "
              f"{screen_sd:.3f} dB, so which trials are in the top 20% is partly seed noise. The parameter and latency "
              "columns are exact (those objectives are measured, not trained).", ""]
    if imps:
        names = list(imps["psnr"])
        L += ["| parameter | PSNR | params | latency |", "|---|---|---|---|"]
        L += [f"| {n} | {imps['psnr'].get(n, 0):.3f} | {imps['params'].get(n, 0):.3f} | {imps['latency_ms'].get(n, 0):.3f} |"
              for n in names]
        L.append("")
    else:
        L += ["Too few completed trials (needs 25).", ""]
    L += ["Mean held-out PSNR per level of each factor (completed trials; the sampler's choices, not a balanced design, "
          "so levels are confounded with the other factors and with size):", ""]
    for name, levels in fit.level_means(rows).items():
        L.append(f"- {name}: " + "; ".join(f"{lv}: {m:.3f} dB (n={n}, {p / 1000:.0f}K params)" for lv, n, m, p in levels))
    L.append("")

    return L


def _analytic_lines(ctx: _Gathered) -> list[str]:
    """## Analytic size model: counted against analytic parameters and MACs."""
    rows, frame = ctx.rows, ctx.frame
    L: list[str] = []
    # -- exactness of the analytic model -------------------------------------------------------------
    measured = [r for r in rows if r["params"] is not None]
    exact = sum(r["params"] == r["analytic_params"] for r in measured)
    mac_err = max((abs(r["macs"] - r["analytic_macs"]) / r["macs"] for r in measured), default=float("nan"))
    L += ["## Analytic size model", "",
          f"For all {len(measured)} measured trials the analytic parameter count equals the counted one in "
          f"{exact} of {len(measured)}, and the analytic MACs at {frame} differ from torch's flop counter by at most "
          f"{100 * mac_err:.4f}% (models/complexity.py).", ""]

    return L


def _trial_table(ctx: _Gathered) -> list[str]:
    """## All trials."""
    rows, frame, front_ids = ctx.rows, ctx.frame, ctx.front_ids
    L: list[str] = []
    # -- table -------------------------------------------------------------------------------------------
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
    return L


def build_report(storage: str = search.DEFAULT_STORAGE, name: str = search.STUDY_NAME,
                 out_dir: Path = search.USER_STUDY_DIR, budget_params: int = 150_000, tolerance: float = 0.1) -> Path:
    """Write README.md, pareto.png, fit.png and rung.png into ``out_dir`` from the stored study (and the
    train_cost.json next to its database); returns the README path."""
    from mambalitesr.imageio import atomic_path

    out_dir = Path(out_dir)
    ctx = _gather(storage, name, out_dir, budget_params, tolerance)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_plots(ctx, out_dir)
    L = (_run_lines(ctx) + _decision_lines(ctx) + _fit_lines_section(ctx) + _importance_lines(ctx)
         + _longer_budget_lines(ctx.study, ctx.rows) + _cost_section(ctx.cost) + _analytic_lines(ctx) + _trial_table(ctx))
    readme = out_dir / "README.md"
    with atomic_path(readme) as tmp:
        Path(tmp).write_text("\n".join(L))
    return readme
