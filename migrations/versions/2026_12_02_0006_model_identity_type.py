"""models record the identity type their training set's subjects are hashed under

Revision ID: 0006_model_identity_type
Revises: 0004_audit_pending

Models registered before this revision keep NULL (not recorded): their subjects may have
been registered under any type, and guessing one would refuse requests that match today.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_model_identity_type"
down_revision: str | None = "0004_audit_pending"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("subject_identity_type", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("subject_identity_type")
