"""The hyper-parameter study: exact size model over the space, pruning rule, decision, and a tiny resumable study."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mambalitesr.errors import UserError
from mambalitesr.imageio import write_image
from mambalitesr.models.complexity import analytic_macs, analytic_params, count_params, measure_macs
from mambalitesr.models.study import fit, space


def _random_params(rng) -> dict:
    params = {name: choices[rng.integers(len(choices))] for name, choices in space.CHOICES.items()}
    params["alpha"] = float(rng.uniform(*space.ALPHA_RANGE))
    return params


def test_analytic_size_matches_counted_over_the_space():
    from mambalitesr.models.network import MambaSR

    rng = np.random.default_rng(1)
    for _ in range(10):
        cfg, _ = space.decode(_random_params(rng))
        model = MambaSR(cfg)
        assert analytic_params(cfg) == count_params(model), cfg
        assert analytic_macs(cfg, 5, 7) == measure_macs(model, 5, 7), cfg


def test_reference_configs_are_in_the_space():
    for params in (space.PAPER, space.student_params()):
        for name, choices in space.CHOICES.items():
            assert params[name] in choices
        assert space.ALPHA_RANGE[0] <= params["alpha"] <= space.ALPHA_RANGE[1]
    paper, _ = space.decode(space.PAPER)
    assert (paper.embed_dim, paper.groups * paper.mixers, paper.rank) == (32, 8, 2)


def _row(number, psnr, params, latency, K=1, reference=""):
    return {"number": number, "state": "COMPLETE", "psnr": psnr, "params": params, "latency_ms": latency,
            "macs": params * 100, "directions": K, "reference": reference, "alpha": 0.8,
            "config": json.dumps({"embed_dim": number}), **{k: 0 for k in space.CHOICES if k != "directions"}}


def test_pareto_front_fit_and_decision():
    rows = [_row(0, 28.0, 50_000, 10), _row(1, 28.5, 100_000, 20, reference="paper"), _row(2, 28.45, 80_000, 30),
            _row(3, 28.3, 120_000, 40), _row(4, 29.0, 200_000, 50, K=4)]
    front = {r["number"] for r in fit.pareto_front(rows)}
    assert front == {0, 1, 2, 4}  # 3 is beaten by 1 on every objective
    decision = fit.decide(rows, budget=150_000, tolerance=0.1)
    assert decision["best"]["number"] == 1  # 4 is over the budget
    assert decision["chosen"]["number"] == 2  # smallest within 0.1 dB of 28.5
    assert decision["vs_paper"]["psnr_gain_db"] == pytest.approx(-0.05)
    # an exact line is recovered with R^2 = 1
    line = [_row(i, 20 + 2 * np.log10(p) + (0.3 if K == 4 else 0), p, 1, K=K)
            for i, (p, K) in enumerate([(1e4, 1), (3e4, 1), (1e5, 1), (2e4, 4), (2e5, 4)])]
    j = fit.fit_psnr_vs_size(line)["joint"]
    assert (j["b0"], j["b1"], j["bK4"], j["r2"]) == pytest.approx((20, 2, 0.3, 1.0))


def test_prune_rule_diverged_and_dominated():
    import optuna

    from mambalitesr.models.study import search

    study = optuna.create_study(directions=list(search.DIRECTIONS))
    for i in range(search.PRUNE_MIN_COMPLETE):
        study.add_trial(optuna.trial.create_trial(
            values=[25.0, 1000 * (i + 1), 1.0],
            user_attrs={"params": 1000 * (i + 1), "macs": 10_000 * (i + 1), "half_psnr": 24.0 + i}))
    rule = search._prune_rule(study, nearest=23.0, params=3500, macs=35_000)
    assert rule(22.0).startswith("diverged")
    assert rule(float("nan")).startswith("diverged")
    assert "trial 2" in rule(25.85)  # trial 2 (3000 params, 26.0 dB at half) is smaller and 0.15 dB ahead
    assert rule(25.95) is None  # within the margin of every smaller trial
    assert search._prune_rule(study, 23.0, params=500, macs=5000)(23.5) is None  # nothing is smaller


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mambalitesr.models import create_model
    from mambalitesr.models.weights_io import save_weights

    root = tmp_path_factory.mktemp("study")
    (root / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        yy, xx = np.mgrid[0:64, 0:72] / 12.0
        base = np.stack([np.sin(xx + i), np.cos(yy * 1.3 - i), np.sin(xx * 0.7 + yy)], -1)
        write_image(root / "train" / f"img{i}.png", (base * 90 + 128 + rng.normal(0, 2, base.shape)).clip(0, 255).astype(np.uint8))
    teacher = root / "teacher.safetensors"
    save_weights(create_model("test_xs4_x4", pretrained=False), teacher, "test_xs4_x4")
    return root, teacher


def test_tiny_study_runs_resumes_and_reports(tiny_data, tmp_path):
    import optuna

    from mambalitesr.cli import main
    from mambalitesr.models.study.report import build_report
    from mambalitesr.models.study.search import load_study, run_search
    from mambalitesr.models.study.trial import Budget, Data

    root, teacher = tiny_data
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    budget = Budget(steps=4, batch=2, patch=8, holdout_every=3, scan_backend="chunked")
    data = Data(train_dirs=(str(root / "train"),), teacher="test_xs4_x4", teacher_weights=str(teacher),
                cache_dir=str(tmp_path / "cache"), min_lr_side=8)
    # pruning off: 4 steps cannot beat nearest-neighbour on smooth images (the rule is tested on its own above)
    kw = dict(storage=storage, name="t", latency_runs=1, latency_hw=(8, 12), progress=False, say=lambda m: None,
              prune=False)

    study = run_search(1, budget, data, **kw)
    assert [t.user_attrs.get("reference") for t in study.trials if t.state.name != "WAITING"] == ["paper"]
    assert list((tmp_path / "cache").glob("teacher-test_xs4_x4-*.npz"))  # teacher outputs cached for the next process

    # a process killed mid-trial leaves a RUNNING trial behind: the resume fails it and runs its config again
    killed = optuna.load_study(study_name="t", storage=storage).ask(space.distributions())
    study = run_search(2, budget, data, **kw)
    states = [t.state.name for t in study.trials]
    assert states[killed.number] == "FAIL" and states.count("COMPLETE") == 2
    assert [t.user_attrs.get("reference") for t in study.trials if t.state.name == "COMPLETE"] == ["paper", "student"]
    study = run_search(3, budget, data, **kw)  # the interrupted config is next in the queue
    redo = [t for t in study.trials[killed.number + 1:] if t.params == killed.params]
    assert redo and redo[0].state.name in ("COMPLETE", "PRUNED")
    for t in study.trials:
        if t.state.name == "COMPLETE":
            a = t.user_attrs
            assert a["params"] == a["analytic_params"] and a["macs"] == a["analytic_macs"]
            assert t.values[1] == a["params"] and np.isfinite(t.values[0])
            assert a["holdout_images"] == 2  # images 2 and 5 of 6

    with pytest.raises(UserError, match="budget"):
        run_search(9, Budget(steps=6, batch=2, patch=8, holdout_every=3, scan_backend="chunked"), data, **kw)

    data_args = ["--storage", storage, "--study-name", "t", "--train", str(root / "train"), "--teacher", "test_xs4_x4",
                 "--teacher-weights", str(teacher), "--teacher-cache", str(tmp_path / "cache"), "--min-lr-side", "8"]
    assert main(["search", "rerun", "--trial", "0", "--seed", "1", *data_args]) == 0  # seed noise
    assert main(["search", "rerun", "--trial", "0", "--steps", "6", *data_args]) == 0  # a longer budget
    stored = load_study(storage, "t")
    assert {k.split(":", 2)[2] for k in stored.user_attrs if k.startswith("rerun:0:")} == {"seed1:steps4", "seed0:steps6"}
    readme = build_report(storage, "t", tmp_path / "report")
    text = readme.read_text()
    assert "trial 0: PSNR over 2 seeds" in text and "| 0 | C32 G4 M2 N16 E2 r2 K1 | 95,952 |" in text
    assert "## Decision" in text and "trial 0" in text and (tmp_path / "report" / "pareto.png").is_file()
    assert f"Trials: {len(fit.trial_rows(stored))} (" in text
    assert main(["search", "report", "--storage", storage, "--study-name", "t", "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "README.md").read_text() == text.replace(str(tmp_path / "report"), str(tmp_path / "r2"))


def test_report_without_a_study_is_a_clear_error(tmp_path):
    from mambalitesr.cli import main

    assert main(["search", "report", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) != 0


def test_search_run_refuses_a_study_without_held_out_images(tmp_path):
    from mambalitesr.cli import main

    args = ["search", "run", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--train", str(tmp_path)]
    assert main(args + ["--holdout-every", "1"]) != 0
    assert main(args + ["--steps", "7"]) != 0  # odd: no half-budget point
    assert not (tmp_path / "s.db").exists()
