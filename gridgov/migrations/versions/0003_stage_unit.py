"""stage unit of the current stage; index on stage deadlines (desk, sweep)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:01:56.194222
"""

from alembic import op
import sqlalchemy as sa
import gridgov.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_unit', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_events_state_stage_due', ['state', 'stage_due_at'], unique=False)
    # Existing events: the unit of their current stage, from the matter list.
    op.execute(
        "UPDATE events SET stage_unit = (SELECT l.unit FROM matter_time_limits l"
        " WHERE l.matter_code = events.matter_code AND l.urgency = events.urgency"
        " AND l.stage = events.stage) WHERE stage IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_state_stage_due')
        batch_op.drop_column('stage_unit')

