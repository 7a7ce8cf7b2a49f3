"""idempotency keys become expiring leases; stored responses hold no raw identity

Revision ID: 0005_idempotency_lease
Revises: 0004_audit_pending

Keys stored before this revision are deleted: their fingerprints were unkeyed sha256
(a dump could test guessed bodies against them) and an OpenDSR response among them holds
the base64 of the raw request. A retry of such a key runs again, and request creation
is idempotent by `subject_request_id` (the original request is answered).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_idempotency_lease"
down_revision: str | None = "0004_audit_pending"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("lease", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease")
