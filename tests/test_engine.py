"""TensorRT engine builder and loader: what can be checked without TensorRT or a GPU.

The sidecar checks, shape profiles, argument handling and the MissingDependency when TensorRT is absent.
Building and running engines is done on a GPU by benchmarks/gpu_check.sh.
"""
from __future__ import annotations

import argparse
import json
import sys

import pytest

from mambalitesr.errors import MissingDependency, UserError
from mambalitesr import formats
from mambalitesr.export import engine as eng
from mambalitesr.runtime.backends import engine_files
from mambalitesr.export.engine_cli import register_engine

onnx = pytest.importorskip("onnx")

GPU = {"name": "Orin", "compute_capability": "8.7"}
TRT = "10.3.0.30"


def fake_sidecar(plugin_sha="p" * 64, engine_sha="e" * 64):
    plugin = None if plugin_sha is None else {"name": "SelectiveScan", "version": "1", "library_version": "1.0.0",
                                              "sha256": plugin_sha, "file": "libmambalitesr_plugins.so"}
    return eng.make_sidecar(
        engine_path="m.engine", engine_sha256=engine_sha, engine_bytes=123, tensorrt_version=TRT, gpu=GPU,
        precision="fp16", inputs={"lr": {"shape": [-1, 3, -1, -1], "dtype": "DataType.FLOAT"}},
        outputs={"sr": {"shape": [-1, 3, -1, -1], "dtype": "DataType.FLOAT"}},
        profile=((1, 3, 64, 64), (1, 3, 240, 320), (1, 3, 480, 640)), plugin=plugin, onnx_path="m.onnx",
        onnx_sha256="o" * 64, plugin_nodes=8)


def check(sidecar, **over):
    env = {"tensorrt_version": TRT, "gpu": dict(GPU), "engine_sha256": "e" * 64, "plugin_sha256": "p" * 64}
    env.update(over)
    return formats.check_sidecar(sidecar, **env)


def test_matching_sidecar_passes_and_round_trips_json():
    sidecar = json.loads(json.dumps(fake_sidecar()))
    assert check(sidecar) == []
    assert sidecar["profile"] == {"min": [1, 3, 64, 64], "opt": [1, 3, 240, 320], "max": [1, 3, 480, 640]}


@pytest.mark.parametrize("over, words", [
    ({"tensorrt_version": "10.7.0"}, "TensorRT 10.3.0.30, this is TensorRT 10.7.0"),
    ({"gpu": {"name": "NVIDIA H200", "compute_capability": "9.0"}}, "this GPU is NVIDIA H200"),
    ({"gpu": {"name": "Orin", "compute_capability": "8.6"}}, "compute capability 8.6"),
    ({"engine_sha256": "x" * 64}, "sha256 differs"),
    ({"plugin_sha256": "q" * 64}, "plugin library differs"),
    ({"plugin_sha256": None}, "pass the plugin library"),
])
def test_each_mismatch_is_named(over, words):
    problems = check(fake_sidecar(), **over)
    assert len(problems) == 1 and words in problems[0], problems


def test_all_mismatches_are_listed_together():
    problems = check(fake_sidecar(), tensorrt_version="10.7.0", engine_sha256="x" * 64, plugin_sha256=None)
    assert len(problems) == 3


def test_engine_without_plugin_needs_no_plugin_library():
    assert check(fake_sidecar(plugin_sha=None), plugin_sha256=None) == []


@pytest.mark.parametrize("sidecar", [[], {"format": "other"}, {**fake_sidecar(), "format_version": 99},
                                     {k: v for k, v in fake_sidecar().items() if k != "gpu"}])
def test_foreign_or_damaged_sidecar_is_refused(sidecar):
    assert check(sidecar)


def test_parse_shape_and_profile():
    assert eng.parse_shape("1x3x240x320") == (1, 3, 240, 320)
    assert eng.parse_shape((2, 3, 8, 8)) == (2, 3, 8, 8)
    assert eng.parse_shape(None) is None
    for bad in ("1x3xHx320", "1x0x2x2", "", "-1x3"):
        with pytest.raises(UserError):
            eng.parse_shape(bad)
    assert eng.resolve_profile() is None
    assert eng.resolve_profile(opt_shape="1x3x8x8") == ((1, 3, 8, 8),) * 3
    assert eng.resolve_profile("1x3x8x8", None, "1x3x16x16") == ((1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 16, 16))
    with pytest.raises(UserError, match="min <= opt <= max"):
        eng.resolve_profile("1x3x32x32", "1x3x16x16", "1x3x64x64")
    with pytest.raises(UserError, match="same rank"):
        eng.resolve_profile("1x3x8x8", None, "1x3x8")


