"""callback deliveries and model webhooks

Revision ID: 0003_callbacks_webhooks
Revises: 0002_idempotency_deadlines
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_callbacks_webhooks"
down_revision: str | None = "0002_idempotency_deadlines"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_webhooks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_model_webhooks_model_id_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_webhooks")),
    )
    op.create_index("ix_model_webhooks_model", "model_webhooks", ["model_id", "deleted_at"])
    op.create_table(
        "callback_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column(
            "protocol",
            sa.Enum("webhooks", "opendsr", name="deliveryprotocol", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("webhook_id", sa.String(length=36), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "delivered",
                "failed",
                name="deliverystatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["erasure_requests.id"],
            name=op.f("fk_callback_deliveries_request_id_erasure_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["model_webhooks.id"],
            name=op.f("fk_callback_deliveries_webhook_id_model_webhooks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_deliveries")),
    )
    op.create_index(
        "ix_callback_deliveries_due", "callback_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_callback_deliveries_request", "callback_deliveries", ["request_id", "created_at"]
    )
    op.create_index(
        "ix_callback_deliveries_webhook", "callback_deliveries", ["webhook_id", "created_at"]
    )
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["callback_deliveries.id"],
            name=op.f("fk_callback_attempts_delivery_id_callback_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    op.create_index("ix_callback_attempts_delivery", "callback_attempts", ["delivery_id", "number"])
    op.create_table(
        "opendsr_requests",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("subject_request_type", sa.String(length=32), nullable=False),
        sa.Column("api_version", sa.String(length=16), nullable=False),
        sa.Column("processor_domain", sa.String(length=253), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["erasure_requests.id"],
            name=op.f("fk_opendsr_requests_request_id_erasure_requests"),
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_opendsr_requests")),
    )


def downgrade() -> None:
    op.drop_table("opendsr_requests")
    op.drop_index("ix_callback_attempts_delivery", table_name="callback_attempts")
    op.drop_table("callback_attempts")
    op.drop_index("ix_callback_deliveries_webhook", table_name="callback_deliveries")
    op.drop_index("ix_callback_deliveries_request", table_name="callback_deliveries")
    op.drop_index("ix_callback_deliveries_due", table_name="callback_deliveries")
    op.drop_table("callback_deliveries")
    op.drop_index("ix_model_webhooks_model", table_name="model_webhooks")
    op.drop_table("model_webhooks")
