"""deliveries.dedupe_key (unique), index on calls.received_at

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

The review report (plugin/flow/report/) is a delivery of neither an alert nor a
notification: ``deliveries.dedupe_key`` names it ("report:daily:2026-11-24:wecom:markdown")
and its unique index lets only one process, one run, store it. NULL for every other
delivery (a unique index admits many NULLs on SQLite and PostgreSQL alike). The report
puts each call, and its alerts, in the period it was received (``calls.received_at``: a
re-run does not move it): indexed, so that reads one period only.

Plain ADD/DROP COLUMN and CREATE INDEX, not a batch copy of ``deliveries``.
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('deliveries', sa.Column('dedupe_key', sa.String(length=255), nullable=True))
    op.create_index('ix_deliveries_dedupe_key', 'deliveries', ['dedupe_key'], unique=True)
    op.create_index('ix_calls_received_at', 'calls', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_calls_received_at', table_name='calls')
    op.drop_index('ix_deliveries_dedupe_key', table_name='deliveries')
    op.execute('ALTER TABLE deliveries DROP COLUMN dedupe_key')
