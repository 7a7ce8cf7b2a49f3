"""subject fan-out: a request naming no model is a parent (no model, holding the portal's
subject_request_id) with one child request per model that holds the subject

Revision ID: 0009_subject_fanout
Revises: 0008_registration_job
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_subject_fanout"
down_revision: str | None = "0008_registration_job"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erasure_requests") as batch:
        batch.alter_column("model_id", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("subject_request_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("selector_digest", sa.String(64), nullable=True))
        batch.create_foreign_key(
            "fk_erasure_requests_parent_id_erasure_requests",
            "erasure_requests",
            ["parent_id"],
            ["id"],
        )
        batch.create_index("ix_erasure_requests_parent", ["parent_id"], unique=False)


def downgrade() -> None:
    """Fan-out parents cannot exist without a model: their children become ordinary
    requests (keeping their own id as subject_request_id) and the parents are removed,
    with what points at them (their callback outbox and OpenDSR marker)."""
    parents = "SELECT id FROM erasure_requests WHERE model_id IS NULL"
    op.execute(
        "DELETE FROM callback_attempts WHERE delivery_id IN (SELECT id FROM "
        f"callback_deliveries WHERE request_id IN ({parents}))"
    )
    op.execute(f"DELETE FROM callback_deliveries WHERE request_id IN ({parents})")
    op.execute(f"DELETE FROM opendsr_requests WHERE request_id IN ({parents})")
    op.execute(f"DELETE FROM erasure_request_samples WHERE request_id IN ({parents})")
    op.execute(
        "UPDATE erasure_requests SET subject_request_id = id WHERE subject_request_id IS NULL"
    )
    op.execute("UPDATE erasure_requests SET parent_id = NULL")
    op.execute("DELETE FROM erasure_requests WHERE model_id IS NULL")
    with op.batch_alter_table("erasure_requests") as batch:
        batch.drop_index("ix_erasure_requests_parent")
        batch.drop_constraint("fk_erasure_requests_parent_id_erasure_requests", type_="foreignkey")
        batch.drop_column("selector_digest")
        batch.drop_column("parent_id")
        batch.alter_column("subject_request_id", existing_type=sa.String(36), nullable=False)
        batch.alter_column("model_id", existing_type=sa.Integer(), nullable=False)
