"""cases, reviews and the audit trail

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("image_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("image_file", sa.String(200), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("assessed", sa.Boolean, nullable=False),
        sa.Column("label", sa.String(16), index=True),
        sa.Column("subtype", sa.String(16)),
        sa.Column("pneumonia_probability", sa.Float, index=True),
        sa.Column("class_probabilities", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("threshold_source", sa.String(8), nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("not_assessed_reasons", sa.JSON, nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False, index=True),
        sa.Column("cam_settings", sa.JSON, nullable=False),
        sa.Column("study_uid", sa.String(64)),
        sa.Column("series_uid", sa.String(64)),
        sa.Column("sop_uid", sa.String(64)),
        sa.Column("identifiers", sa.JSON),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("label", sa.String(12), nullable=False),
        sa.Column("reader", sa.String(100), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("case_id", sa.Integer, index=True),
        sa.Column("model_id", sa.String(200)),
        sa.Column("details", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit")
    op.drop_table("reviews")
    op.drop_table("cases")
