"""scheduled_run: one periodic check per slot across workers and replicas

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scheduled_run',
    sa.Column('job', sa.String(length=50), nullable=False),
    sa.Column('slot', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=100), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('report_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('job', 'slot', name=op.f('pk_scheduled_run'))
    )


def downgrade() -> None:
    op.drop_table('scheduled_run')
