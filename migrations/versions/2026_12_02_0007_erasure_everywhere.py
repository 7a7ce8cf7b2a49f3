"""versions retired when a later version erased data they were trained on; each
request's callbacks numbered so they are delivered in order

Revision ID: 0007_erasure_everywhere
Revises: 0006_model_identity_type
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_erasure_everywhere"
down_revision: str | None = "0006_model_identity_type"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("superseded_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("blobs_deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("callback_deliveries") as batch:
        batch.add_column(sa.Column("sequence", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callback_deliveries") as batch:
        batch.drop_column("sequence")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("blobs_deleted_at")
        batch.drop_column("superseded_by")
        batch.drop_column("retired_at")
