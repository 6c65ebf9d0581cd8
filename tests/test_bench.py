"""`mambalitesr bench`: the results schema, the report made from the JSON only, plots, power columns, ratios.

The end-to-end runs use the tiny test_x4 model at tiny sizes with a few iterations; the numbers
themselves are not checked (a shared CI machine), only that every row is complete and consistent.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from mambalitesr.benchmarks import report as report_mod
from mambalitesr.benchmarks.timing import CallRates, IterationPolicy, time_calls
from mambalitesr.benchmarks.power import PowerContext
from mambalitesr.benchmarks.results import ROW_FIELDS, Results, Row, load_results, results_paths
from mambalitesr.cli import main
from mambalitesr.errors import UserError
from mambalitesr.models import mixer_native

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "benchmarks" / "results"
FAKE_TEGRASTATS = Path(__file__).parent / "fixtures" / "tegrastats"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = ["--warmup", "1", "--min-iters", "2", "--min-seconds", "0", "--max-seconds", "0.5", "--floor-iters", "1"]


@pytest.fixture(scope="module")
def test_weights(tmp_path_factory) -> Path:
    from mambalitesr.models.registry import create_model
    from mambalitesr.models.weights_io import save_weights

    path = tmp_path_factory.mktemp("w") / "test_x4.safetensors"
    save_weights(create_model("test_x4", pretrained=False), path, "test_x4")
    return path


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Two small HR images (smooth gradients plus noise), enough for the x4 quality protocol."""
    from mambalitesr.imageio import write_image

    folder = tmp_path_factory.mktemp("TinySet")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:40]
    for k in range(2):
        base = np.stack([(xx * 5 + k * 30) % 256, (yy * 4) % 256, (xx + yy) * 2 % 256], axis=-1)
        write_image(folder / f"img{k}.png", np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory, test_weights, tiny_dataset) -> Path:
    """One `bench all` run of test_x4: torch, the plugin and the portable ONNX graphs at 24x16, batches 1 and 2,
    tensorrt skipped, no power telemetry; then quality on a tiny dataset."""
    out = tmp_path_factory.mktemp("results")
    rc = main(["bench", "all", "--device", "ci", "--results-dir", str(out), "--model",
               f"test_x4={test_weights}", "--sizes", "24x16", "--batches", "1,2", "--backends",
               "torch,onnxruntime,tensorrt", "--onnx-graphs", "plugin,portable", "--portable-sizes", "24x16",
               "--threads", "1", "--power", "none", "--data", str(tiny_dataset), "--no-progress", *FAST])
    assert rc == 0
    return out


def _rows(results_dir: Path) -> list[Row]:
    return load_results(results_paths(results_dir, "ci")["json"]).rows


def test_latency_rows_follow_the_schema(latency_run):
    raw = json.loads(results_paths(latency_run, "ci")["json"].read_text())
    assert raw["schema"] == 1 and raw["device"] == "ci"
    assert all(set(r) == set(ROW_FIELDS) for r in raw["rows"])
    rows = [r for r in _rows(latency_run) if r.kind == "latency"]
    ok = [r for r in rows if r.status == "ok"]
    lanes = {(r.backend, r.graph, r.precision, r.batch) for r in ok}
    assert lanes == {("torch", "pytorch-native-scan", "fp32", 1), ("torch", "pytorch-native-scan", "fp32", 2),
                     ("onnxruntime", "onnx-plugin", "fp32", 1), ("onnxruntime", "onnx-plugin", "fp32", 2),
                     ("onnxruntime", "onnx-portable", "fp32", 1)}
    for r in ok:
        assert r.kind == "latency" and r.variant == "test_x4" and r.input_hw == [16, 24]
        assert r.iterations >= 1 and r.warmup >= 1
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.fps == pytest.approx(r.batch * 1e3 / r.mean_ms, rel=1e-6)
        assert r.machine and r.run_id and r.params == 6144 and r.weights == "test_x4.safetensors"
        assert f"C mixer {mixer_native.vector_width()} lanes" in r.machine  # which kernels the CPU ran
        assert r.power_note and r.watts_avg_above_idle is None and r.joules_per_frame is None
        assert r.peak_mem_mb is None or r.peak_mem_mb >= 0
    for r in ok:
        if r.backend == "torch":
            assert r.max_abs_err == 0.0  # the reference itself
        else:
            assert 0 <= r.max_abs_err < 1e-4, r.key()  # the export's own tolerance
    skipped = {(r.backend, r.precision): r.reason for r in rows if r.status == "skipped"}
    assert "CUDA" in skipped[("torch", "fp16")] and "bf16" in skipped[("torch", "bf16")]
    assert skipped[("tensorrt", "engine")]  # no TensorRT here, or no engine given: a reason either way
    portable_b2 = [r for r in rows if r.graph == "onnx-portable" and r.batch == 2]
    assert len(portable_b2) == 1 and portable_b2[0].status == "skipped" and "B = 1" in portable_b2[0].reason


