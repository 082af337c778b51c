"""index on jobs (status, finished_at)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

/health asks on every probe which calls failed within the last hour
(plugin/store/failures.py): without this index that reads every failed job ever kept.
"""
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_finished', 'jobs', ['status', 'finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_finished', table_name='jobs')
