"""segments: the transcript of each window (text, language, SenseVoice's tags, matching form)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

Issue 17: SenseVoice transcribes the windows emotion2vec scores. Each segment keeps what
was said (numbers masked), the language, SenseVoice's own emotion tag and audio events,
and the normalised form keyword rules match. All nullable: calls analysed before, or
without a recognizer, have none.
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('segments') as batch:
        batch.add_column(sa.Column('text', sa.Text(), nullable=True))
        batch.add_column(sa.Column('language', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('tag_emotion', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('events', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('normalized', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('segments') as batch:
        for name in ('normalized', 'events', 'tag_emotion', 'language', 'text'):
            batch.drop_column(name)
