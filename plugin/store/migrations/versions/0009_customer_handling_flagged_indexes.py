"""customer_handling, customer_handling_events; indexes for the red-flag list

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

The red-flag list (issue 14): who is handling a flagged customer (acknowledged by/at,
assigned to/by/at, a note), one current row per customer, and every acknowledge, assign
and release kept as an event. Indexes the list needs at 100,000 calls and 10,000 alerts
(bench/dashboard.py): each customer's alerts newest first with what ranks them, read
from the index alone (ix_alerts_customer_recent); alerts by creation time (the date
range); calls by phone number (the search finds a customer by phone).

Plain CREATE TABLE / INDEX, nothing copied.
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'customer_handling',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.String(length=255), nullable=False),
        sa.Column('acknowledged_by', sa.String(length=128), nullable=True),
        sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
        sa.Column('assigned_to', sa.String(length=128), nullable=True),
        sa.Column('assigned_by', sa.String(length=128), nullable=True),
        sa.Column('assigned_at', sa.DateTime(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('customer_id'),
    )
    op.create_table(
        'customer_handling_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.String(length=255), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('by', sa.String(length=128), nullable=False),
        sa.Column('assignee', sa.String(length=128), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_customer_handling_events_customer', 'customer_handling_events', ['customer_id', 'id'],
                    unique=False)
    op.create_index('ix_alerts_created_at', 'alerts', ['created_at'], unique=False)
    op.create_index('ix_alerts_customer_recent', 'alerts', ['customer_id', 'id', 'created_at', 'severity', 'scenario'],
                    unique=False)
    op.create_index('ix_calls_customer_phone', 'calls', ['customer_phone'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_calls_customer_phone', table_name='calls')
    op.drop_index('ix_alerts_customer_recent', table_name='alerts')
    op.drop_index('ix_alerts_created_at', table_name='alerts')
    op.drop_index('ix_customer_handling_events_customer', table_name='customer_handling_events')
    op.drop_table('customer_handling_events')
    op.drop_table('customer_handling')
