"""Models kept in the case database, and the site's one governed active model.

A model folder is stored as one deterministic zip keyed by its sha256 (`model_archives`) with its card
(`stored_models`); every workstation on the database lists it and unpacks it on first use into its own
$CXR_HOME/site-models (a cache, verified by the hash), so nobody copies files. A site-adapted model lives only here.

The site's active model is one governed action for every kind of model (shipped, user-trained, site-adapted):
`activate_model` checks the gate (`activation_refusals`), needs a named reader, stores the model's files in the
database, appends to `active_model_changes` and the audit trail; `revert_active_model` returns the site to the
model active before. `active_entry` is what every surface asks for "the model in use when none is chosen": the
latest governed choice, else the registry's own default; read on each request, so a change made on one
workstation is every server's default at once, without a restart. `resolve_model_dir` turns a command's or script's
model argument (a folder, an id, or none: the active model) into a folder. A site operating point stays with the model
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
from ..model.registry import ModelEntry, Registry, model_dir
from ..settings import SitePointPolicy, current
from .evidence import NON_INFERIORITY_MARGIN

# The floor of every validation gate for the site's active model: a config or budget may ask for more, never less
# (a tiny run, whatever its own gate said, stays an experiment).
ACTIVATION_MIN_AUC = 0.90
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
    folder = Path(folder)
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
                                parent_model_id=card.parent_model_id, stored_by=stored_by.strip() or "unsigned"))
        session.add(AuditEvent(actor=stored_by.strip() or "unsigned", action="model-store", case_id=None,
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
    root = current().site_models
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
        mark = current().site_models / model_id / _ARCHIVE_MARK
        if not (mark.is_file() and mark.read_text().strip() == key):
            unpack(store, model_id)


# ------------------------------------------------------------------------------------------------ the gate
def activation_refusals(card: ModelCard, policy: SitePointPolicy) -> list[str]:
    """Why this model may not be the site's active model (empty: it may). The one rule every surface calls."""
    reasons = []
    gate = dict(card.validation_gate or {})
    auc = gate.get("auc", card.binary_metrics.get("auc"))
    needed = max(float(gate.get("min_val_auc") or 0.0), ACTIVATION_MIN_AUC)
    if not card.passed_gate or auc is None or not float(auc) >= needed:
        shown = "unknown" if auc is None else f"{float(auc):.3f}"
        reasons.append(f"Its validation AUC ({shown}) is below the gate for the site's model ({needed:.2f}): it stays "
                       "an experiment (a reduced-budget run always is).")
    site = card.site_adaptation
    if site:
        lv = site.get("local_validation") or {}
        adapted, difference = lv.get("adapted") or {}, lv.get("difference") or {}
        point, low_diff = difference.get("auc", float("nan")), (difference.get("auc_ci95") or [float("nan")])[0]
        if not (point >= 0.0 and low_diff >= -NON_INFERIORITY_MARGIN):
            reasons.append(f"On the site's films its AUC is not shown to be at least its parent's on the same films: "
                           f"the paired difference is {point:+.3f}, lower 95 % bound {low_diff:+.3f} (needed: a "
                           f"difference of at least 0 with a lower bound of at least -{NON_INFERIORITY_MARGIN:.2f}).")
        low = (adapted.get("sensitivity_ci95") or [0.0])[0]
        if not low >= policy.sensitivity_floor:
            reasons.append(f"The lower 95 % bound of its sensitivity on the site's films ({low:.3f}) is below the "
                           f"site's floor ({policy.sensitivity_floor:.2f}).")
    return reasons


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


def find_entry(store: CaseStore | None, registry: Registry, model_id: str) -> ModelEntry:
    """A model by id, from the registry's folders or, failing that, from the case database (unpacked here)."""
    try:
        return registry.get(model_id)
    except ModelError:
        if store is None or registry.site_root is None:
            raise
        with Session(store.engine) as session:
            if session.get(StoredModel, model_id) is None:
                raise
        unpack(store, model_id)
        return registry.get(model_id)


def active_entry(store: CaseStore | None, registry: Registry) -> ModelEntry | None:
    """The site's model in use: the governed choice, else the registry's default (its ACTIVE pointer)."""
    choice = active_choice(store)
    if choice is not None and choice.model_id is not None:
        return find_entry(store, registry, choice.model_id)
    return registry.active()


def quiet_store() -> CaseStore | None:
    """The case store, or None where it does not open (the registry alone then says which model is active)."""
    try:
        return CaseStore.open()
    except CXRError:
        return None


def resolve_model_dir(model: str | None, store: CaseStore | None = None) -> Path:
    """The model folder a command or script means: a folder path as given, a model id (registered, or kept in the
    case database), or (None) the site's active model. `store`: the case store to consult (default: opened here;
    where it does not open, the registry alone decides, as cxr_core.model.registry.model_dir)."""
    if model and Path(model).is_dir():
        return Path(model)
    registry = Registry()
    store = store if store is not None else quiet_store()
    if store is not None:
        entry = find_entry(store, registry, model) if model else active_entry(store, registry)
        if entry is not None:
            return entry.path
    return model_dir(model, registry)


def activate_model(store: CaseStore, registry: Registry, model_id: str, reader: str,
                   policy: SitePointPolicy) -> ActiveChoice:
    """Make `model_id` the site's active model for every user and workstation: refused (CXRError naming the
    rule and its numbers) without a reader or past the gate; the model's files go into the database; audited."""
    reader = reader.strip()
    if not reader:
        raise CXRError("Changing the site's active model needs the name of the reader who does it.")
    entry = find_entry(store, registry, model_id)
    refusals = activation_refusals(entry.card, policy)
    if refusals:
        raise CXRError(f"{model_id} cannot be the site's active model: " + " ".join(refusals))
    store_model(store, entry.path, reader)
    before = active_choice(store)
    previous = before.model_id if before is not None else None
    return _record(store, model_id, reader, {"previous_model_id": previous, "action": "activate",
                                            "parent_model_id": entry.card.parent_model_id})


def revert_active_model(store: CaseStore, registry: Registry, reader: str) -> ActiveChoice:
    """Undo the latest activation: a site-adapted model gives way to its parent; any other model to the model
    that was active before it (or the registry's default). Audited."""
    reader = reader.strip()
    if not reader:
        raise CXRError("Reverting the site's active model needs the reader's name.")
    choice = active_choice(store)
    if choice is None or choice.model_id is None:
        raise CXRError("The site uses the registry's default model: there is no activation to revert.")
    entry = find_entry(store, registry, choice.model_id)
    target = entry.card.parent_model_id or choice.details.get("previous_model_id")
    return _record(store, target, reader, {"previous_model_id": choice.model_id, "action": "revert"})


def _record(store: CaseStore, model_id: str | None, reader: str, details: dict[str, Any]) -> ActiveChoice:
    with Session(store.engine) as session, session.begin():
        session.add(ActiveModelChange(model_id=model_id, author=reader, details=details))
        session.add(AuditEvent(actor=reader, action=f"model-{details['action']}", case_id=None, model_id=model_id,
                               details=details))
    choice = active_choice(store)
    assert choice is not None
    return choice
