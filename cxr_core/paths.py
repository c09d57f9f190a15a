"""$CXR_HOME's layout, spelled in one class (as cxr_core.model.folder.ModelFolder spells a model folder's): where the
app keeps what it writes at run time, by default the platform's user data folder (platformdirs, see settings.py),
never the git checkout and never a registered model's folder. Read it as `current().layout`.

    cases.db               the case database, where CXR_DATABASE_URL names none
    models/                the user's own trained models (the Training page and `python -m train` register here)
    site-models/           this workstation's unpacked copies of the models kept in the case database (a cache)
    runs/                  training runs (or CXR_RUNS_DIR); runs/fit-ood/<model id>/ the guards' refits
    site-runs/             one folder per site adaptation (a RunFolder)
    evaluations/<model>/   saved evaluations of one model, keyed by its id (the model folder never changes)
    exports/               where an export given as a relative path goes
    images/                case pictures before migration 0004 (now in the case database)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path
    runs_dir: Path | None = None  # CXR_RUNS_DIR: training runs elsewhere

    @property
    def cases_db(self) -> Path:
        return self.root / "cases.db"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def site_models(self) -> Path:
        return self.root / "site-models"

    @property
    def runs(self) -> Path:
        return self.runs_dir or self.root / "runs"

    @property
    def site_runs(self) -> Path:
        return self.root / "site-runs"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def legacy_images(self) -> Path:
        return self.root / "images"

    def evaluations(self, model_id: str) -> Path:
        return self.root / "evaluations" / model_id

    def guard_refits(self, model_id: str) -> Path:
        """Where `fit-ood` keeps the state of a refit of one model's guards (an interrupted fit resumes)."""
        return self.runs / "fit-ood" / model_id

    def export_folder(self, path: str | Path) -> Path:
        """The folder an export writes to: an absolute path (or ~) as given, a relative one under exports/ (never
        the working directory: it may be the checkout)."""
        given = Path(str(path).strip()).expanduser()
        return given if given.is_absolute() else self.exports / given
