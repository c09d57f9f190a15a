"""Documented figures are generated from the files that hold them, never typed in."""

from __future__ import annotations

import subprocess
import sys

from .conftest import PROJECT_ROOT


def test_readme_shipped_model_section_matches_the_active_model_card():
    res = subprocess.run([sys.executable, "docs/update_readme.py", "--check"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_experiments_summary_figures_match_the_results_files():
    res = subprocess.run([sys.executable, "docs/update_experiments.py", "--check"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