def test_markdown_is_rendered_from_the_json(latency_run):
    paths = results_paths(latency_run, "ci")
    md = paths["md"].read_text()
    results = load_results(paths["json"])
    assert report_mod.render_markdown(results) == md
    assert "generated by `mambalitesr bench report`" in md
    # `bench report` regenerates the same file from the JSON alone
    paths["md"].unlink()
    assert main(["bench", "report", "--device", "ci", "--results-dir", str(latency_run)]) == 0
    assert paths["md"].read_text() == md
    # ... and a change in the JSON shows in the markdown
    row = next(r for r in results.rows if r.kind == "latency" and r.status == "ok" and r.backend == "torch")
    row.p50_ms, row.p90_ms, row.p99_ms = 1234.5, 2345.6, 3456.7
    changed = report_mod.render_markdown(results)
    assert changed != md and "1234 | 2346 | 3457" in changed


def test_quality_rows_score_bicubic_and_the_model(latency_run, tiny_dataset):
    rows = [r for r in _rows(latency_run) if r.kind == "quality"]
    assert {(r.variant, r.backend, r.status) for r in rows} == {("bicubic", "bicubic", "ok"),
                                                               ("test_x4", "torch", "ok")}
    for r in rows:
        assert r.dataset == tiny_dataset.name and r.images == 2 and r.scale == 4
        assert 5 < r.psnr_y < 60 and 0 < r.ssim_y <= 1
    md = results_paths(latency_run, "ci")["md"].read_text()
    assert f"| {tiny_dataset.name} |" in md.splitlines()[md.splitlines().index("## Quality") + 4]


