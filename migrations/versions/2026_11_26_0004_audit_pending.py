"""audit events are stored pending and sealed into the chain in batches

Revision ID: 0004_audit_pending
Revises: 0003_callbacks_webhooks
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_audit_pending"
down_revision: str | None = "0003_callbacks_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_pending",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_pending")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Pending events are inserted, then deleted by the sealer as it chains them: never
        # edited.
        op.execute("""
            CREATE FUNCTION lethe_audit_pending_guard() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_pending rows are never edited: % refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER audit_pending_no_update
            BEFORE UPDATE OR TRUNCATE ON audit_pending
            FOR EACH STATEMENT EXECUTE FUNCTION lethe_audit_pending_guard()
        """)


def downgrade() -> None:
    pending = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_pending")).scalar()
    if pending:
        raise RuntimeError(
            f"{pending} audit events are not sealed yet; run `lethe audit verify` (which seals "
            "them) before downgrading, or they would be lost"
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_pending_no_update ON audit_pending")
        op.execute("DROP FUNCTION IF EXISTS lethe_audit_pending_guard()")
    op.drop_table("audit_pending")
