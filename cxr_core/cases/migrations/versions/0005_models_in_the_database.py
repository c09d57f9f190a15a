"""models in the case database: archives, stored models and the site's governed active model

A site-adapted model (and any model a reader makes the site's active one) is kept here, so every workstation
on the database can list and use it without copying files; `active_model_changes` is the governed history of
the site's active model (the latest row counts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("model_archives", sa.Column("sha256", sa.String(64), primary_key=True),
                    sa.Column("data", sa.LargeBinary, nullable=False))
    op.create_table(
        "stored_models",
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archive_sha256", sa.String(64), sa.ForeignKey("model_archives.sha256", name="fk_stored_model_archive"),
                  nullable=False),
        sa.Column("card", sa.JSON, nullable=False),
        sa.Column("parent_model_id", sa.String(200)),
        sa.Column("stored_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "active_model_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_id", sa.String(200)),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("active_model_changes")
    op.drop_table("stored_models")
    op.drop_table("model_archives")