def test_plots_exist(latency_run):
    paths = results_paths(latency_run, "ci")
    for key in ("latency_png", "quality_png"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC
    assert not paths["energy_png"].exists()  # no J/frame measured, so no energy plot
    assert "Energy per frame: not plotted" in paths["md"].read_text()


def test_a_later_run_replaces_rows_and_keeps_others(latency_run, test_weights, tmp_path):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(latency_run, out)
    before = _rows(out)
    assert main(["bench", "latency", "--device", "ci", "--results-dir", str(out), "--model",
                 f"test_x4={test_weights}", "--sizes", "24x16", "--batches", "1", "--backends", "torch",
                 "--threads", "1", *FAST]) == 0
    after = _rows(out)
    assert [r.key() for r in after] == [r.key() for r in before]  # replaced in place, nothing lost
    torch_b1 = [r for r in after if r.backend == "torch" and r.precision == "fp32" and r.batch == 1]
    assert torch_b1[0].run_id != [r for r in before if r.key() == torch_b1[0].key()][0].run_id
    runs = json.loads(results_paths(out, "ci")["json"].read_text())["runs"]
    assert len(runs) == 2 and all(r["wall_s"] is not None for r in runs)


def test_power_columns_from_a_replayed_tegrastats(tmp_path, test_weights):
    """The power path end to end, on recorded Orin Nano tegrastats lines (plumbing, not a measurement)."""
    cmd = shlex.join(["sh", str(FAKE_TEGRASTATS / "fake_tegrastats.sh"), str(FAKE_TEGRASTATS / "orin_nano.txt"),
                      "loop"])
    assert main(["bench", "power", "--device", "ci", "--results-dir", str(tmp_path), "--model",
                 f"test_x4={test_weights}", "--sizes", "16x16", "--batches", "1", "--backends", "torch",
                 "--threads", "1", "--power", "tegrastats", "--tegrastats-cmd", cmd, "--power-interval-ms", "50",
                 "--idle-seconds", "1", *FAST]) == 0
    results = load_results(results_paths(tmp_path, "ci")["json"])
    assert results.idle["source"] == "tegrastats" and results.idle["idle_w"] > 1
    row = next(r for r in results.rows if r.status == "ok")
    assert row.power_source == "tegrastats" and row.idle_w == results.idle["idle_w"]
    assert row.watts_avg_above_idle is not None and row.watts_peak_above_idle >= row.watts_avg_above_idle
    assert row.joules_per_frame is not None and row.joules_per_frame > 0
    assert "W above idle" in results_paths(tmp_path, "ci")["md"].read_text()


def test_no_telemetry_leaves_power_null_with_the_reason():
    ctx = PowerContext.open("none", say=lambda m: None)
    fields = ctx.fields(None, 1)
    assert fields == {"power_source": None, "power_note": "not measured: --power none"}


def _lat(variant, run_id, p50, lane=("torch", "pytorch-native-scan", "fp32")) -> Row:
    return Row(kind="latency", variant=variant, backend=lane[0], graph=lane[1], precision=lane[2], status="ok",
               run_id=run_id, machine="m", input_hw=[90, 160], batch=1, warmup=1, iterations=3, p50_ms=p50,
               p90_ms=p50, p99_ms=p50, mean_ms=p50, fps=1e3 / p50, max_abs_err=0.0)


def test_speedup_compares_only_rows_of_one_run():
    res = Results(device="d")
    res.merge([_lat("mambalitesr_x4", "a", 10.0), _lat("dvmsr_x4", "a", 35.0)])
    pairs = report_mod.speedups(res)
    assert len(pairs) == 1 and pairs[0]["speedup"] == pytest.approx(3.5)
    res.merge([_lat("dvmsr_x4", "b", 5.0)])  # the teacher re-measured in another run replaces run a's row
    assert report_mod.speedups(res) == []
    assert "No run measured both" in report_mod.render_markdown(res)


def test_rows_are_validated():
    good = _lat("m", "r", 1.0)
    with pytest.raises(ValueError, match="no reason"):
        dataclasses.replace(good, status="skipped").validate()
    with pytest.raises(ValueError, match="percentiles"):
        dataclasses.replace(good, p90_ms=0.5).validate()
    with pytest.raises(ValueError, match="power_source"):
        dataclasses.replace(good, joules_per_frame=1.0).validate()
    data = Results(device="d", rows=[good]).to_json()
    data["rows"][0]["bogus"] = 1
    with pytest.raises(UserError, match="unknown fields"):
        Results.from_json(data)
    with pytest.raises(UserError, match="schema"):
        Results.from_json({"schema": 99, "rows": []})


def test_time_calls_follows_its_policy():
    calls = []
    timing = time_calls(lambda: calls.append(1) or np.zeros(1), IterationPolicy(warmup=2, min_iters=5, max_iters=7,
                                                                                min_seconds=10.0, max_seconds=10.0))
    assert timing.warmup == 2 and timing.iterations == 7 and len(calls) == 9  # max_iters bounds a fast call
    timing = time_calls(lambda: None, IterationPolicy(warmup=1, min_iters=3, max_iters=100, min_seconds=0.0))
    assert timing.iterations == 3
    with pytest.raises(UserError):
        IterationPolicy(min_iters=5, max_iters=2).check()


def test_a_warm_backend_skips_the_warm_up_of_a_slow_shape():
    calls = []
    timing = time_calls(lambda: calls.append(1) or len(calls), IterationPolicy(warmup=2, min_iters=3, max_iters=3),
                        warm=True)
    assert timing.warmup == 0 and timing.iterations == 3 and len(calls) == 3
    assert timing.last_output == 3  # the error check sees a timed call's output
    class Backend:  # a stand-in; CallRates holds backends weakly (closed ORT sessions must be freed)
        pass

    rates, backend = CallRates(), Backend()
    assert rates.projected_s(backend, (90, 160), 1) is None  # never run: it gets its warm-up
    rates.record(backend, (90, 160), 1, 0.5)
    rates.record(backend, (180, 320), 1, 1.0)  # faster per pixel: the slower rate is kept
    assert rates.projected_s(backend, (360, 640), 4) == pytest.approx(0.5 * 16 * 4)
    assert rates.projected_s(Backend(), (90, 160), 1) is None  # per backend, not per lane
    import gc
    import weakref

    gone = weakref.ref(backend)
    del backend
    gc.collect()
    assert gone() is None  # recording a rate does not keep the backend (and its session) alive


def test_bad_arguments_are_refused(tmp_path):
    assert main(["bench", "latency", "--sizes"]) == 2  # argparse's refusal, returned as the status
    assert main(["bench", "latency", "--device", "ci", "--results-dir", str(tmp_path), "--model", "test_x4"]) == 2
    assert main(["bench", "latency", "--device", "../x", "--results-dir", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # nothing half-written


COMMITTED_JSON = sorted(COMMITTED.glob("*.json"))
THIS_MACHINE = "cpu-x86_64-2core"  # the file the acceptance checks below hold the committed run to


@pytest.mark.skipif(not COMMITTED_JSON, reason="no results committed in benchmarks/results yet (run "
                    "`mambalitesr bench all` as in benchmarks/results/README.md)")
@pytest.mark.parametrize("path", COMMITTED_JSON, ids=lambda p: p.name)
def test_committed_results_follow_the_schema(path):
    raw = json.loads(path.read_text())
    assert raw["schema"] == 1 and path.stem == raw["device"]
    assert raw["machine"] and raw["runs"] and raw["rows"]
    assert all(set(r) == set(ROW_FIELDS) for r in raw["rows"])
    results = load_results(path)  # validates every row
    run_ids = {r["run_id"] for r in results.runs}
    assert all(r.run_id in run_ids for r in results.rows)
    assert all(r["wall_s"] is not None for r in results.runs), "a run that did not finish"
    for r in results.rows:
        assert r.machine
        if r.kind == "latency" and r.status == "ok":
            assert r.max_abs_err is not None and r.peak_mem_mb is not None
            # power: a measured figure with its source, or null with the reason; never a bare null
            assert (r.watts_avg_above_idle is not None and r.power_source) or r.power_note


@pytest.mark.skipif(not COMMITTED_JSON, reason="no results committed in benchmarks/results yet")
@pytest.mark.parametrize("path", COMMITTED_JSON, ids=lambda p: p.name)
def test_committed_markdown_is_generated_from_its_json(path):
    results = load_results(path)
    md = path.with_suffix(".md")
    assert md.is_file(), f"{path.name} has no rendered {md.name}"
    assert md.read_text() == report_mod.render_markdown(results), (
        f"{md} differs from what `mambalitesr bench report --device {results.device}` renders from {path.name}")
    for key in ("latency_png", "quality_png"):
        assert results_paths(COMMITTED, results.device)[key].read_bytes()[:8] == PNG_MAGIC


@pytest.mark.skipif(not (COMMITTED / f"{THIS_MACHINE}.json").is_file(),
                    reason=f"no committed {THIS_MACHINE}.json yet (run `mambalitesr bench all` on this machine)")
def test_committed_cpu_results_cover_the_issue():
    """Issue #8's acceptance on the committed CPU file: every size and batch on the torch and ORT plugin lanes
    for both models, the student faster than the teacher on every lane, no invented power figures."""
    results = load_results(COMMITTED / f"{THIS_MACHINE}.json")
    ok = [r for r in results.rows if r.kind == "latency" and r.status == "ok"]
    # A shape the memory guard refused is covered by its skipped row, whose reason states both figures.
    out_of_memory = [r for r in results.rows if r.kind == "latency" and r.status == "skipped"
                     and r.reason and r.reason.startswith("projected peak memory")]
    assert len(out_of_memory) <= 1, "more than one configuration skipped for memory: rerun on a quieter machine"
    for variant in (report_mod.STUDENT, report_mod.TEACHER):
        for graph in ("pytorch-native-scan", "onnx-plugin"):
            have = {(tuple(r.input_hw), r.batch) for r in ok + out_of_memory
                    if r.variant == variant and r.graph == graph}
            want = {(hw, b) for hw in ((90, 160), (180, 320), (360, 640)) for b in (1, 4)}
            assert have == want, f"{variant} {graph}: missing {sorted(want - have)}"
    pairs = report_mod.speedups(results)
    assert {p["lane"] for p in pairs} >= {"torch / pytorch-native-scan / fp32",
                                          "onnxruntime / onnx-plugin / fp32 [cpu]"}
    assert all(p["speedup"] > 1 for p in pairs), [(p["lane"], p["input_hw"], p["batch"]) for p in pairs
                                                   if p["speedup"] <= 1]
    assert all(r.watts_avg_above_idle is None and r.joules_per_frame is None and "not measured" in r.power_note
               for r in ok), "this machine has no power telemetry"
    skipped = {r.backend for r in results.rows if r.status == "skipped"}
    assert "tensorrt" in skipped
    quality = {r.variant for r in results.rows if r.kind == "quality" and r.status == "ok" and r.dataset == "Set5"}
    assert {"bicubic", report_mod.STUDENT, report_mod.TEACHER} <= quality


def test_scan_share_splits_frames_into_scans_and_rest(capsys):
    from mambalitesr.benchmarks import scan_share
    from mambalitesr.models.mixer_native import available

    if not available():
        pytest.skip("the native C scan is not built (pip install -e . builds it)")
    part = scan_share.measure("test_x4", 24, 16, reps=1)
    assert part["mixers"] == 2 and part["updates"] == 2 * 16 * 4 * 24 * 16  # mixers x D x N x L
    assert 0 < part["scans"] < part["frame"] and part["rest"] == pytest.approx(part["frame"] - part["scans"])
    assert scan_share.main(["--student", "test_x4", "--teacher", "test_x4", "--size", "24x16", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("frame ratio") == len(scan_share.SPEEDUPS) and "scans free in both" in out
    with pytest.raises(SystemExit) as bad:
        scan_share.main(["--size", "320"])
    assert bad.value.code == 2
    assert scan_share.main(["--student", "no_such_model", "--size", "24x16", "--reps", "1"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
