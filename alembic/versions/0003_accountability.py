"""accountability: explanations, reviews, the review flag, the stop switch, erasure (audit, index)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('prediction', sa.Column('needs_review', sa.Boolean(), server_default='false',
                                          nullable=False))
    op.create_index('ix_prediction_needs_review_created_at', 'prediction',
                    ['needs_review', 'created_at'], unique=False)
    op.create_index('ix_prediction_subject_hash', 'prediction', ['subject_hash'], unique=False,
                    postgresql_where=sa.text('subject_hash IS NOT NULL'),
                    sqlite_where=sa.text('subject_hash IS NOT NULL'))
    op.create_table('prediction_explanation',
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('model_version', sa.String(length=50), nullable=False),
    sa.Column('method', sa.String(length=40), nullable=False),
    sa.Column('document', _JSON, nullable=False),
    sa.PrimaryKeyConstraint('prediction_id', name=op.f('pk_prediction_explanation'))
    )
    op.create_table('prediction_review',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('prediction_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewer', sa.String(length=100), nullable=False),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction_review'))
    )
    op.create_index(op.f('ix_prediction_review_prediction_id'), 'prediction_review',
                    ['prediction_id'], unique=False)
    op.create_table('model_suspension',
    sa.Column('model_name', sa.String(length=200), nullable=False),
    sa.Column('suspended', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('changed_by', sa.String(length=100), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model_name', name=op.f('pk_model_suspension'))
    )
    op.create_table('subject_erasure',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('subject_hash', sa.String(length=64), nullable=False),
    sa.Column('removed', _JSON, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subject_erasure'))
    )
    op.create_index(op.f('ix_subject_erasure_created_at'), 'subject_erasure', ['created_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_subject_erasure_created_at'), table_name='subject_erasure')
    op.drop_table('subject_erasure')
    op.drop_table('model_suspension')
    op.drop_index(op.f('ix_prediction_review_prediction_id'), table_name='prediction_review')
    op.drop_table('prediction_review')
    op.drop_table('prediction_explanation')
    op.drop_index('ix_prediction_subject_hash', table_name='prediction')
    op.drop_index('ix_prediction_needs_review_created_at', table_name='prediction')
    op.drop_column('prediction', 'needs_review')
