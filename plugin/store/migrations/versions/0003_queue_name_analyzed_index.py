"""calls.queue (was scenario_hint), index on calls.analyzed_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

One name per concept: the helpdesk's queue is ``queue`` from the webhook to the rules.
The backtest finds its window by ``analyzed_at``; the index keeps that from scanning
every call.
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls') as batch_op:
        batch_op.alter_column('scenario_hint', new_column_name='queue')
        batch_op.create_index('ix_calls_analyzed_at', ['analyzed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('calls') as batch_op:
        batch_op.drop_index('ix_calls_analyzed_at')
        batch_op.alter_column('queue', new_column_name='scenario_hint')
