"""initial tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 02:24:01.036016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('drift_report',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=False),
    sa.Column('engine', sa.String(length=20), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reference_rows', sa.Integer(), nullable=False),
    sa.Column('current_rows', sa.Integer(), nullable=False),
    sa.Column('drift_share', sa.Float(), nullable=False),
    sa.Column('dataset_drift', sa.Boolean(), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_report'))
    )
    op.create_index(op.f('ix_drift_report_created_at'), 'drift_report', ['created_at'], unique=False)
    op.create_table('model_promotion',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('from_version', sa.String(length=50), nullable=True),
    sa.Column('to_version', sa.String(length=50), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_promotion'))
    )
    op.create_index(op.f('ix_model_promotion_created_at'), 'model_promotion', ['created_at'], unique=False)
    op.create_table('prediction',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=False),
    sa.Column('features', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('probabilities', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('request_id', sa.String(length=100), nullable=True),
    sa.Column('protocol', sa.String(length=20), nullable=False),
    sa.Column('subject_hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction'))
    )
    op.create_index('ix_prediction_created_at', 'prediction', ['created_at'], unique=False)
    op.create_index('ix_prediction_model_version_created_at', 'prediction', ['model_name', 'model_version', 'created_at'], unique=False)
    op.create_table('prediction_feedback',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actual_level', sa.String(length=10), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction_feedback'))
    )
    op.create_index(op.f('ix_prediction_feedback_prediction_id'), 'prediction_feedback', ['prediction_id'], unique=False)
    op.create_table('training_run',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('experiment', sa.String(length=200), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=True),
    sa.Column('algorithm', sa.String(length=50), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_run')),
    sa.UniqueConstraint('run_id', name=op.f('uq_training_run_run_id'))
    )



def downgrade() -> None:
    
    op.drop_table('training_run')
    op.drop_index(op.f('ix_prediction_feedback_prediction_id'), table_name='prediction_feedback')
    op.drop_table('prediction_feedback')
    op.drop_index('ix_prediction_model_version_created_at', table_name='prediction')
    op.drop_index('ix_prediction_created_at', table_name='prediction')
    op.drop_table('prediction')
    op.drop_index(op.f('ix_model_promotion_created_at'), table_name='model_promotion')
    op.drop_table('model_promotion')
    op.drop_index(op.f('ix_drift_report_created_at'), table_name='drift_report')
    op.drop_table('drift_report')

