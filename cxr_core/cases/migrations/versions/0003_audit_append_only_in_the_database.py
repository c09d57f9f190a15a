"""the audit trail is append-only in the database itself: triggers refuse UPDATE and DELETE (and TRUNCATE)

The ORM already refuses to change an audit row; these triggers also stop raw SQL, another client and a
script that bypasses the code.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MESSAGE = "The audit trail is append-only: its rows cannot be changed or deleted."


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$""")
        op.execute("CREATE TRIGGER audit_no_update_or_delete BEFORE UPDATE OR DELETE ON audit "
                   "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
        op.execute("CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
    else:  # SQLite
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{action.lower()} BEFORE {action} ON audit "
                       f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_no_truncate ON audit")
        op.execute("DROP TRIGGER audit_no_update_or_delete ON audit")
        op.execute("DROP FUNCTION audit_append_only()")
    else:
        op.execute("DROP TRIGGER audit_no_update")
        op.execute("DROP TRIGGER audit_no_delete")
