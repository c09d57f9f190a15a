"""The one way a figure and its 95 % interval are written (cxr_core.formatting)."""

from __future__ import annotations

from cxr_core.formatting import ci, with_ci


def test_an_interval_in_three_decimals_or_what_stands_for_none():
    assert ci([0.88, 0.9404]) == "[0.880, 0.940]"
    assert ci(None) == ci([]) == "n/a" and ci(None, missing="") == ""


def test_a_figure_with_its_interval_or_alone():
    assert with_ci(0.9123, [0.88, 0.94]) == "0.912 [0.880, 0.940]"
    assert with_ci(0.9123, None) == with_ci(0.9123, []) == "0.912"
