"""callback deliveries and model webhooks

Revision ID: 0003_callbacks_webhooks
Revises: 0002_idempotency_deadlines
"""

from collections.abc import Sequence

revision: str = "0003_callbacks_webhooks"
down_revision: str | None = "0002_idempotency_deadlines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
