"""The deployment's settings: one frozen object, read from the environment in one place (`Settings.from_env`).

Every surface (CLI, app, listener, benches) asks `current()` instead of reading `os.environ` itself, so a
setting has one name, one default and one validity check, and a bad value is one clear error.

    CXR_HOME                  user data: cases.db, evaluations, runs, user-trained models
    CXR_DATABASE_URL          the case database (default SQLite at $CXR_HOME/cases.db)
    CXR_STORE_IDENTIFIERS     "1": keep file names, patient identifiers and accession numbers with cases
    CXR_REGISTRY              the shipped model registry (default assets/models in the checkout)
    CXR_RUNS_DIR              training runs (default $CXR_HOME/runs)
    CXR_WORKLIST_REFRESH_S    how often the Worklist page refreshes itself, seconds (0: never; default 10)
    CXR_PACS_URL              the DICOMweb URL the PACS page starts with
    CXR_PACS_PASSWORD         the PACS password (never on a command line)
    CXR_DATA_DIR              the dataset folder the Dashboards and Training pages start with
    CXR_SITE_MIN_PER_CLASS    a site operating point needs a local evaluation with this many images per class (50)
    CXR_SITE_SENSITIVITY_FLOOR  ... and the lower 95 % bound of sensitivity at it at least this (0.90); a site-adapted
                              model's activation needs the same of its local-validation sensitivity
    CXR_READER_HEADER         a trusted reverse-proxy header naming the signed-in reader (e.g. X-Forwarded-User);
                              unset: each reader types a name once per browser session
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .errors import ConfigError
from .paths import Home
import platformdirs

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: the one anchor for its files
SHIPPED_MODELS = PROJECT_ROOT / "assets" / "models"  # read-only, except `python -m train --registry assets/models`


@dataclass(frozen=True)
class SitePointPolicy:
    """The deployment's rules for a site operating point."""

    min_per_class: int = 50
    sensitivity_floor: float = 0.90

    def __post_init__(self) -> None:
        if not 1 <= int(self.min_per_class) <= 100_000:
            raise ConfigError(f"min_per_class {self.min_per_class!r} is invalid: expected a whole number from 1.")
        if not 0.0 < float(self.sensitivity_floor) < 1.0:
            raise ConfigError(f"sensitivity floor {self.sensitivity_floor!r} is invalid: expected a number in (0, 1).")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    store_identifiers: bool = False
    registry: Path = SHIPPED_MODELS
    runs_dir: Path | None = None
    worklist_refresh_s: float = 10.0
    pacs_url: str = ""
    pacs_password: str | None = None
    data_dir: str = ""
    reader_header: str = ""
    site_min_per_class: int = 50
    site_sensitivity_floor: float = 0.90

    def __post_init__(self) -> None:
        self.site_policy  # validates the site point rules now, not when a site point is first set
        if not 0.0 <= self.worklist_refresh_s <= 3600.0:
            raise ConfigError(f"CXR_WORKLIST_REFRESH_S {self.worklist_refresh_s!r} is invalid: expected seconds "
                              "from 0 (never) to 3600.")

    @property
    def site_policy(self) -> SitePointPolicy:
        return SitePointPolicy(self.site_min_per_class, self.site_sensitivity_floor)

    @property
    def layout(self) -> Home:
        """$CXR_HOME's folders (cxr_core.paths.Home owns them)."""
        return Home(self.home, self.runs_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env["CXR_HOME"]).expanduser() if env.get("CXR_HOME") else _platform_home()
        refresh = env.get("CXR_WORKLIST_REFRESH_S", "10")
        try:
            refresh_s = float(refresh)
        except ValueError:
            raise ConfigError(f"CXR_WORKLIST_REFRESH_S {refresh!r} is invalid: expected a number of seconds.") from None
        minimum, floor = env.get("CXR_SITE_MIN_PER_CLASS", "50"), env.get("CXR_SITE_SENSITIVITY_FLOOR", "0.90")
        try:
            min_per_class, sensitivity_floor = int(minimum), float(floor)
        except ValueError:
            raise ConfigError(f"CXR_SITE_MIN_PER_CLASS {minimum!r} or CXR_SITE_SENSITIVITY_FLOOR {floor!r} is invalid: "
                              "expected a whole number and a number in (0, 1).") from None
        flag = env.get("CXR_STORE_IDENTIFIERS", "")
        if flag not in ("", "0", "1"):
            raise ConfigError(f"CXR_STORE_IDENTIFIERS {flag!r} is invalid: expected 1 (keep identifiers) or 0.")
        return cls(home=home,
                   database_url=env.get("CXR_DATABASE_URL") or f"sqlite:///{Home(home).cases_db}",
                   store_identifiers=flag == "1",
                   registry=Path(env["CXR_REGISTRY"]) if env.get("CXR_REGISTRY") else SHIPPED_MODELS,
                   runs_dir=Path(env["CXR_RUNS_DIR"]) if env.get("CXR_RUNS_DIR") else None,
                   worklist_refresh_s=refresh_s, pacs_url=env.get("CXR_PACS_URL", ""),
                   pacs_password=env.get("CXR_PACS_PASSWORD") or None, data_dir=env.get("CXR_DATA_DIR", ""),
                   reader_header=env.get("CXR_READER_HEADER", "").strip(), site_min_per_class=min_per_class,
                   site_sensitivity_floor=sensitivity_floor)


def current() -> Settings:
    """The settings as the environment says now (cheap: read on every call, so a test's or a bench's change
    of environment is seen at once)."""
    return Settings.from_env()


def _platform_home() -> Path:
    return Path(platformdirs.user_data_dir("cxr-assistant", appauthor=False))
