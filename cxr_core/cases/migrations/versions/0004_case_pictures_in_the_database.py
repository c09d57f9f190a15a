"""case pictures in the database: a `pictures` table (PNG bytes keyed by sha256); the files move in

Before, each case's de-identified PNG and heatmap were files under the creating workstation's
$CXR_HOME/images, so other workstations on a shared database could list a case but not open it. The files
found on the upgrading machine move into the table here; the case store adopts other workstations' files
when each next opens it (`cxr_core.cases.db.adopt_picture_files`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from cxr_core.cases.db import adopt_picture_files
    from cxr_core.settings import current

    op.create_table("pictures", sa.Column("sha256", sa.String(64), primary_key=True),
                    sa.Column("data", sa.LargeBinary, nullable=False))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("image_sha256", sa.String(64), sa.ForeignKey("pictures.sha256",
                                                                                name="fk_cases_image_picture")))
        batch.add_column(sa.Column("heatmap_sha256", sa.String(64), sa.ForeignKey("pictures.sha256",
                                                                                  name="fk_cases_heatmap_picture")))
        batch.alter_column("image_file", existing_type=sa.String(200), nullable=True)
    adopt_picture_files(op.get_bind(), current().layout.legacy_images)


def downgrade() -> None:
    raise NotImplementedError("Downgrading below 0004 would drop every case's pictures: restore a backup taken "
                              "before the upgrade instead.")
