"""vendor sources: participants' recordings, push ids, customer identity

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Contact centers that record each participant to a file of their own (TCCC) push one
file at a time: ``calls.recordings`` gathers them. Vendors that send an id per push
(X-TCCC-PUSH-UUID) retry with the same id: ``webhook_pushes`` remembers them. Events
that carry only phone numbers get the CRM's customer id looked up: ``calls.identity``
says how the customer id was found, ``phone_lookups`` caches the answers.

Plain ADD/DROP COLUMN (SQLite 3.35+, PostgreSQL), not a batch copy of ``calls``: on SQLite
a copy would drop the table that jobs, segments and alerts refer to.
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('calls', sa.Column('recordings', sa.JSON(), nullable=True))
    op.add_column('calls', sa.Column('identity', sa.String(length=16), nullable=True))
    op.create_table('webhook_pushes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('push_id', sa.String(length=128), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'push_id', name='uq_webhook_pushes_source_push')
    )
    with op.batch_alter_table('webhook_pushes', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_pushes_received_at', ['received_at'], unique=False)
    op.create_table('phone_lookups',
    sa.Column('phone', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=255), nullable=True),
    sa.Column('looked_up_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('phone')
    )


def downgrade() -> None:
    op.drop_table('phone_lookups')
    with op.batch_alter_table('webhook_pushes', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_pushes_received_at')
    op.drop_table('webhook_pushes')
    op.execute('ALTER TABLE calls DROP COLUMN identity')
    op.execute('ALTER TABLE calls DROP COLUMN recordings')
