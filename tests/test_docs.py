"""Documented figures are generated from the files that hold them, never typed in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


def test_readme_shipped_model_section_matches_the_active_model_card():
    res = subprocess.run([sys.executable, "docs/update_readme.py", "--check"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_readmes_dicom_report_tree_is_what_the_code_writes():
    """docs/dicom/sr_tree.txt (shown in the README) is dsrdump's tree of the report the code writes today for its
    example film: regenerated and compared, the model's measured numbers aside."""
    import shutil

    from tests.conftest import shared_data_or_skip

    if not shutil.which("dsrdump"):
        pytest.skip("dsrdump is not installed (Debian: apt-get install dcmtk)")
    shared_data_or_skip()
    res = subprocess.run([sys.executable, "docs/sr_tree.py", "--check"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, res.stdout + res.stderr


def test_experiments_summary_figures_match_the_results_files():
    res = subprocess.run([sys.executable, "docs/update_experiments.py", "--check"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_bench_readme_matches_the_saved_results():
    res = subprocess.run([sys.executable, "bench/update_readme.py", "--check"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_bench_readme_check_catches_an_edited_figure(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_update_readme", PROJECT_ROOT / "bench" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake = tmp_path / "bench"
    (fake / "results").mkdir(parents=True)
    for f in (PROJECT_ROOT / "bench" / "results").glob("*.txt"):
        (fake / "results" / f.name).write_text(f.read_text())
    monkeypatch.setattr(module, "HERE", fake)
    (fake / "README.md").write_text(module.render())
    assert module.main(["--check"]) == 0
    (fake / "README.md").write_text(module.render().replace("batch_predict_throughput_img_per_s: ", "batch_predict_throughput_img_per_s: 9"))
    assert module.main(["--check"]) == 1
