"""idempotency keys, deadline extensions and denials

Revision ID: 0002_idempotency_deadlines
Revises: baf9e50edcff
"""

from collections.abc import Sequence

revision: str = "0002_idempotency_deadlines"
down_revision: str | None = "baf9e50edcff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
