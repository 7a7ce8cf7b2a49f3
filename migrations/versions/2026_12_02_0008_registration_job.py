"""registration as a job: a model's status (validating, ready, rejected) and reason, what
its registration job needs, and the kind of a job (unlearn or register)

Revision ID: 0008_registration_job
Revises: 0007_erasure_everywhere
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_registration_job"
down_revision: str | None = "0007_erasure_everywhere"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        # every model registered before this revision was published at once: ready
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="ready")
        )
        batch.add_column(sa.Column("status_reason", sa.String(4096), nullable=True))
        batch.add_column(sa.Column("registration", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="unlearn")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("registration")
        batch.drop_column("status_reason")
        batch.drop_column("status")
