"""What the study says: trial rows, the Pareto front, PSNR against size, and the choice of student.

Glossary (code name -> paper symbol): PSNR held-out PSNR-Y (dB) at the study's budget; |theta|
params; K directions (the "family"); fit  PSNR = b0 + b1 log10 |theta| + b_K [K = 4] (least
squares), R^2 its coefficient of determination; budget the parameter budget of the decision;
tolerance the PSNR slack of "within 0.1 dB of the best".

Decision rule: among completed trials with |theta| <= budget, the best PSNR; the pick is the
smallest such trial whose PSNR is within ``tolerance`` of that best. It is applied to the longest
promoted budget (the "rung": trials re-trained with more steps by `search promote`) when there is
one, since the screening budget may not separate the sizes; else to the screening.

Seed noise: sd of one run's PSNR between training seeds, pooled over the trials re-run with another
seed at the same budget; a gain between two configs is "resolved" above twice its standard error.
"""
from __future__ import annotations

import json
import math

import numpy as np

from mambalitesr.models.study import space

CONFIG_KEYS = tuple(space.CHOICES)


def trial_rows(study) -> list[dict]:
    """One flat dict per trial (queued ones left out): number, state, config, a, measurements, objectives, notes."""
    rows = []
    for t in study.trials:
        if t.state.name == "WAITING":
            continue
        a = t.user_attrs
        row = {"number": t.number, "state": t.state.name, "reference": a.get("reference", "")}
        row.update({k: t.params.get(k) for k in (*CONFIG_KEYS, "alpha")})
        for key in ("params", "analytic_params", "macs", "analytic_macs", "scan_updates", "latency_ms", "wall_ms",
                    "half_psnr", "psnr", "ssim", "train_cpu_s", "holdout_images"):
            row[key] = a.get(key)
        row["note"] = a.get("rejected") or a.get("pruned_reason") or a.get("failed") or ""
        row["config"] = a.get("config")
        rows.append(row)
    return rows


def complete(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] == "COMPLETE"]


def pareto_front(rows: list[dict], keys=(("psnr", 1), ("params", -1), ("latency_ms", -1))) -> list[dict]:
    """Rows no other row dominates; keys are (column, +1 to maximise / -1 to minimise)."""
    def dominates(a, b):
        ge = all(s * a[k] >= s * b[k] for k, s in keys)
        return ge and any(s * a[k] > s * b[k] for k, s in keys)

    return [r for r in rows if not any(dominates(o, r) for o in rows if o is not r)]


def front_gap(row: dict, rows: list[dict]) -> float:
    """dB by which ``row`` trails the best PSNR of any trial with no more parameters (0 = on the 2-D front)."""
    return max(0.0, max(r["psnr"] for r in rows if r["params"] <= row["params"]) - row["psnr"])


def _lstsq(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    dof = max(1, len(y) - X.shape[1])
    return coef, r2, math.sqrt(float(np.sum(resid**2)) / dof)


def fit_psnr_vs_size(rows: list[dict]) -> dict:
    """PSNR = b0 + b1 log10(params) + bK [K = 4] over completed trials, and the same line per K family.

    The K term is fitted only when each family has at least 3 trials (else bK4 is None: one line
    over all trials), so that a lone trial of one family is not fitted exactly by its own intercept.
    """
    done = complete(rows)
    if len(done) < 3:
        return {"n": len(done)}
    y = np.array([r["psnr"] for r in done])
    logp = np.log10([r["params"] for r in done])
    k4 = np.array([1.0 if r["directions"] == 4 else 0.0 for r in done])
    out = {"n": len(done), "n_k4": int(k4.sum())}
    if 3 <= k4.sum() <= len(done) - 3:
        coef, r2, sd = _lstsq(np.column_stack([np.ones_like(y), logp, k4]), y)
        out["joint"] = {"b0": coef[0], "b1": coef[1], "bK4": coef[2], "r2": r2, "resid_sd": sd}
    else:
        coef, r2, sd = _lstsq(np.column_stack([np.ones_like(y), logp]), y)
        out["joint"] = {"b0": coef[0], "b1": coef[1], "bK4": None, "r2": r2, "resid_sd": sd}
    out["families"] = {}
    for K in (1, 4):
        mask = np.array([r["directions"] == K for r in done])
        if mask.sum() >= 3:
            coef, r2, sd = _lstsq(np.column_stack([np.ones(mask.sum()), logp[mask]]), y[mask])
            out["families"][K] = {"n": int(mask.sum()), "b0": coef[0], "b1": coef[1], "r2": r2, "resid_sd": sd}
    return out


def importances(study, quantile: float = 0.2) -> dict:
    """PED-ANOVA importance of each parameter for each objective over the completed trials.

    PED-ANOVA (Optuna's PedAnovaImportanceEvaluator; no dependency beyond Optuna, unlike fANOVA's
    scikit-learn) scores how much each parameter's distribution in the best ``quantile`` of trials
    differs from its distribution over all of them. It assumes lower is better, so PSNR is negated.
    """
    import optuna

    out = {}
    if len(complete(trial_rows(study))) < max(5, round(5 / quantile)):
        return out
    import warnings

    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
    for i, (name, sign) in enumerate((("psnr", -1.0), ("params", 1.0), ("latency_ms", 1.0))):
        with warnings.catch_warnings():  # its "lower is better" reminder: PSNR is negated above
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes", category=UserWarning)
            out[name] = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, i=i, sign=sign: sign * t.values[i])
    return out


