"""Power telemetry: tegrastats parsing, energy integration, the subprocess reader, source selection.

Glossary: P total power (mW), E energy (J) over [t0, t1]; fixtures in tests/fixtures/tegrastats
are synthetic lines in the documented tegrastats format (see the README there).
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mambalitesr.errors import MissingDependency
from mambalitesr.runtime.power import PowerMonitor, PowerSample, integrate, open_power_source
from mambalitesr.runtime.power import choose as power_select
from mambalitesr.runtime.power.energy import report
from mambalitesr.runtime.power.sample import TOTAL_RAILS
from mambalitesr.runtime.power.tegrastats import LineParser, TegrastatsSource, parse_line

FIXTURES = Path(__file__).parent / "fixtures" / "tegrastats"
FAKE = FIXTURES / "fake_tegrastats.sh"
ON_JETSON_OR_GPU = bool(shutil.which("tegrastats")) or os.path.exists("/dev/nvidiactl") or os.path.exists("/run/jtop.sock")


def lines_of(name: str) -> list[str]:
    return (FIXTURES / name).read_text().split("\n")[:-1]


def wait_until(condition, timeout: float = 10.0) -> None:
    """Poll `condition` (the fake tegrastats is a shell loop: slow on a busy machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the telemetry thread"
        time.sleep(0.01)


def fake_cmd(fixture: str, mode: str) -> str:
    return shlex.join(["sh", str(FAKE), str(FIXTURES / fixture), mode])  # no reliance on the exec bit


# ---- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture,rails",
    [
        ("orin_nano.txt", [{"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}]),
        ("orin_nx.txt", [{"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}, {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}]),
        ("xavier_legacy.txt", [{"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}]),
    ],
)
def test_every_fixture_line_parses(fixture, rails):
    lines = lines_of(fixture)
    assert len(lines) >= 10
    for i, line in enumerate(lines):
        s = parse_line(line, t_monotonic=float(i))
        assert s is not None, line
        assert set(s.rails) in rails and s.source == "tegrastats"
        total_rail = next(r for r in TOTAL_RAILS if r in s.rails)
        assert s.total_mw == s.rails[total_rail][0] > 0


def test_fixture_values_by_hand():
    nano = parse_line(lines_of("orin_nano.txt")[0], 1.0)  # the real JetPack 6.2 line of the notes
    assert nano.total_mw == 4556 and nano.rails == {
        "VDD_IN": (4556, 4556), "VDD_CPU_GPU_CV": (483, 483), "VDD_SOC": (1451, 1451)
    }
    agx = parse_line(lines_of("orin_nx.txt")[-1], 1.0)
    assert agx.total_mw == 3917 and agx.rails["VDDQ_VDD2_1V8AO"] == (1045, 666)  # VIN_SYS_5V0 is the total there
    legacy = parse_line(lines_of("xavier_legacy.txt")[1], 1.0)
    assert legacy.total_mw == 1701 and legacy.rails["POM_5V_GPU"] == (303, 282)


def test_malformed_lines_are_refused_and_counted():
    parser = LineParser()
    lines = lines_of("malformed.txt")
    assert all(parser.feed(line) is None for line in lines)
    assert parser.malformed == len(lines) == 15 and parser.good == 0
    assert parser.last_error.startswith("no power rails")
    assert LineParser().feed(lines[0]) is None
    for line, why in [(lines[0], "complete"), (lines[2], "ends inside a rail"), (lines[4], "average only"), (lines[7], "mixes")]:
        p = LineParser()
        p.feed(line)
        assert why in p.last_error, (line, p.last_error)


OTHER_FIELDS = [
    "07-14-2025 10:29:36", "RAM 2147/7620MB (lfb 2x4MB)", "SWAP 1476/3810MB (cached 1MB)",
    "IRAM 0/252kB(lfb 252kB)", "CPU [0%@729,off,12%@1510]", "CPU [off,off,off,off]", "EMC_FREQ 0%@2133",
    "GR3D_FREQ 0%@[305]", "GR3D_FREQ 45%", "GR3D_FREQ 9%@[918,918]", "VIC off", "VIC_FREQ 3%@115",
    "APE 174", "NVENC 115", "MTS fg 0% bg 3%", "cpu@47.687C", "tj@48.625C", "PMIC@100C",
]
rail_names = st.one_of(st.sampled_from(TOTAL_RAILS + ("VDD_SOC", "VDD_CPU_GPU_CV", "POM_5V_GPU")), st.from_regex(r"[A-Z][A-Z0-9_]{0,14}", fullmatch=True))


@settings(max_examples=60, deadline=None)
@given(
    rails=st.dictionaries(rail_names, st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=6),
    others=st.lists(st.sampled_from(OTHER_FIELDS), max_size=8),
    with_units=st.booleans(),
    data=st.data(),
)
def test_generated_valid_line_round_trips(rails, others, with_units, data):
    unit = "mW" if with_units else ""
    fields = [f"{name} {cur}{unit}/{avg}{unit}" for name, (cur, avg) in rails.items()]
    for other in others:  # other fields anywhere, the rails keeping their order
        fields.insert(data.draw(st.integers(0, len(fields))), other)
    sample = parse_line(" ".join(fields), 3.0)
    assert sample is not None
    assert sample.rails == {k: (float(c), float(a)) for k, (c, a) in rails.items()}
    want_total = next((float(rails[r][0]) for r in TOTAL_RAILS if r in rails), None)
    assert sample.total_mw == want_total and sample.t_monotonic == 3.0


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="VDINPOM_5SC /0123456789mW%@[],.\n\tAB"), st.binary().map(lambda b: b.decode("latin-1"))))
def test_garbage_never_raises(text):
    result = parse_line(text, 0.0)
    assert result is None or isinstance(result, PowerSample)
    LineParser().feed(text)


# ---- energy -------------------------------------------------------------------------------------


def test_constant_5000_mw_for_2_s_is_10_j():
    times = [i * 0.1 for i in range(31)]  # 0 .. 3 s
    got = integrate(times, [5000.0] * len(times), 0.55, 2.55)
    assert got.energy_j == pytest.approx(10.0, abs=1e-9) and got.covered_s == pytest.approx(2.0)
    assert got.peak_mw == 5000.0


def test_ramp_with_irregular_samples_and_clipped_ends():
    times = [0.0, 0.3, 0.35, 1.0, 1.7, 2.2, 2.9, 3.3, 4.0]
    mw = [1000.0 * t for t in times]  # P(t) = 1000 t mW: linear, so the trapezoid rule is exact
    got = integrate(times, mw, 1.05, 3.05)
    assert got.energy_j == pytest.approx(0.5 * (3.05**2 - 1.05**2), abs=1e-9)  # 4.1 J
    assert got.peak_mw == pytest.approx(3050.0) and got.samples_inside == 3  # 1.7, 2.2, 2.9


def test_hold_limits_coverage_and_j_per_frame():
    samples = [PowerSample(1.0 + 0.1 * i, 5000.0, {"VDD_IN": (5000.0, 5000.0)}, "t") for i in range(11)]  # 1 .. 2 s
    held = report(samples, 0.9, 2.1, source="t", hold_s=0.2, frames=60)
    assert held.complete and held.energy_j == pytest.approx(6.0) and held.j_per_frame == pytest.approx(0.1)
    assert held.avg_w == pytest.approx(5.0) and held.rails_avg_w == {"VDD_IN": pytest.approx(5.0)}
    short = report(samples, 0.0, 3.0, source="t", hold_s=0.2, frames=60)
    assert not short.complete and short.covered_s == pytest.approx(1.4) and short.j_per_frame is None
    assert "only 1.40 of 3.00 s covered" in short.summary() and "no J/frame" in short.summary()
    none = report([], 0.0, 1.0, source="t", hold_s=0.2)
    assert none.energy_j is None and "not measured" in none.summary()


# ---- the subprocess reader and the monitor --------------------------------------------------------


def test_replay_through_the_subprocess_reader():
    totals = {parse_line(line, 0.0).total_mw for line in lines_of("orin_nano.txt")}
    source = TegrastatsSource(interval_ms=10, command=fake_cmd("orin_nano.txt", "loop"))
    assert source.argv[-2:] == ["--interval", "10"]
    with PowerMonitor(source, interval_ms=10) as monitor:
        assert monitor.wait_for_sample_after(0.0, timeout=5)
        t0 = monitor.begin()
        wait_until(lambda: sum(s.t_monotonic > t0 for s in monitor.samples()) >= 8)
        rep = monitor.end(frames=30)
        samples = monitor.samples()
    assert not monitor.lost and rep.telemetry_lost is None
    assert len(samples) >= 10 and {s.total_mw for s in samples} <= totals
    assert rep.complete and rep.samples >= 5
    assert min(totals) / 1000 <= rep.avg_w <= max(totals) / 1000 and rep.peak_w <= max(totals) / 1000
    assert rep.energy_j == pytest.approx(rep.avg_w * rep.duration_s)
    assert rep.j_per_frame == pytest.approx(rep.energy_j / 30)
    assert "tegrastats" in rep.summary() and "mJ/frame" in rep.summary()
    assert source._proc.poll() is not None  # the subprocess is gone after stop()


def test_telemetry_death_mid_run_is_reported_and_the_run_goes_on():
    source = TegrastatsSource(interval_ms=10, command=fake_cmd("xavier_legacy.txt", "die"))
    with PowerMonitor(source, interval_ms=10) as monitor:
        monitor.begin()
        wait_until(lambda: monitor.lost is not None)  # 10 lines at 10 ms, then the fake exits 3
        time.sleep(0.3)  # the run goes on without telemetry
        rep = monitor.end(frames=50)
    assert "exited with code 3" in monitor.lost and "lost the power monitor" in monitor.lost
    assert rep.telemetry_lost == monitor.lost and not rep.complete and rep.j_per_frame is None
    assert rep.energy_j is not None and rep.samples >= 5  # what was measured before is kept
    assert rep.covered_s < rep.duration_s - 0.2 and "no J/frame" in rep.summary()
    assert "TELEMETRY LOST" in monitor.summary() and "telemetry lost" in rep.summary()


def test_malformed_stream_gives_no_samples_and_says_why():
    source = TegrastatsSource(interval_ms=5, command=fake_cmd("malformed.txt", "hold"))
    with PowerMonitor(source, interval_ms=5) as monitor:
        wait_until(lambda: source.parser.malformed >= 15)
        monitor.begin()
        rep = monitor.end(frames=5)
    assert source.parser.malformed == 15 and monitor.samples() == []
    assert rep.energy_j is None and "15 malformed lines" in monitor.summary()


def test_unavailable_source_measures_nothing():
    monitor = PowerMonitor(None).start()
    monitor.begin()
    rep = monitor.end(frames=10)
    monitor.stop()
    assert rep.energy_j is None and rep.j_per_frame is None and "not measured" in rep.summary()


# ---- choosing a source ------------------------------------------------------------------------------


@pytest.mark.skipif(ON_JETSON_OR_GPU, reason="this machine has tegrastats, jtop or an NVIDIA driver")
def test_auto_here_is_unavailable_and_says_so_once(monkeypatch):
    monkeypatch.setattr(power_select, "_told_unavailable", False)
    said: list[str] = []
    assert open_power_source("auto", say=said.append) is None
    assert open_power_source("auto", say=said.append) is None
    assert len(said) == 1 and "unavailable" in said[0] and "jtop" in said[0] and "tegrastats" in said[0]
    assert open_power_source("none") is None


@pytest.mark.skipif(ON_JETSON_OR_GPU, reason="this machine has tegrastats, jtop or an NVIDIA driver")
@pytest.mark.parametrize("kind,needle", [("jtop", "pip install jetson-stats"), ("tegrastats", "JetPack"), ("nvml", "nvidia-ml-py")])
def test_explicit_unavailable_source_raises_with_how_to_get_it(kind, needle):
    with pytest.raises(MissingDependency, match=needle):
        open_power_source(kind)


def test_auto_picks_tegrastats_when_given_a_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # jtop import fails whatever is installed
    source = open_power_source("auto", interval_ms=10, tegrastats_cmd=fake_cmd("orin_nano.txt", "loop"))
    try:
        assert source.name == "tegrastats"
    finally:
        source.close()


class _FakeJtop:
    """Stands in for jtop.jtop: three updates, then the service goes away."""

    fail_start: str | None = None

    def __init__(self, interval):
        self.updates = 0

    def start(self):
        if self.fail_start:
            raise RuntimeError(self.fail_start)

    def ok(self):
        self.updates += 1
        if self.updates > 3:
            raise RuntimeError("Lost connection with jtop server")
        time.sleep(0.01)
        return True

    @property
    def power(self):
        mw = 5000.0 + 100 * self.updates
        return {"rail": {"VDD_CPU_GPU_CV": {"power": 800.0, "avg": 700.0, "online": True}, "VDD_SOC": {"online": False}},
                "tot": {"power": mw, "avg": 5000.0}}

    def close(self):
        pass


def test_jtop_reader_with_a_fake_service(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=_FakeJtop))
    source = open_power_source("jtop", interval_ms=10)
    with PowerMonitor(source, interval_ms=10) as monitor:
        wait_until(lambda: monitor.lost is not None)
    samples = monitor.samples()
    assert [s.total_mw for s in samples] == [5100.0, 5200.0, 5300.0]
    assert samples[0].rails == {"VDD_CPU_GPU_CV": (800.0, 700.0)} and samples[0].source == "jtop"
    assert "Lost connection" in monitor.lost
    monkeypatch.setattr(_FakeJtop, "fail_start", "The jtop.service is not active")
    with pytest.raises(MissingDependency, match="jtop service not active.*sudo systemctl start jtop"):
        open_power_source("jtop")


def test_nvml_reader_with_a_fake_library(monkeypatch):
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: "gpu0", nvmlDeviceGetPowerUsage=lambda h: 42000,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with PowerMonitor(open_power_source("nvml", interval_ms=10), interval_ms=10) as monitor:
        monitor.begin()
        time.sleep(0.15)
        rep = monitor.end(frames=3)
    assert monitor.latest_watts == 42.0
    assert rep.complete and rep.avg_w == pytest.approx(42.0) and rep.j_per_frame == pytest.approx(rep.energy_j / 3)
    assert monitor.samples()[0].rails == {"GPU0_BOARD": (42000.0, 42000.0)}
