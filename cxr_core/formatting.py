"""How a figure with its 95 % interval is written, the same on every surface (card, README, CLI, sidebar, PDF)."""

from __future__ import annotations

from typing import Sequence


def ci(interval: Sequence[float] | None, missing: str = "n/a") -> str:
    """A 95 % interval as "[0.880, 0.940]" (three decimals, like every figure), or `missing` without one."""
    return missing if interval is None or len(interval) == 0 else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def with_ci(value: float, interval: Sequence[float] | None) -> str:
    """A figure and its interval, "0.912 [0.880, 0.940]"; the figure alone without one."""
    return f"{value:.3f}" + (f" {ci(interval)}" if interval is not None and len(interval) else "")