def level_means(rows: list[dict]) -> dict[str, list[tuple]]:
    """Per factor, per level: (level, trials, mean PSNR, mean params) over the completed trials."""
    done = complete(rows)
    out = {}
    for name in (*CONFIG_KEYS, "alpha"):
        if name == "alpha":
            edges = np.linspace(*space.ALPHA_RANGE, 4)
            key = lambda r: f"{edges[min(2, int(np.searchsorted(edges, r['alpha'], side='right')) - 1)]:.2f}+"  # noqa: E731
        else:
            key = lambda r, name=name: r[name]  # noqa: E731
        groups: dict = {}
        for r in done:
            groups.setdefault(key(r), []).append(r)
        levels = sorted(groups, key=lambda v: (v is None, v if not isinstance(v, str) else float(v[:-1])))
        out[name] = [(lv, len(groups[lv]), float(np.mean([r["psnr"] for r in groups[lv]])),
                      float(np.mean([r["params"] for r in groups[lv]]))) for lv in levels]
    return out


def _summary(row: dict | None) -> dict | None:
    if row is None:
        return None
    keys = ("number", *CONFIG_KEYS, "alpha", "params", "macs", "latency_ms", "psnr", "reference")
    return {k: row[k] for k in keys}


def decide(rows: list[dict], budget: int = 150_000, tolerance: float = 0.1) -> dict:
    """The best PSNR under ``budget`` params, the smallest trial within ``tolerance`` dB of it, and the comparisons."""
    done = complete(rows)
    within = [r for r in done if r["params"] <= budget]
    if not within:
        return {"budget": budget, "tolerance": tolerance, "best": None, "chosen": None}
    best = max(within, key=lambda r: r["psnr"])
    chosen = min((r for r in within if r["psnr"] >= best["psnr"] - tolerance), key=lambda r: (r["params"], -r["psnr"]))
    front3 = pareto_front(done)
    out = {
        "budget": budget, "tolerance": tolerance, "best": _summary(best), "chosen": _summary(chosen),
        "chosen_config": json.loads(chosen["config"]), "chosen_alpha": chosen["alpha"],
        "chosen_on_front_3d": any(r is chosen for r in front3),
        "chosen_front_gap_db": front_gap(chosen, done),
    }
    for ref in ("paper", "student"):
        r = next((r for r in done if r["reference"] == ref), None)
        out[ref] = _summary(r)
        if r is not None:
            out[f"vs_{ref}"] = {
                "psnr_gain_db": chosen["psnr"] - r["psnr"],
                "params_ratio": chosen["params"] / r["params"],
                "latency_ratio": chosen["latency_ms"] / r["latency_ms"],
                # equal size too: the best trial no larger than the reference
                "best_at_its_size": _summary(max((x for x in done if x["params"] <= r["params"]), key=lambda x: x["psnr"])),
            }
    return out


def psnr_runs(study, rows: list[dict]) -> dict[int, dict[int, dict[int, float]]]:
    """Every training run of a stored trial: {steps: {trial: {seed: PSNR}}}.

    The screening (the study's budget and seed) comes from the trials, the rest from the
    ``rerun:`` user attributes that `mambalitesr search rerun` / `promote` store with the study.
    """
    attrs = study.user_attrs
    base_steps, base_seed = attrs.get("budget", {}).get("steps"), attrs.get("seed")
    runs: dict[int, dict[int, dict[int, float]]] = {}
    for r in complete(rows):
        runs.setdefault(base_steps, {}).setdefault(r["number"], {})[base_seed] = r["psnr"]
    for key, v in sorted(attrs.items()):
        if key.startswith("rerun:") and v.get("psnr") is not None:
            runs.setdefault(v.get("steps", base_steps), {}).setdefault(v["trial"], {})[v["seed"]] = v["psnr"]
    return runs


