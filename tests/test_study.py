"""The hyper-parameter study: exact size model over the space, pruning rule, decision, and a tiny resumable study."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

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
            for i, (p, K) in enumerate([(1e4, 1), (3e4, 1), (1e5, 1), (2e4, 4), (2e5, 4), (6e4, 4)])]
    j = fit.fit_psnr_vs_size(line)["joint"]
    assert (j["b0"], j["b1"], j["bK4"], j["r2"]) == pytest.approx((20, 2, 0.3, 1.0))
    # a lone K = 4 trial gets no K term of its own (it would be fitted exactly by it): one line over all
    j = fit.fit_psnr_vs_size(line[:4])["joint"]
    assert j["bK4"] is None and j["r2"] < 1


def test_front_position_seed_noise_and_paired_gain():
    rows = [_row(0, 28.0, 50_000, 10), _row(1, 28.3, 100_000, 30), _row(2, 28.2, 120_000, 20)]
    assert fit.front_position(rows[0], rows) is None  # nothing is smaller
    assert fit.front_position(rows[1], rows) == pytest.approx(0.3)  # on the front, 0.3 dB above trial 0
    assert fit.front_position(rows[2], rows) == pytest.approx(-0.1)  # trial 1 is smaller and 0.1 dB better
    assert fit.front_position(rows[2], rows, "latency_ms") == pytest.approx(0.2)  # but faster than trial 1
    runs = {100: {0: {0: 28.0, 1: 28.2}, 1: {0: 28.5, 1: 28.5}, 2: {0: 27.0}}, 1000: {0: {0: 29.0}, 1: {0: 29.4}}}
    sd, pooled = fit.seed_sd(runs[100])
    assert pooled == 2 and sd == pytest.approx(np.sqrt(0.02 / 2))  # one dof per twice-run trial
    gains = {g["steps"]: g for g in fit.paired_gain(runs, 1, 0)}
    assert gains[100]["seeds"] == [0, 1] and gains[100]["mean"] == pytest.approx(0.4)
    assert gains[100]["resolved"] is True  # 0.4 dB > 2 x sqrt(2) x 0.1 / sqrt(2)
    assert gains[1000]["mean"] == pytest.approx(0.4) and gains[1000]["resolved"] is None  # no seed noise measured there


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


STUDY_DIR = Path(__file__).resolve().parents[1] / "models" / "study"


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory):
    """A copy of the committed study folder (database, train_cost.json), so that no test can write the original."""
    folder = tmp_path_factory.mktemp("stored") / "study"
    folder.mkdir()
    for name in ("study.db", "train_cost.json"):
        if (STUDY_DIR / name).is_file():
            shutil.copy(STUDY_DIR / name, folder / name)
    if not (folder / "study.db").is_file():
        pytest.fail("models/study/study.db is missing: the study is part of the product")
    return folder


def test_every_stored_trial_has_the_analytic_size(stored_study):
    """Acceptance: analytic params == counted for every stored trial; analytic MACs within 1% of measured."""
    from mambalitesr.models.config import SRConfig
    from mambalitesr.models.network import MambaSR
    from mambalitesr.models.study.search import load_study

    rows = fit.complete(fit.trial_rows(load_study(f"sqlite:///{stored_study / 'study.db'}")))
    assert len(rows) >= 30
    families = {}
    for r in rows:
        cfg = SRConfig.from_json(r["config"])
        assert analytic_params(cfg) == count_params(MambaSR(cfg)) == r["params"], r["number"]
        # the MACs torch's flop counter measured at 320x180 when the trial ran
        assert abs(analytic_macs(cfg, 180, 320) - r["macs"]) <= 0.01 * r["macs"], r["number"]
        families.setdefault((cfg.directions, space.effective_rank(cfg) is None), cfg)
    # and measured again now (at a small input: the counter costs ~1 s a model) for one trial of each kind of mixer
    assert len(families) >= 3
    for cfg in families.values():
        measured = measure_macs(MambaSR(cfg).set_scan_backend("ref"), 6, 10)
        assert abs(analytic_macs(cfg, 6, 10) - measured) <= 0.01 * measured, cfg


def test_committed_report_is_generated_from_the_db(stored_study, tmp_path):
    """Acceptance: models/study/README.md is exactly what `search report` writes from the stored study."""
    from mambalitesr.models.study.report import build_report

    committed = STUDY_DIR / "README.md"
    assert committed.is_file(), "models/study/README.md is missing: run `mambalitesr search report`"
    fresh = build_report(f"sqlite:///{stored_study / 'study.db'}", out_dir=tmp_path).read_text()
    old, new = committed.read_text(), fresh
    table = lambda text: text[text.index("## All trials"):]  # noqa: E731
    assert table(old) == table(new), "the trial table is stale: run `mambalitesr search report`"
    assert old == new, "models/study/README.md is stale or hand-edited: run `mambalitesr search report`"
    for png in ("pareto.png", "fit.png", "rung.png"):
        assert (tmp_path / png).stat().st_size > 10_000 and (STUDY_DIR / png).is_file(), png


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
    assert main(["search", "promote", "--steps", "6", "--limit", "3", *data_args]) == 0  # a longer budget
    stored = load_study(storage, "t")
    assert {k.split(":", 2)[2] for k in stored.user_attrs if k.startswith("rerun:0:")} == {"seed1:steps4", "seed0:steps6"}
    promoted = sorted(v["trial"] for k, v in stored.user_attrs.items() if k.endswith(":steps6"))
    assert len(promoted) == 3 and promoted[:2] == [0, 2]  # both references (trial 1 was the interrupted student)
    readme = build_report(storage, "t", tmp_path / "report")
    text = readme.read_text()
    assert "trial 0, 4 steps: PSNR over 2 seeds" in text and "| 0 | C32 G4 M2 N16 E2 r2 K1 | 95,952 |" in text
    assert "Basis: the 3 trials promoted to a 6-step budget" in text and (tmp_path / "report" / "rung.png").is_file()
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
