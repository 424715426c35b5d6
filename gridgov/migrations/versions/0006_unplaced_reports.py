"""unplaced_reports: reports the county centre places by hand (待定位, 属地兜底)

A hotline, sensor or citizen report whose position lies outside every grid, or that has no
position and names no village, is kept here as received until it is placed (it becomes an
event) or discarded with a reason. A new table: nothing existing changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('unplaced_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('county_code', sa.String(length=12), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('matter_code', sa.String(length=16), nullable=False),
    sa.Column('urgency', sa.String(length=12), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('place_text', sa.String(length=100), nullable=False),
    sa.Column('input_lng', sa.Float(), nullable=True),
    sa.Column('input_lat', sa.Float(), nullable=True),
    sa.Column('input_crs', sa.String(length=12), nullable=False),
    sa.Column('lng', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('location_accuracy_m', sa.Float(), nullable=True),
    sa.Column('reporter_name', sa.String(length=64), nullable=False),
    sa.Column('reporter_phone', sa.String(length=32), nullable=False),
    sa.Column('submitted_by_id', sa.Integer(), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('nearest_m', sa.Float(), nullable=True),
    sa.Column('nearest_grid_code', sa.String(length=15), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('resolved_by_id', sa.Integer(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discard_reason', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(reason <> 'outside_grids') OR (lng IS NOT NULL AND lat IS NOT NULL)", name=op.f('ck_unplaced_reports_outside_has_position')),
    sa.CheckConstraint("(status <> 'discarded') OR (discard_reason <> '')", name=op.f('ck_unplaced_reports_discarded_has_reason')),
    sa.CheckConstraint("(status <> 'placed') OR (event_id IS NOT NULL)", name=op.f('ck_unplaced_reports_placed_has_event')),
    sa.CheckConstraint("(status = 'queued') OR (resolved_by_id IS NOT NULL AND resolved_at IS NOT NULL)", name=op.f('ck_unplaced_reports_resolved_has_actor')),
    sa.CheckConstraint("reason IN ('outside_grids', 'no_location')", name=op.f('ck_unplaced_reports_reason')),
    sa.CheckConstraint("source IN ('hotline', 'sensor', 'citizen')", name=op.f('ck_unplaced_reports_source')),
    sa.CheckConstraint("status IN ('queued', 'placed', 'discarded')", name=op.f('ck_unplaced_reports_status')),
    sa.CheckConstraint("urgency IN ('urgent', 'pressing', 'normal')", name=op.f('ck_unplaced_reports_urgency')),
    sa.ForeignKeyConstraint(['county_code'], ['regions.code'], name=op.f('fk_unplaced_reports_county_code_regions')),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_unplaced_reports_event_id_events')),
    sa.ForeignKeyConstraint(['matter_code'], ['matters.code'], name=op.f('fk_unplaced_reports_matter_code_matters')),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_unplaced_reports_resolved_by_id_users')),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'], name=op.f('fk_unplaced_reports_submitted_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unplaced_reports')),
    sa.UniqueConstraint('submitted_by_id', 'client_key', name='uq_unplaced_reports_submitter_client_key')
    )
    with op.batch_alter_table('unplaced_reports', schema=None) as batch_op:
        batch_op.create_index('ix_unplaced_reports_county_status', ['county_code', 'status', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_unplaced_reports_event_id'), ['event_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('unplaced_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unplaced_reports_event_id'))
        batch_op.drop_index('ix_unplaced_reports_county_status')

    op.drop_table('unplaced_reports')