def identity_onnx(path, scan_node=False):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 3])
    if scan_node:
        node = helper.make_node("SelectiveScan", ["x"] * 8, ["y"], domain="mambalitesr", directions=1, d_state=4,
                                delta_softplus=1)
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("mambalitesr", 1)]
    else:
        node = helper.make_node("Identity", ["x"], ["y"])
        opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, even where installed


def test_build_without_tensorrt_names_it(tmp_path, no_tensorrt):
    with pytest.raises(MissingDependency) as err:
        eng.build_engine(identity_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")
    msg = str(err.value)
    assert "TensorRT Python bindings not found" in msg and "docker/jetpack-r36.4" in msg
    assert "python3-libnvinfer" in msg
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


def test_build_refuses_bad_inputs_before_tensorrt(tmp_path, no_tensorrt):
    with pytest.raises(UserError, match="no such ONNX file"):
        eng.build_engine(tmp_path / "missing.onnx", tmp_path / "m.engine")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        eng.build_engine(tmp_path / "junk.onnx", tmp_path / "m.engine")
    with pytest.raises(UserError, match="1 mambalitesr::SelectiveScan nodes: pass --plugin"):
        eng.build_engine(identity_onnx(tmp_path / "s.onnx", scan_node=True), tmp_path / "m.engine")
    with pytest.raises(UserError, match="min <= opt <= max"):
        eng.build_engine(identity_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", min_shape="1x4x4x4",
                         max_shape="1x4x2x2")


def test_load_engine_errors(tmp_path, no_tensorrt):
    engine = tmp_path / "m.engine"
    with pytest.raises(UserError, match="no such engine file"):
        engine_files.load_engine(engine)
    engine.write_bytes(b"plan")
    with pytest.raises(UserError, match="no sidecar"):
        engine_files.load_engine(engine, plugin=tmp_path / "lib.so")
    formats.sidecar_path(engine).write_text("{not json")
    with pytest.raises(UserError, match="unreadable sidecar"):
        engine_files.load_engine(engine)
    formats.sidecar_path(engine).write_text(json.dumps(fake_sidecar()))
    with pytest.raises(MissingDependency, match="TensorRT Python bindings not found"):
        engine_files.load_engine(engine)


def test_plugin_library_version_of_missing_library(tmp_path):
    from mambalitesr.trt_runtime import plugin_library_version

    with pytest.raises(MissingDependency, match="cannot load the plugin library"):
        plugin_library_version(tmp_path / "libnothing.so")


def test_cli_parses_and_reports_user_errors(tmp_path, no_tensorrt):
    parser = argparse.ArgumentParser(prog="mambalitesr export")
    register_engine(parser.add_subparsers(dest="what"))
    argv = ["engine", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.engine"), "--fp16",
            "--plugin", str(tmp_path / "lib.so"), "--min-shape", "1x3x8x8", "--max-shape", "1x3x16x16"]
    with pytest.raises(SystemExit):  # inputs are checked while parsing: no such ONNX file, no such plugin
        parser.parse_args(argv)
    identity_onnx(tmp_path / "m.onnx")
    (tmp_path / "lib.so").write_bytes(b"\x7fELF")
    args = parser.parse_args(argv)
    assert (args.fp16, args.plugin, args.min_shape, args.opt_shape) == (True, tmp_path / "lib.so", "1x3x8x8", None)
    with pytest.raises(MissingDependency):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["engine", "m.onnx"])  # -o is required


def test_cli_command_when_export_group_is_registered(tmp_path, capsys, no_tensorrt):
    from mambalitesr import cli

    if "export" not in cli.COMMANDS:
        pytest.skip("the `export` command group is not registered in mambalitesr.cli yet")
    code = cli.main(["export", "engine", str(identity_onnx(tmp_path / "m.onnx")), "-o", str(tmp_path / "m.engine")])
    assert code == MissingDependency.exit_code
    assert "TensorRT Python bindings not found" in capsys.readouterr().err


def test_a_fused_form_graph_is_refused_before_tensorrt_is_needed(tmp_path):
    """MambaMixer nodes have no TensorRT plugin: the builder names the plugin form instead of failing in the parser."""
    from mambalitesr.runtime.backends.shipped import shipped_onnx_path

    fused = shipped_onnx_path("mambalitesr_x4", "fused")
    with pytest.raises(UserError, match=r"mambalitesr::MambaMixer nodes, which only ONNX Runtime.*--scan plugin"):
        eng.build_engine(fused, tmp_path / "m.engine")
    assert eng.count_plugin_nodes(shipped_onnx_path("mambalitesr_x4", "plugin")) == 8
    assert not (tmp_path / "m.engine").exists()
