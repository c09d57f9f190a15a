"""The model registry: a folder of model folders plus a pointer to its default one.

Three folders are read: the shipped models (`CXR_REGISTRY`, default assets/models in the checkout, never written
by the app) and the user's own ($CXR_HOME/models), where the Training page and `python -m train` register, and
this workstation's copies of the models kept in the case database ($CXR_HOME/site-models, unpacked by cxr_core.site.models, which also owns the site's governed
active model: that choice, when made, outranks the pointer here; it is the only way a site changes its model). A
Registry given one explicit root reads and writes that root only, and only there is a default set (`python -m train
--registry assets/models --activate` is how the shipped model is made and made the default).

    <root>/<model_id>/   a model folder (cxr_core.model.folder.ModelFolder owns its layout); the folder's name is
                         its card's model_id, the one identity cases, evaluations and DICOM results carry
    <root>/ACTIVE        {"model_id": ...}

Writes are atomic: a model folder is assembled under a hidden temporary name, fsynced and then
renamed into place; ACTIVE is replaced with os.replace. A half-written model is never listed and
the active model only changes by an explicit `set_default`. Models load with `safe_mode=True`.
A registered folder is never written to afterwards (evaluations live under $CXR_HOME), except by
the explicit maintenance commands `fit-ood` and `fit-presentation`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .card import ModelCard, model_id_is_valid
from ..errors import ModelError, RegistryError, StorageError
from ..fileio import fsync_dir, os_message, write_json_atomic
from .folder import ModelFolder
from ..settings import current

ACTIVE_FILE = "ACTIVE"


def default_registry_root() -> Path:
    return current().registry


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its id is its folder's name, which its card states (a folder registered before
    `register` wrote the id is read under the folder's name)."""

    model_id: str
    path: Path
    card: ModelCard

    @property
    def folder(self) -> ModelFolder:
        return ModelFolder(self.path)

    @property
    def display_name(self) -> str:
        return self.card.display_name

    @property
    def passed_gate(self) -> bool:
        return self.card.passed_gate


class Registry:
    """List, register and load models, and set a release's default: the shipped folder and the user's own (see above)."""

    def __init__(self, root: str | Path | None = None, user_root: str | Path | None = None):
        self.site_root: Path | None = None  # models unpacked from the case database (cxr_core.site.models)
        if root is not None:
            self.root, self.user_root = Path(root), Path(user_root) if user_root is not None else None
        else:
            self.root, self.user_root = default_registry_root(), current().layout.models
            self.site_root = current().layout.site_models
        self.write_root = self.user_root or self.root  # where register writes

    # ---- reading
    def list(self) -> list[ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        for root in (self.root, self.user_root, self.site_root):
            if root is None or not root.is_dir():
                continue
            for folder in sorted(root.iterdir()):
                if folder.name.startswith(".") or not folder.is_dir() or folder.name in entries:
                    continue
                card = _read_card(folder)
                if card is not None and ModelFolder(folder).model_file.is_file():
                    if card.model_id != folder.name:  # registered before register() wrote the id: the folder names it
                        card = card.with_fields(model_id=folder.name)
                    entries[folder.name] = ModelEntry(folder.name, folder, card)
        return list(entries.values())

    def get(self, model_id: str) -> ModelEntry:
        for entry in self.list():
            if entry.model_id == model_id:
                return entry
        known = ", ".join(e.model_id for e in self.list()) or "none"
        where = " or ".join(repr(str(r)) for r in (self.root, self.user_root) if r is not None)
        raise ModelError(f"No model {model_id!r} in the registry at {where} (registered: {known}).")

    def active(self) -> ModelEntry | None:
        """The registry's default: the model its ACTIVE pointer names (the shipped registry's, set at release).
        Without a pointer: the most recently created model that passed its gate (None when there is none). A damaged
        or dangling pointer is an error, never a silent substitute. One listing of the folders."""
        entries = {e.model_id: e for e in self.list()}
        pointer = self.root / ACTIVE_FILE
        if not pointer.exists():
            listed = sorted((e for e in entries.values() if e.passed_gate), key=lambda e: e.card.created)
            return listed[-1] if listed else None
        try:
            model_id = json.loads(pointer.read_text(encoding="utf-8")).get("model_id")
        except (OSError, ValueError, AttributeError):
            model_id = None
        if isinstance(model_id, str) and model_id in entries:
            return entries[model_id]
        raise RegistryError(f"The active-model pointer {str(pointer)!r} is damaged or names a model that is not registered "
                            f"({model_id!r}). Repair it (a release sets it with `python -m train --registry DIR --activate`), or "
                            "pass --model.")

    def active_id(self) -> str | None:
        entry = self.active()
        return entry.model_id if entry else None

    # ---- writing
    def register(self, source_dir: str | Path, model_id: str | None = None) -> ModelEntry:
        """Copy a finished model folder in atomically, under its card's model_id (or `model_id`, which the copy's
        card then states: one identity for the folder, the card, the cases and the DICOM results). Does not change
        the active model."""
        source_dir = Path(source_dir)
        card = _read_card(source_dir)
        if card is None or not ModelFolder(source_dir).model_file.is_file():
            raise RegistryError(f"{str(source_dir)!r} is not a complete model folder ({ModelFolder.MODEL} and a valid "
                                f"{ModelFolder.CARD}).")
        model_id = card.model_id if model_id is None else model_id
        if not model_id_is_valid(model_id):
            raise RegistryError(f"Model id {model_id!r} may only contain letters, digits, '-', '_' and '.'.")
        root = self.write_root
        target = root / model_id
        if target.exists() or model_id in {e.model_id for e in self.list()}:
            raise RegistryError(f"A model {model_id!r} is already registered.")
        tmp = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".incoming-{model_id}-"))
            shutil.copytree(source_dir, tmp, dirs_exist_ok=True)
            if card.model_id != model_id:
                ModelFolder(tmp).write_card(card.with_fields(model_id=model_id))
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            os.rename(tmp, target)
            fsync_dir(root)
        except (OSError, StorageError) as exc:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise RegistryError(os_message(exc, root) if isinstance(exc, OSError) else str(exc)) from None
        return self.get(model_id)

    def set_default(self, model_id: str) -> None:
        """Make `model_id` this registry's default (its ACTIVE pointer): a release step for a registry named by its
        folder (`python -m train --registry assets/models --activate` ships the default model). A site changes the
        model it uses only by the governed action (cxr_core.site.activation), so the deployment's own registry is
        refused here. A model that failed its validation gate cannot be the default."""
        if self.user_root is not None or self.site_root is not None:  # the deployment's registry
            raise RegistryError("The site's model is changed by a named reader on evidence from the site's own films: "
                                "`python -m cxr_core models --activate MODEL_ID --reader NAME --evidence DATA_DIR`.")
        entry = self.get(model_id)  # must exist and be complete
        if not entry.passed_gate:
            gate = entry.card.validation_gate or {}
            raise RegistryError(f"{model_id} failed its validation gate (AUC {gate.get('auc', float('nan')):.3f} < "
                                f"{gate.get('min_val_auc')}): it cannot be the active model.")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.root / ACTIVE_FILE, {"model_id": model_id})
        except StorageError as exc:
            raise RegistryError(f"The active model cannot be changed: {exc}") from None
        except OSError as exc:
            raise RegistryError(os_message(exc, self.root)) from None


def _read_card(folder: Path) -> ModelCard | None:
    try:
        return ModelFolder(folder).card()
    except ModelError:
        return None
