"""initial schema

Revision ID: baf9e50edcff
Revises:
Create Date: 2026-11-26 13:56:28.915655
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'baf9e50edcff'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('models', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_table('audit_events',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_subject'), ['subject'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_type'), ['type'], unique=False)

    audit_head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    # the chain's tip exists from the start, so the first appenders lock a row, not a gap
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('architecture', sa.String(length=128), nullable=False),
    sa.Column('num_classes', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.String(length=128), nullable=False),
    sa.Column('dataset_params', sa.JSON(), nullable=False),
    sa.Column('auto_promote', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )
    op.create_table('alias_moves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('from_version', sa.Integer(), nullable=True),
    sa.Column('to_version', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('moved_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_alias_moves_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alias_moves'))
    )
    op.create_table('aliases',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('version_number', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_aliases_model_id_models')),
    sa.PrimaryKeyConstraint('model_id', 'name', name=op.f('pk_aliases'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'succeeded', 'failed', 'canceled', name='jobstatus', native_enum=False, length=16), nullable=False),
    sa.Column('phase', sa.String(length=64), nullable=False),
    sa.Column('progress', sa.Double(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('base_version', sa.Integer(), nullable=True),
    sa.Column('result_version', sa.Integer(), nullable=True),
    sa.Column('method', sa.String(length=64), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('error', sa.String(length=4096), nullable=True),
    sa.Column('worker', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_jobs_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_status_heartbeat', ['status', 'heartbeat_at'], unique=False)
        batch_op.create_index('uq_jobs_one_active_per_model', ['model_id'], unique=True, sqlite_where=sa.text("status IN ('queued', 'running')"), postgresql_where=sa.text("status IN ('queued', 'running')"))

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('parent_number', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.String(length=36), nullable=True),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('request_ids', sa.JSON(), nullable=False),
    sa.Column('erased_count', sa.Integer(), nullable=False),
    sa.Column('checkpoint_sha256', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_size', sa.BigInteger(), nullable=False),
    sa.Column('stored_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_versions_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('job_id', name=op.f('uq_model_versions_job_id')),
    sa.UniqueConstraint('model_id', 'number', name=op.f('uq_model_versions_model_id_number'))
    )
    op.create_table('training_samples',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.String(length=256), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('subject_ref', sa.String(length=64), nullable=True),
    sa.Column('erased_in_version', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_training_samples_model_id_models')),
    sa.PrimaryKeyConstraint('model_id', 'sample_id', name=op.f('pk_training_samples'))
    )
    with op.batch_alter_table('training_samples', schema=None) as batch_op:
        batch_op.create_index('ix_training_samples_subject', ['model_id', 'subject_ref'], unique=False)

    op.create_table('erasure_requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('subject_request_id', sa.String(length=36), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('regulation', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('received', 'queued', 'running', 'completed', 'canceled', 'denied', 'failed', name='requeststatus', native_enum=False, length=16), nullable=False),
    sa.Column('status_reason', sa.String(length=1024), nullable=True),
    sa.Column('submitted_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('job_id', sa.String(length=36), nullable=True),
    sa.Column('result_version', sa.Integer(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('callback_urls', sa.JSON(), nullable=False),
    sa.Column('client', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_erasure_requests_job_id_jobs')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_erasure_requests_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_requests')),
    sa.UniqueConstraint('subject_request_id', name=op.f('uq_erasure_requests_subject_request_id'))
    )
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.create_index('ix_erasure_requests_model_status', ['model_id', 'status'], unique=False)
        batch_op.create_index('ix_erasure_requests_received', ['received_at', 'id'], unique=False)

    op.create_table('erasure_request_samples',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('sample_id', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['erasure_requests.id'], name=op.f('fk_erasure_request_samples_request_id_erasure_requests')),
    sa.PrimaryKeyConstraint('request_id', 'sample_id', name=op.f('pk_erasure_request_samples'))
    )

    if op.get_bind().dialect.name == "postgresql":
        # The audit trail is append-only: the database itself refuses edits and deletions.
        op.execute("""
            CREATE FUNCTION lethe_audit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
        """)
        op.execute("""
            CREATE TRIGGER audit_events_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION lethe_audit_append_only()
        """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS lethe_audit_append_only()")
    op.drop_table('erasure_request_samples')
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_erasure_requests_received')
        batch_op.drop_index('ix_erasure_requests_model_status')

    op.drop_table('erasure_requests')
    with op.batch_alter_table('training_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_training_samples_subject')

    op.drop_table('training_samples')
    op.drop_table('model_versions')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_jobs_one_active_per_model', sqlite_where=sa.text("status IN ('queued', 'running')"), postgresql_where=sa.text("status IN ('queued', 'running')"))
        batch_op.drop_index('ix_jobs_status_heartbeat')

    op.drop_table('jobs')
    op.drop_table('aliases')
    op.drop_table('alias_moves')
    op.drop_table('models')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_type'))
        batch_op.drop_index(batch_op.f('ix_audit_events_subject'))

    op.drop_table('audit_events')
    op.drop_table('api_keys')
