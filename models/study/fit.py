"""What the study says: trial rows, the Pareto front, PSNR against size, and the choice of student.

Glossary (code name -> paper symbol): PSNR held-out PSNR-Y (dB) at the study's budget; |theta|
params; K directions (the "family"); fit  PSNR = b0 + b1 log10 |theta| + b_K [K = 4] (least
squares), R^2 its coefficient of determination; budget the parameter budget of the decision;
tolerance the PSNR slack of "within 0.1 dB of the best".

Decision rule: among completed trials with |theta| <= budget, the best PSNR; the shipped student is
the smallest such trial whose PSNR is within ``tolerance`` of that best.
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
    """PSNR = b0 + b1 log10(params) + bK [K = 4] over completed trials, and the same line per K family."""
    done = complete(rows)
    if len(done) < 3:
        return {"n": len(done)}
    y = np.array([r["psnr"] for r in done])
    logp = np.log10([r["params"] for r in done])
    k4 = np.array([1.0 if r["directions"] == 4 else 0.0 for r in done])
    out = {"n": len(done)}
    if 0 < k4.sum() < len(done):
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


def importances(study) -> dict:
    """fANOVA importance of each parameter for each objective (completed trials), Optuna's default evaluator."""
    import optuna

    out = {}
    if len(complete(trial_rows(study))) < 4:
        return out
    for i, name in enumerate(("psnr", "params", "latency_ms")):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        out[name] = optuna.importance.get_param_importances(
            study, evaluator=evaluator, target=lambda t, i=i: t.values[i], target_name=name)
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