def seed_sd(by_trial: dict[int, dict[int, float]]) -> tuple[float | None, int]:
    """(pooled seed-to-seed sd of one run's PSNR, trials it pools) over the trials run with several seeds."""
    groups = [list(seeds.values()) for seeds in by_trial.values() if len(seeds) > 1]
    if not groups:
        return None, 0
    ss = sum(float(np.sum((np.array(g) - np.mean(g)) ** 2)) for g in groups)
    dof = sum(len(g) - 1 for g in groups)
    return math.sqrt(ss / dof), len(groups)


def paired_gain(runs: dict, a: int, b: int) -> list[dict]:
    """PSNR of trial ``a`` minus trial ``b`` at each budget where both ran with the same seed(s).

    ``resolved``: |mean gain| above twice its standard error, sqrt(2) sd / sqrt(seeds) with sd the
    pooled seed-to-seed sd of that budget (None when that sd is not measured).
    """
    out = []
    for steps, by_trial in sorted(runs.items()):
        sa, sb = by_trial.get(a, {}), by_trial.get(b, {})
        seeds = sorted(set(sa) & set(sb))
        if not seeds:
            continue
        gains = [sa[s] - sb[s] for s in seeds]
        sd, pooled = seed_sd(by_trial)
        se = math.sqrt(2) * sd / math.sqrt(len(seeds)) if sd is not None else None
        mean = float(np.mean(gains))
        out.append({"steps": steps, "seeds": seeds, "gains": gains, "mean": mean, "a": [sa[s] for s in seeds],
                    "b": [sb[s] for s in seeds], "seed_sd": sd, "sd_trials": pooled, "se": se,
                    "resolved": None if se is None else abs(mean) > 2 * se})
    return out


def front_position(row: dict, rows: list[dict], key: str = "params") -> float | None:
    """Signed dB from ``row`` to the PSNR-``key`` Pareto front of the other rows.

    Negative: the best other trial with no more ``key`` is that much better (``row`` is dominated
    on this plane). Positive: ``row`` is on the front, that much above the best other trial with no
    more ``key``. None when no other trial is that small.
    """
    others = [r["psnr"] for r in rows if r["number"] != row["number"] and r[key] <= row[key]]
    return row["psnr"] - max(others) if others else None


def rung(study, rows: list[dict], steps: int | None = None) -> tuple[int, list[dict]] | None:
    """(steps, rows) of the trials re-trained with a longer budget at the study's seed, their PSNR that run's.

    ``steps`` None: the longest such budget with at least three trials. Rows keep everything else
    (size, latency, reference); ``screen_psnr`` holds the study's short-budget PSNR.
    """
    seed, base = study.user_attrs.get("seed"), study.user_attrs.get("budget", {}).get("steps")
    runs = {s: {n: seeds[seed] for n, seeds in by_trial.items() if seed in seeds}
            for s, by_trial in psnr_runs(study, rows).items() if s != base}
    candidates = [s for s in sorted(runs, reverse=True) if len(runs[s]) >= 3 and (steps is None or s == steps)]
    if not candidates:
        return None
    chosen_steps = candidates[0]
    by_number = {r["number"]: r for r in complete(rows)}
    out = [{**by_number[n], "screen_psnr": by_number[n]["psnr"], "psnr": p}
           for n, p in sorted(runs[chosen_steps].items()) if n in by_number]
    return chosen_steps, out


def study_decision(study, budget: int = 150_000, tolerance: float = 0.1) -> dict:
    """The decision the report states, shared with `search cost`.

    {"rows", "screen": decide(screening), "rung": (steps, rows) | None, "decision": decide(the rung if
    there is one, else the screening)}: the longest promoted budget decides, because the screening's
    PSNRs may not separate the sizes.
    """
    rows = trial_rows(study)
    screen = decide(rows, budget, tolerance)
    rung_info = rung(study, rows)
    return {"rows": rows, "screen": screen, "rung": rung_info,
            "decision": decide(rung_info[1], budget, tolerance) if rung_info else screen}


def promotion_candidates(rows: list[dict], budget: int = 150_000, limit: int = 6) -> list[int]:
    """Trials worth a longer budget: both references, and the best screening trial of each of ``limit - 2``
    log-spaced parameter bands between the smallest completed trial and ``budget``.

    Bands rather than the screening's front: when the short budget cannot tell sizes apart (all
    PSNRs within noise), its front is just the smallest models, while the longer budget must see
    the whole size range to decide.
    """
    done = [r for r in complete(rows) if r["params"] <= budget]
    refs = [r["number"] for r in done if r["reference"]]
    others = [r for r in done if not r["reference"]]
    bands = max(0, limit - len(refs))
    if not others or not bands:
        return refs
    edges = np.geomspace(min(r["params"] for r in others), budget, bands + 1)
    picks = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = [r for r in others if lo <= r["params"] <= hi and r["number"] not in picks]
        if inside:
            picks.append(max(inside, key=lambda r: r["psnr"])["number"])
    return refs + picks
