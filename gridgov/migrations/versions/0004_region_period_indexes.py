"""region code + reported_at indexes replace the single-column region code indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 08:30:00
"""

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

LEVELS = ('county', 'town', 'village')


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        for level in LEVELS:
            batch_op.drop_index(f'ix_events_{level}_code')
            batch_op.create_index(
                f'ix_events_{level}_reported', [f'{level}_code', 'reported_at'], unique=False
            )


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        for level in LEVELS:
            batch_op.drop_index(f'ix_events_{level}_reported')
            batch_op.create_index(f'ix_events_{level}_code', [f'{level}_code'], unique=False)
