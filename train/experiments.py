"""Experiments: several runs from one config (filled in by the experiments issue)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_experiment(path: str | Path) -> dict[str, Any] | None:
    """The [experiment] table of a config file, or None for a plain single-run config."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return raw.get("experiment")


def run_experiment(spec: dict[str, Any], base: Any, **kwargs: Any) -> None:
    from cxr_core.errors import ConfigError

    raise ConfigError(f"Experiment kind {spec.get('kind')!r} is not supported yet.")
