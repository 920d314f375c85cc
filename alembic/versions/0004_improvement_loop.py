"""improvement loop: shadow predictions of the challenger, retraining proposals

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('shadow_prediction',
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=False),
    sa.Column('champion_version', sa.String(length=50), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('probabilities', _JSON, nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('prediction_id', name=op.f('pk_shadow_prediction'))
    )
    op.create_index('ix_shadow_prediction_model_version_created_at', 'shadow_prediction',
                    ['model_name', 'model_version', 'created_at'], unique=False)
    op.create_table('retraining_proposal',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=False),
    sa.Column('base_version', sa.String(length=50), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('data', _JSON, nullable=False),
    sa.Column('metrics', _JSON, nullable=False),
    sa.Column('detail', _JSON, nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retraining_proposal'))
    )
    op.create_index(op.f('ix_retraining_proposal_created_at'), 'retraining_proposal',
                    ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_retraining_proposal_created_at'), table_name='retraining_proposal')
    op.drop_table('retraining_proposal')
    op.drop_index('ix_shadow_prediction_model_version_created_at', table_name='shadow_prediction')
    op.drop_table('shadow_prediction')
