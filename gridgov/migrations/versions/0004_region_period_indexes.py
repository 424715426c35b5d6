"""(region code, reported_at) indexes replace the single-column region code indexes;
the county and town ones cover the columns the numbers and the map's clusters read

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 08:30:00
"""

from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Frozen copy of gridgov.models.events.COVERED_COLUMNS as of this revision.
COVERED = (
    'town_code', 'village_code', 'grid_code', 'matter_code', 'source', 'state',
    'lead_department_id', 'reporter_id', 'accepted_at', 'dispatched_at', 'handled_at',
    'closed_at', 'due_at', 'shelved_at', 'overdue', 'self_handled', 'extension_count',
    'rework_count', 'return_count', 'satisfaction', 'lng', 'lat',
)
NEW = {
    'county': ('ix_events_county_cover', ['county_code', 'reported_at', *COVERED]),
    'town': (
        'ix_events_town_cover',
        ['town_code', 'reported_at', *(c for c in COVERED if c != 'town_code')],
    ),
    'village': ('ix_events_village_reported', ['village_code', 'reported_at']),
}


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        for level, (name, columns) in NEW.items():
            batch_op.drop_index(f'ix_events_{level}_code')
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        for level, (name, _) in NEW.items():
            batch_op.drop_index(name)
            batch_op.create_index(f'ix_events_{level}_code', [f'{level}_code'], unique=False)
