"""Models kept in the case database, and the site's one governed active model.

A model folder is stored as one deterministic zip keyed by its sha256 (`model_archives`) with its card
(`stored_models`); every workstation on the database lists it and unpacks it on first use into its own
$CXR_HOME/site-models (a cache, verified by the hash), so nobody copies files. A site-adapted model lives only here.

The site's active model is changed by one governed action for every kind of model (cxr_core.site.activation), which
appends to `active_model_changes` and the audit trail here (`record_choice`). `model_for` is the one lookup of
"which model for this request": the model asked for, else the latest governed choice, else the registry's own
default; read on each request, so a change made on one workstation is every server's default at once, without a
restart. A site operating point stays with the model
it was set for (keyed by model id), so it never carries over to another model.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cases.db import ActiveModelChange, AuditEvent, ModelArchive, StoredModel
from ..cases.store import CaseStore
from ..errors import CXRError, ModelError
from ..fileio import fsync_dir
from ..model.card import ModelCard
from ..model.folder import ModelFolder
from ..model.registry import ModelEntry, Registry
from ..settings import current
from ..readers import signed

_ARCHIVE_MARK = ".archive-sha256"  # in an unpacked copy: the archive it came from


@dataclass(frozen=True)
class ActiveChoice:
    """The site's governed choice of model (None model_id: back to the registry's default)."""

    model_id: str | None
    author: str
    created: str
    details: dict[str, Any]


# ------------------------------------------------------------------------------------------------ storing models
def archive_folder(folder: Path) -> bytes:
    """The model folder as a zip with fixed order and timestamps: the same folder gives the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


def store_model(store: CaseStore, folder: Path, stored_by: str) -> str:
    """Keep the model folder in the case database (idempotent: a model id is stored once); its id."""
    folder, stored_by = Path(folder), signed(stored_by)
    card = ModelFolder(folder).card()
    with Session(store.engine) as session, session.begin():
        if session.get(StoredModel, card.model_id) is not None:
            return card.model_id
    data = archive_folder(folder)
    key = hashlib.sha256(data).hexdigest()
    with Session(store.engine) as session, session.begin():
        if session.get(ModelArchive, key) is None:
            session.add(ModelArchive(sha256=key, data=data))
            session.flush()
        session.add(StoredModel(model_id=card.model_id, archive_sha256=key, card=card.to_dict(),
                                parent_model_id=card.parent_model_id, stored_by=stored_by))
        session.add(AuditEvent(actor=stored_by, action="model-store", case_id=None,
                               model_id=card.model_id, details={"archive_sha256": key, "bytes": len(data),
                                                                "parent_model_id": card.parent_model_id}))
    return card.model_id


def stored_models(store: CaseStore) -> list[dict[str, Any]]:
    """The models kept in the case database, newest first: {model_id, created, parent_model_id, stored_by, card}."""
    with Session(store.engine) as session:
        rows = session.scalars(select(StoredModel).order_by(StoredModel.created.desc())).all()
        return [{"model_id": r.model_id, "created": r.created.isoformat(), "parent_model_id": r.parent_model_id,
                 "stored_by": r.stored_by, "card": ModelCard.from_dict(r.card)} for r in rows]


def unpack(store: CaseStore, model_id: str) -> Path:
    """This workstation's copy of a stored model (unpacked once, atomically, checked against its hash)."""
    root = current().layout.site_models
    target = root / model_id
    with Session(store.engine) as session:
        row = session.get(StoredModel, model_id)
        if row is None:
            raise ModelError(f"No model {model_id!r} in the case database.")
        key = row.archive_sha256
        mark = target / _ARCHIVE_MARK
        if mark.is_file() and mark.read_text().strip() == key:
            return target
        data = session.get(ModelArchive, key).data
    if hashlib.sha256(data).hexdigest() != key:
        raise ModelError(f"The stored files of model {model_id} are damaged (their hash does not match).")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".unpacking-{model_id}-"))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():  # only plain relative names: an archive never writes outside its folder
                if name.startswith("/") or ".." in Path(name).parts:
                    raise ModelError(f"The stored files of model {model_id} hold an unsafe path.")
            zf.extractall(tmp)
        (tmp / _ARCHIVE_MARK).write_text(key)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
        fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def sync(store: CaseStore | None) -> None:
    """Unpack every stored model this workstation has no current copy of (cheap when all are there)."""
    if store is None:
        return
    with Session(store.engine) as session:
        rows = session.execute(select(StoredModel.model_id, StoredModel.archive_sha256)).all()
    for model_id, key in rows:
        mark = current().layout.site_models / model_id / _ARCHIVE_MARK
        if not (mark.is_file() and mark.read_text().strip() == key):
            unpack(store, model_id)


# ------------------------------------------------------------------------------------------------ the active model
def active_choice(store: CaseStore | None) -> ActiveChoice | None:
    """The latest governed change of the site's active model (None: never changed here)."""
    if store is None:
        return None
    with Session(store.engine) as session:
        row = session.scalars(select(ActiveModelChange).order_by(ActiveModelChange.id.desc()).limit(1)).first()
        if row is None:
            return None
        return ActiveChoice(row.model_id, row.author, row.created.isoformat(), dict(row.details or {}))


def model_for(requested: str | None, store: CaseStore | None, registry: Registry | None = None) -> ModelEntry | None:
    """Which model a request uses, the one lookup every surface calls: `requested` as given (a model folder's
    path, or a model id, registered or kept in the case database and unpacked here), else the site's governed
    choice, else the registry's default (its ACTIVE pointer; None where no model is registered). `store`: the case
    store to consult (None: the registry alone decides)."""
    registry = registry or Registry()
    if requested and Path(requested).is_dir():
        folder = Path(requested)
        card = ModelFolder(folder).card()
        return ModelEntry(card.model_id, folder, card)
    if not requested:
        choice = active_choice(store)
        if choice is None or choice.model_id is None:
            return registry.active()
        requested = choice.model_id
    try:
        return registry.get(requested)
    except ModelError:
        if store is None or registry.site_root is None:
            raise
        with Session(store.engine) as session:
            if session.get(StoredModel, requested) is None:
                raise
        unpack(store, requested)
        return registry.get(requested)


def quiet_store() -> CaseStore | None:
    """The case store, or None where it does not open (the registry alone then says which model is active)."""
    try:
        return CaseStore.open()
    except CXRError:
        return None


def record_choice(store: CaseStore, model_id: str | None, reader: str, details: dict[str, Any]) -> ActiveChoice:
    """Append a governed change of the site's model (cxr_core.site.activation, its only caller) and its audit event."""
    with Session(store.engine) as session, session.begin():
        session.add(ActiveModelChange(model_id=model_id, author=reader, details=details))
        session.add(AuditEvent(actor=reader, action=f"model-{details['action']}", case_id=None, model_id=model_id,
                               details=details))
    choice = active_choice(store)
    assert choice is not None
    return choice
