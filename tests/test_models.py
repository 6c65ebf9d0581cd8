"""Every registry variant builds, runs, counts its size exactly; the teacher loads its published weights."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

from conftest import TEACHER_WEIGHTS, needs_teacher
from mambalitesr.errors import UserError
from mambalitesr.models import create_model, list_models
from mambalitesr.models.complexity import analytic_macs, analytic_params, count_params, measure_macs
from mambalitesr.models.lowrank import LowRankLinear, factorize
from mambalitesr.models.registry import get_entry
from mambalitesr.models.weights_io import save_weights


@pytest.mark.parametrize("name", list_models())
def test_variant_builds_and_upscales(name):
    model = create_model(name, pretrained=False)
    scale = model.config.scale
    y = model(torch.rand(1, 3, 7, 5))
    assert y.shape == (1, 3, 7 * scale, 5 * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("layout", ["channel_major", "fused_node"])
def test_graph_layouts_are_the_same_mixer(name, layout):
    """The layouts the plugin-form export (MambaMixer.forward_graph_channel_major) and the fused-form export
    (forward_graph_fused on the reference core) trace equal forward."""
    from mambalitesr.models.mixer import MambaMixer
    from mambalitesr.testing import assert_close

    torch.manual_seed(0)
    model = create_model(name, pretrained=False, scan_backend="chunked")
    mixer = next(m for m in model.modules() if isinstance(m, MambaMixer))
    tokens = torch.randn(2, 7 * 5, model.config.embed_dim)  # (B, L, C)
    with torch.no_grad():
        want = mixer(tokens, 7, 5)
        mixer.graph_layout = layout
        if layout == "fused_node" and mixer.directions != 1:
            with pytest.raises(ValueError, match="scans one direction"):
                mixer(tokens, 7, 5)
            return
        got = mixer(tokens, 7, 5)
    assert_close(got, want, what=f"{name} {layout} graph layout")


@pytest.mark.parametrize("name", list_models())
def test_analytic_size_matches_counted(name):
    cfg = get_entry(name).config
    model = create_model(name, pretrained=False)
    assert analytic_params(cfg) == count_params(model)
    assert analytic_macs(cfg, 9, 16) == measure_macs(model, 9, 16)


def test_student_budget():
    assert count_params(create_model("mambalitesr_x4", pretrained=False)) <= 150_000
    assert count_params(create_model("dvmsr_x4", pretrained=False)) == 424_428


def test_student_projections_are_low_rank():
    student = create_model("mambalitesr_x4", pretrained=False)
    mixer = student.layers[0].residual_group.blocks[0].mixer
    assert isinstance(mixer.in_proj, LowRankLinear) and isinstance(mixer.out_proj, LowRankLinear)
    assert mixer.in_proj.rank == student.config.rank


@needs_teacher
def test_teacher_loads_published_weights_strictly():
    teacher = create_model("dvmsr_x4", TEACHER_WEIGHTS)
    y = teacher(torch.rand(1, 3, 8, 8))
    assert y.shape == (1, 3, 32, 32)


def test_factorize_is_the_truncated_svd():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40, bias=False)
    for rank in (1, 5, 24):
        low = factorize(linear, rank)
        err = torch.linalg.matrix_norm(low.weight - linear.weight)
        s = torch.linalg.svdvals(linear.weight)
        assert torch.allclose(err, s[rank:].square().sum().sqrt(), atol=1e-5)  # Eckart-Young
        x = torch.randn(3, 24)
        assert torch.allclose(low(x), x @ low.weight.T, atol=1e-5)


def test_shipped_weights_missing_is_an_error(monkeypatch, tmp_path):
    from mambalitesr.models import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(UserError, match="shipped weights"):
        create_model("mambalitesr_x4")


def test_weights_round_trip_and_config_mismatch_refused(tmp_path):
    model = create_model("test_x4", pretrained=False)
    path = tmp_path / "w.safetensors"
    save_weights(model, path, "test_x4")
    again = create_model("test_x4", path)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="another config"):
        create_model("test_xs4_x4", path)


def test_weights_file_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    with pytest.raises(UserError, match="refused"):
        create_model("test_x4", path)


def test_wrong_shapes_are_refused(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv_first.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="do not fit"):
        create_model("test_x4", path)


def test_unknown_model():
    with pytest.raises(UserError, match="unknown model"):
        create_model("nope")


def test_models_command_lists_every_variant(capsys):
    from mambalitesr.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert f"{count_params(create_model('mambalitesr_x4', pretrained=False)):,}" in out


@pytest.mark.parametrize("name", ["mambalitesr_x4", "mambalitesr_xs4_x4"])
def test_student_trains_with_the_native_scan_and_its_gradients_match_chunked(name):
    """One batch through the full student: the native C scan gives chunked's output and gradients."""
    torch.manual_seed(0)
    model = create_model(name, pretrained=False).train()
    x = torch.rand(2, 3, 12, 10)
    grads = {}
    for backend in ("chunked", "native"):
        model.set_scan_backend(backend)
        model.zero_grad()
        y = model(x)
        y.square().mean().backward()
        grads[backend] = (y.detach(), {k: p.grad.clone() for k, p in model.named_parameters()})
    from mambalitesr.testing import assert_close

    assert_close(grads["native"][0], grads["chunked"][0], what="output")
    for key, g in grads["chunked"][1].items():
        assert_close(grads["native"][1][key], g, rtol=1e-4, what=key)


def test_a_forward_does_not_import_the_onnx_exporter():
    """Importing torch.onnx costs seconds; the runtime's first frame must not pay it to learn it is not exporting."""
    code = ("import sys, torch\n"
            "from mambalitesr.models.registry import create_model\n"
            "m = create_model('test_x4', pretrained=False, scan_backend='native').eval()\n"
            "with torch.no_grad():\n"
            "    m(torch.rand(1, 3, 12, 16))\n"
            "print('torch.onnx' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
