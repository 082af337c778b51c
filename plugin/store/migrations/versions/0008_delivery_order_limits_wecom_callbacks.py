"""deliveries: order_key, note, merged_into, requeued_at; sink_sends; wecom_callbacks

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

Write-backs (issue 13): a sink's deliveries about one customer go out in order
(``order_key``); what a sink did other than asked is kept (``note``), as is which delivery's
message carried one merged by a rate limit (``merged_into``) and when an operator requeued
it (``requeued_at``). ``sink_sends`` counts messages against the WeCom robot's and app's
rate limits across every worker. ``wecom_callbacks`` stores each verdict pressed on a WeCom
card once (WeCom retries callbacks).

Plain ADD COLUMN and CREATE TABLE / INDEX, not a batch copy of ``deliveries``.
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('deliveries', sa.Column('order_key', sa.String(length=255), nullable=True))
    op.add_column('deliveries', sa.Column('note', sa.Text(), nullable=True))
    op.add_column('deliveries', sa.Column('merged_into', sa.Integer(), nullable=True))
    op.add_column('deliveries', sa.Column('requeued_at', sa.DateTime(), nullable=True))
    op.create_index('ix_deliveries_order_key', 'deliveries', ['order_key', 'status'], unique=False)
    op.create_table(
        'sink_sends',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sink', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sink_sends_key_at', 'sink_sends', ['sink', 'key', 'at'], unique=False)
    op.create_table(
        'wecom_callbacks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('sink', sa.String(length=64), nullable=False),
        sa.Column('dedupe_key', sa.String(length=255), nullable=False),
        sa.Column('from_user', sa.String(length=128), nullable=False),
        sa.Column('task_id', sa.String(length=128), nullable=False),
        sa.Column('event_key', sa.String(length=128), nullable=False),
        sa.Column('outcome', sa.String(length=255), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('dedupe_key'),
    )
    op.create_index('ix_wecom_callbacks_received_at', 'wecom_callbacks', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_wecom_callbacks_received_at', table_name='wecom_callbacks')
    op.drop_table('wecom_callbacks')
    op.drop_index('ix_sink_sends_key_at', table_name='sink_sends')
    op.drop_table('sink_sends')
    op.drop_index('ix_deliveries_order_key', table_name='deliveries')
    for column in ('requeued_at', 'merged_into', 'note', 'order_key'):
        op.execute(f'ALTER TABLE deliveries DROP COLUMN {column}')
