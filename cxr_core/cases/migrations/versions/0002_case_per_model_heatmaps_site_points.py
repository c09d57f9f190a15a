"""one case per image and model, stored heatmaps and display tags, site operating points

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _cases_0001_without_unique_hash() -> sa.Table:
    """The 0001 `cases` table minus its unnamed UNIQUE(image_hash): SQLite cannot drop an unnamed
    constraint, so batch mode rebuilds the table from this definition instead of reflecting it."""
    return sa.Table(
        "cases", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("image_hash", sa.String(64), nullable=False),
        sa.Column("image_file", sa.String(200), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("assessed", sa.Boolean, nullable=False),
        sa.Column("label", sa.String(16)),
        sa.Column("subtype", sa.String(16)),
        sa.Column("pneumonia_probability", sa.Float),
        sa.Column("class_probabilities", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("threshold_source", sa.String(8), nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("not_assessed_reasons", sa.JSON, nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("cam_settings", sa.JSON, nullable=False),
        sa.Column("study_uid", sa.String(64)),
        sa.Column("series_uid", sa.String(64)),
        sa.Column("sop_uid", sa.String(64)),
        sa.Column("identifiers", sa.JSON),
        sa.Column("deleted", sa.Boolean, nullable=False),
        *(sa.Index(f"ix_cases_{c}", c) for c in ("created", "label", "pneumonia_probability", "model_id")),
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("cases", copy_from=_cases_0001_without_unique_hash(),
                              recreate="always" if sqlite else "never") as batch:
        if not sqlite:  # PostgreSQL's name for 0001's column-level UNIQUE
            batch.drop_constraint("cases_image_hash_key", type_="unique")
        batch.add_column(sa.Column("heatmap_file", sa.String(200)))
        batch.add_column(sa.Column("image_metadata", sa.JSON, nullable=False, server_default="{}"))
        batch.create_index("ix_cases_image_hash", ["image_hash"])
        batch.create_unique_constraint("uq_case_image_model", ["image_hash", "model_id"])
    op.create_table(
        "site_operating_points",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("site_operating_points")
    with op.batch_alter_table("cases") as batch:
        batch.drop_constraint("uq_case_image_model", type_="unique")
        batch.drop_index("ix_cases_image_hash")
        batch.drop_column("image_metadata")
        batch.drop_column("heatmap_file")
        batch.create_unique_constraint("cases_image_hash_key", ["image_hash"])
