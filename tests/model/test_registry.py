"""Registry: atomic registration and activation, safe loading, clear errors on bad disks."""

from __future__ import annotations

import errno
import os

import pytest

from cxr_core.errors import ModelError, RegistryError
from cxr_core.fileio import write_atomic
from cxr_core.model.registry import Registry


def test_tiny_model_is_registered_and_active(tiny_registry):
    entries = tiny_registry.list()
    assert len(entries) == 1 and tiny_registry.active_id() == entries[0].model_id
    card = entries[0].card
    assert 0 < card.threshold < 1 and card.temperature > 0 and card.model_id == entries[0].model_id
    for value in (card.intended_use, card.internal_validation, card.data, card.config, card.reproduce_command,
                  card.git_commit):
        assert value
    assert (entries[0].path / "MODEL_CARD.md").read_text().startswith("# Model card")


def test_register_copy_and_set_default_is_explicit(tiny_registry, tmp_path):
    reg = Registry(tmp_path / "reg")
    src = tiny_registry.active().path
    reg.register(src, "m1")
    reg.set_default("m1")
    reg.register(src, "m2")
    assert reg.active_id() == "m1"  # registering m2 did not switch
    reg.set_default("m2")
    assert reg.active_id() == "m2"
    with pytest.raises(RegistryError, match="already registered"):
        reg.register(src, "m1")
    with pytest.raises(ModelError, match="No model 'nope'"):
        reg.set_default("nope")


def test_half_written_models_are_never_listed(tiny_registry, tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.register(tiny_registry.active().path, "good")
    (reg.root / ".incoming-partial-123").mkdir()
    partial = reg.root / "partial"
    partial.mkdir()
    (partial / "model.keras").write_bytes(b"half")  # no model card: incomplete
    assert [e.model_id for e in reg.list()] == ["good"]


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_disk_full_or_read_only_give_clear_errors_and_change_nothing(tiny_registry, tmp_path, monkeypatch, code, message):
    reg = Registry(tmp_path / "reg")
    reg.register(tiny_registry.active().path, "m1")
    reg.set_default("m1")
    before = sorted(os.listdir(reg.root))

    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(RegistryError, match=message):
        reg.register(tiny_registry.active().path, "m2")
    with pytest.raises(RegistryError, match=message):
        reg.set_default("m1")
    monkeypatch.undo()
    assert sorted(os.listdir(reg.root)) == before and reg.active_id() == "m1"


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "f.json"
    write_atomic(target, b"1")
    write_atomic(target, b"2")
    assert target.read_bytes() == b"2" and os.listdir(tmp_path) == ["f.json"]


def test_models_load_in_safe_mode_and_refuse_lambda_layers(tmp_path):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda x: x * 2)(inp))
    model.save(tmp_path / "evil.keras")
    from cxr_core.model.keras_import import load_keras_model

    with pytest.raises(ModelError, match="cannot be loaded"):
        load_keras_model(tmp_path / "evil.keras")


def _folder_digest(folder):
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
    return h.hexdigest()


def test_evaluate_and_the_pages_leave_a_registered_model_folder_unchanged(tiny_registry, tiny_data, own_app_home,
                                                                          monkeypatch):
    from streamlit.testing.v1 import AppTest

    from cxr_core.validation.evaluation import evaluate_folder, saved_evaluations

    from tests.conftest import PROJECT_ROOT

    entry = tiny_registry.active()
    before = _folder_digest(entry.path)
    result = evaluate_folder(entry.path, tiny_data, n_boot=20)
    assert result.saved_to is not None and own_app_home in result.saved_to.parents
    assert len(saved_evaluations(entry.path, entry.model_id)) == 2  # internal validation + this one
    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    for page in ("app_pages/dashboards.py", "app_pages/viewer.py", "app_pages/training.py", "app_pages/experiments.py"):
        at.switch_page(page).run()
        assert not at.exception
    assert _folder_digest(entry.path) == before


def test_a_damaged_active_pointer_is_an_error_not_a_silent_substitute(tiny_data, tmp_path):
    import json

    from cxr_core.errors import RegistryError

    registry = Registry(tmp_path / "reg")
    assert registry.active_id() is None
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "ACTIVE").write_text("{not json")
    with pytest.raises(RegistryError, match="damaged"):
        registry.active_id()
    (tmp_path / "reg" / "ACTIVE").write_text(json.dumps({"model_id": "gone"}))
    with pytest.raises(RegistryError, match="'gone'"):
        registry.active()
