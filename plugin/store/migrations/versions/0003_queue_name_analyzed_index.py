"""calls.queue (was scenario_hint), index on calls.analyzed_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

One name per concept: the helpdesk's queue is ``queue`` from the webhook to the rules.
The backtest finds its window by ``analyzed_at``; the index keeps that from scanning
every call.

A plain RENAME COLUMN (SQLite 3.25+, PostgreSQL), not a batch copy of the table: on
SQLite a copy would drop ``calls``, which jobs, segments and alerts refer to.
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute('ALTER TABLE calls RENAME COLUMN scenario_hint TO queue')
    op.create_index('ix_calls_analyzed_at', 'calls', ['analyzed_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_calls_analyzed_at', table_name='calls')
    op.execute('ALTER TABLE calls RENAME COLUMN queue TO scenario_hint')
