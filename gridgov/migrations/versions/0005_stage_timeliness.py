"""events.handle_late / verify_late (处置及时率, 核查及时率); the covering indexes carry them
(and verified_at)

Existing events get false: the stage deadline an old handle or verify action had is not
recorded anywhere, so their timeliness cannot be reconstructed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# Frozen copies of gridgov.models.events.COVERED_COLUMNS before and after this revision.
BEFORE = (
    'town_code', 'village_code', 'grid_code', 'matter_code', 'source', 'state',
    'lead_department_id', 'reporter_id', 'accepted_at', 'dispatched_at', 'handled_at',
    'closed_at', 'due_at', 'shelved_at', 'overdue', 'self_handled', 'extension_count',
    'rework_count', 'return_count', 'satisfaction', 'lng', 'lat',
)
AFTER = (
    'town_code', 'village_code', 'grid_code', 'matter_code', 'source', 'state',
    'lead_department_id', 'reporter_id', 'accepted_at', 'dispatched_at', 'handled_at',
    'verified_at', 'closed_at', 'due_at', 'shelved_at', 'overdue', 'self_handled', 'handle_late',
    'verify_late', 'extension_count', 'rework_count', 'return_count', 'satisfaction',
    'lng', 'lat',
)


def _covering(batch_op, covered: tuple[str, ...]) -> None:
    batch_op.create_index(
        'ix_events_county_cover', ['county_code', 'reported_at', *covered], unique=False
    )
    batch_op.create_index(
        'ix_events_town_cover',
        ['town_code', 'reported_at', *(c for c in covered if c != 'town_code')],
        unique=False,
    )


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_county_cover')
        batch_op.drop_index('ix_events_town_cover')
        batch_op.add_column(
            sa.Column('handle_late', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column('verify_late', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table('events', schema=None) as batch_op:
        _covering(batch_op, AFTER)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_county_cover')
        batch_op.drop_index('ix_events_town_cover')
        batch_op.drop_column('verify_late')
        batch_op.drop_column('handle_late')
    with op.batch_alter_table('events', schema=None) as batch_op:
        _covering(batch_op, BEFORE)
