"""The case database: SQLAlchemy 2 tables, the engine for $CXR_DATABASE_URL, and its Alembic migrations.

Default: SQLite (WAL) at $CXR_HOME/cases.db; `CXR_DATABASE_URL` (e.g. postgresql+psycopg://user@host/db)
points several workstations at one server. `open_engine` brings the schema to Alembic's head first.
The audit table is append-only: the ORM refuses to update or delete its rows (`_refuse_audit_changes`),
and nothing in the code issues such a statement.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (Boolean, DateTime, Float, ForeignKey, Integer, JSON, LargeBinary, String, Text,
                        UniqueConstraint, create_engine, event, select)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from ..settings import current
import hashlib

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Case(Base):
    """One analysed image: a de-identified PNG copy, the result, and how it was produced."""

    __tablename__ = "cases"
    # One case per image and model: the same image dropped twice is one case; another model, another case.
    __table_args__ = (UniqueConstraint("image_hash", "model_id", name="uq_case_image_model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    image_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the input bytes
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("pictures.sha256"))  # the de-identified PNG
    heatmap_sha256: Mapped[str | None] = mapped_column(ForeignKey("pictures.sha256"))  # the Grad-CAM, if assessed
    # Before 0004 the PNGs were files under the creating workstation's $CXR_HOME/images: a name here means that
    # file has not been moved into `pictures` yet (`adopt_picture_files` does, on that workstation).
    image_file: Mapped[str | None] = mapped_column(String(200))
    heatmap_file: Mapped[str | None] = mapped_column(String(200))
    source_format: Mapped[str] = mapped_column(String(16))
    assessed: Mapped[bool] = mapped_column(Boolean)
    label: Mapped[str | None] = mapped_column(String(16), index=True)
    subtype: Mapped[str | None] = mapped_column(String(16))
    pneumonia_probability: Mapped[float | None] = mapped_column(Float, index=True)
    class_probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    threshold: Mapped[float] = mapped_column(Float)
    threshold_source: Mapped[str] = mapped_column(String(8), default="model")  # "model" or "site"
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    not_assessed_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_id: Mapped[str] = mapped_column(String(200), index=True)
    cam_settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # display tags, none identifying
    study_uid: Mapped[str | None] = mapped_column(String(64))
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_uid: Mapped[str | None] = mapped_column(String(64))
    identifiers: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # only with CXR_STORE_IDENTIFIERS=1
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    reviews: Mapped[list["Review"]] = relationship(back_populates="case", order_by="Review.id")


class Picture(Base):
    """A case's picture (de-identified image or heatmap) as PNG bytes, keyed by their sha256: written in the
    case's own transaction, shared by every workstation on the database, and stored once however many cases
    (models) use it."""

    __tablename__ = "pictures"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Review(Base):
    """A reader's verdict on a case; the latest one counts."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    decision: Mapped[str] = mapped_column(String(10))  # agree / disagree
    label: Mapped[str] = mapped_column(String(12))  # NORMAL / BACTERIAL / VIRAL / OTHER / UNREADABLE
    reader: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str] = mapped_column(Text, default="")
    case: Mapped[Case] = relationship(back_populates="reviews")


class AuditEvent(Base):
    """Who did what, when, with which model. Append-only."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))  # create / review / delete / export
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    model_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SiteOperatingPoint(Base):
    """A site's own threshold for one model, chosen on its local evaluation. The latest row counts;
    a row without a threshold returns the site to the model card's threshold."""

    __tablename__ = "site_operating_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    model_id: Mapped[str] = mapped_column(String(200), index=True)
    threshold: Mapped[float | None] = mapped_column(Float)
    author: Mapped[str] = mapped_column(String(100))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # n, sensitivity/specificity with CIs, data


class ModelArchive(Base):
    """A model folder as one deterministic zip, keyed by its sha256: how a model (site-adapted, user-trained or
    shipped) reaches every workstation on the database without anyone copying files."""

    __tablename__ = "model_archives"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StoredModel(Base):
    """A model kept in the case database: its card and its archive. A site-adapted model lives only here."""

    __tablename__ = "stored_models"
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    archive_sha256: Mapped[str] = mapped_column(ForeignKey("model_archives.sha256"))
    card: Mapped[dict[str, Any]] = mapped_column(JSON)
    parent_model_id: Mapped[str | None] = mapped_column(String(200))  # a site-adapted model's parent
    stored_by: Mapped[str] = mapped_column(String(100))


class ActiveModelChange(Base):
    """The site's active model, governed: the latest row counts; a row without a model returns the site to the
    registry's default (the shipped model). Written only by `cxr_core.site.models`, with an audit event."""

    __tablename__ = "active_model_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    model_id: Mapped[str | None] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the gate's evidence, what it replaced


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise PermissionError("The audit trail is append-only: its rows cannot be changed or deleted.")


def adopt_picture_files(connection: Connection, images_dir: Path) -> list[Path]:
    """Move the pre-0004 PNG files found in `images_dir` into `pictures`, on `connection`'s transaction; the
    files adopted (the caller deletes them once that transaction has committed). Files of cases made on another
    workstation are not here: that workstation adopts them the next time it opens the store. Written against
    lightweight table definitions, not the ORM classes, so that migration 0004 keeps working as they change."""

    from sqlalchemy import column, insert, table, update  # lazy: heavy

    cases = table("cases", column("id"), column("image_file"), column("heatmap_file"), column("image_sha256"),
                  column("heatmap_sha256"))
    pictures = table("pictures", column("sha256"), column("data"))
    pending = connection.execute(select(cases.c.id, cases.c.image_file, cases.c.heatmap_file)
                                 .where((cases.c.image_file.is_not(None)) | (cases.c.heatmap_file.is_not(None)))).all()
    adopted: list[Path] = []
    known = set(connection.scalars(select(pictures.c.sha256)).all()) if pending else set()
    for case_id, *names in pending:
        values: dict[str, Any] = {}
        for name, kind in zip(names, ("image", "heatmap")):
            path = images_dir / name if name else None
            if path is None or not path.is_file():
                continue
            data = path.read_bytes()
            key = hashlib.sha256(data).hexdigest()
            if key not in known:
                connection.execute(insert(pictures).values(sha256=key, data=data))
                known.add(key)
            values.update({f"{kind}_sha256": key, f"{kind}_file": None})
            adopted.append(path)
        if values:
            connection.execute(update(cases).where(cases.c.id == case_id).values(**values))
    return adopted


def database_url() -> str:
    """`$CXR_DATABASE_URL`, else SQLite in the app's data folder (never the checkout)."""
    url = current().database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def open_engine(url: str | None = None) -> Engine:
    """An engine on the case database, migrated to the latest schema."""
    url = url or database_url()
    sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30} if sqlite else {}, pool_pre_ping=not sqlite)
    if sqlite:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; crash-safe commits
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Alembic upgrade to head on this engine's database (idempotent)."""
    from alembic import command  # lazy: heavy
    from alembic.config import Config  # lazy: heavy

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:  # SQLite rebuilds a table to alter it: rows pointing at it must not block the swap
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # outside any transaction, or SQLite ignores it
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migrated case database has rows whose references are broken")
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
