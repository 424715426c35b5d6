"""events, actions, attachments, notices, audit log, api tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 05:08:11.372090
"""

from alembic import op
import sqlalchemy as sa
import gridgov.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    audit_head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.Integer(), nullable=False),
    sa.Column('last_mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.bulk_insert(audit_head, [{"id": 1, "last_id": 0, "last_mac": "0" * 64}])
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('prev_mac', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_object_id'), ['object_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_object_type'), ['object_type'], unique=False)

    op.create_table('event_counters',
    sa.Column('county_code', sa.String(length=6), nullable=False),
    sa.Column('day', sa.String(length=8), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('county_code', 'day', name=op.f('pk_event_counters'))
    )
    op.create_table('api_tokens',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_api_tokens'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=24), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('matter_code', sa.String(length=16), nullable=False),
    sa.Column('urgency', sa.String(length=12), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('lng', sa.Float(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('input_crs', sa.String(length=12), nullable=False),
    sa.Column('input_lng', sa.Float(), nullable=True),
    sa.Column('input_lat', sa.Float(), nullable=True),
    sa.Column('location_accuracy_m', sa.Float(), nullable=True),
    sa.Column('snapped_m', sa.Float(), nullable=True),
    sa.Column('grid_id', sa.Integer(), nullable=False),
    sa.Column('grid_code', sa.String(length=15), nullable=False),
    sa.Column('village_code', sa.String(length=12), nullable=False),
    sa.Column('town_code', sa.String(length=9), nullable=False),
    sa.Column('county_code', sa.String(length=6), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('reporter_name', sa.String(length=64), nullable=False),
    sa.Column('reporter_phone', sa.String(length=32), nullable=False),
    sa.Column('client_key', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('holder_level', sa.String(length=16), nullable=False),
    sa.Column('holder_region_code', sa.String(length=12), nullable=True),
    sa.Column('holder_department_id', sa.Integer(), nullable=True),
    sa.Column('holder_user_id', sa.Integer(), nullable=True),
    sa.Column('dispatcher_level', sa.String(length=16), nullable=True),
    sa.Column('dispatcher_region_code', sa.String(length=12), nullable=True),
    sa.Column('lead_department_id', sa.Integer(), nullable=True),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stage', sa.String(length=12), nullable=True),
    sa.Column('stage_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stage_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('shelved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('shelved_from', sa.String(length=16), nullable=True),
    sa.Column('overdue', sa.Boolean(), nullable=False),
    sa.Column('overdue_notice_for', sa.DateTime(timezone=True), nullable=True),
    sa.Column('warning_notice_for', sa.DateTime(timezone=True), nullable=True),
    sa.Column('extension_pending_days', sa.Integer(), nullable=True),
    sa.Column('extension_count', sa.Integer(), nullable=False),
    sa.Column('rework_count', sa.Integer(), nullable=False),
    sa.Column('return_count', sa.Integer(), nullable=False),
    sa.Column('self_handled', sa.Boolean(), nullable=False),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('satisfaction', sa.String(length=12), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(holder_level <> 'department') OR (holder_department_id IS NOT NULL)", name=op.f('ck_events_department_holder_named')),
    sa.CheckConstraint("(holder_level <> 'grid_worker') OR (holder_user_id IS NOT NULL)", name=op.f('ck_events_grid_worker_holder_named')),
    sa.CheckConstraint("(holder_level NOT IN ('town', 'county')) OR (holder_region_code IS NOT NULL)", name=op.f('ck_events_centre_holder_named')),
    sa.CheckConstraint("(state <> 'closed') OR (closed_at IS NOT NULL)", name=op.f('ck_events_closed_has_time')),
    sa.CheckConstraint("(state <> 'merged') OR (merged_into_id IS NOT NULL)", name=op.f('ck_events_merge_target')),
    sa.CheckConstraint("(state NOT IN ('closed', 'rejected', 'voided', 'merged', 'withdrawn')) OR (holder_level = 'none')", name=op.f('ck_events_terminal_has_no_holder')),
    sa.CheckConstraint("holder_level IN ('town', 'county', 'department', 'grid_worker', 'none')", name=op.f('ck_events_holder_level')),
    sa.CheckConstraint("satisfaction IS NULL OR satisfaction IN ('satisfied', 'basically', 'unsatisfied')", name=op.f('ck_events_satisfaction')),
    sa.CheckConstraint("source IN ('grid_worker', 'hotline', 'sensor', 'citizen', 'centre')", name=op.f('ck_events_source')),
    sa.CheckConstraint("state IN ('reported', 'accepted', 'dispatched', 'handling', 'returned', 'shelved', 'handled', 'verified', 'closed', 'rejected', 'voided', 'merged', 'withdrawn')", name=op.f('ck_events_state')),
    sa.CheckConstraint("urgency IN ('urgent', 'pressing', 'normal')", name=op.f('ck_events_urgency')),
    sa.ForeignKeyConstraint(['grid_id'], ['grids.id'], name=op.f('fk_events_grid_id_grids')),
    sa.ForeignKeyConstraint(['holder_department_id'], ['departments.id'], name=op.f('fk_events_holder_department_id_departments')),
    sa.ForeignKeyConstraint(['holder_user_id'], ['users.id'], name=op.f('fk_events_holder_user_id_users')),
    sa.ForeignKeyConstraint(['lead_department_id'], ['departments.id'], name=op.f('fk_events_lead_department_id_departments')),
    sa.ForeignKeyConstraint(['matter_code'], ['matters.code'], name=op.f('fk_events_matter_code_matters')),
    sa.ForeignKeyConstraint(['merged_into_id'], ['events.id'], name=op.f('fk_events_merged_into_id_events')),
    sa.ForeignKeyConstraint(['reporter_id'], ['users.id'], name=op.f('fk_events_reporter_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('code', name=op.f('uq_events_code')),
    sa.UniqueConstraint('reporter_id', 'client_key', name='uq_events_reporter_client_key')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_county_code'), ['county_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_grid_code'), ['grid_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_grid_id'), ['grid_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_holder_department_id'), ['holder_department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_holder_region_code'), ['holder_region_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_holder_user_id'), ['holder_user_id'], unique=False)
        batch_op.create_index('ix_events_lng_lat', ['lng', 'lat'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_matter_code'), ['matter_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_overdue'), ['overdue'], unique=False)
        batch_op.create_index('ix_events_reported_at', ['reported_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_reporter_id'), ['reporter_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_state'), ['state'], unique=False)
        batch_op.create_index('ix_events_state_due', ['state', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_town_code'), ['town_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_village_code'), ['village_code'], unique=False)

    op.create_table('event_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=64), nullable=False),
    sa.Column('actor_role', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('holder_before', sa.String(length=80), nullable=False),
    sa.Column('holder_after', sa.String(length=80), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_event_actions_actor_id_users')),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_event_actions_event_id_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_actions'))
    )
    with op.batch_alter_table('event_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_actions_event_id'), ['event_id'], unique=False)

    op.create_table('event_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('lead', 'assist')", name=op.f('ck_event_assignments_role')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_event_assignments_department_id_departments')),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_event_assignments_event_id_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_assignments'))
    )
    with op.batch_alter_table('event_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_assignments_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_assignments_event_id'), ['event_id'], unique=False)

    op.create_table('notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_notices_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notices_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notices'))
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notices_user_id'), ['user_id'], unique=False)

    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('action_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('thumb_path', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=32), nullable=False),
    sa.Column('original_format', sa.String(length=16), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exif_lng', sa.Float(), nullable=True),
    sa.Column('exif_lat', sa.Float(), nullable=True),
    sa.Column('uploaded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("kind IN ('before', 'after', 'evidence')", name=op.f('ck_attachments_kind')),
    sa.ForeignKeyConstraint(['action_id'], ['event_actions.id'], name=op.f('fk_attachments_action_id_event_actions')),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_attachments_event_id_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['uploaded_by'], ['users.id'], name=op.f('fk_attachments_uploaded_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    sa.UniqueConstraint('event_id', 'sha256', name='uq_attachments_event_sha256')
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_action_id'), ['action_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_event_id'), ['event_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_event_id'))
        batch_op.drop_index(batch_op.f('ix_attachments_action_id'))

    op.drop_table('attachments')
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notices_user_id'))

    op.drop_table('notices')
    with op.batch_alter_table('event_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_assignments_event_id'))
        batch_op.drop_index(batch_op.f('ix_event_assignments_department_id'))

    op.drop_table('event_assignments')
    with op.batch_alter_table('event_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_actions_event_id'))

    op.drop_table('event_actions')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_village_code'))
        batch_op.drop_index(batch_op.f('ix_events_town_code'))
        batch_op.drop_index('ix_events_state_due')
        batch_op.drop_index(batch_op.f('ix_events_state'))
        batch_op.drop_index(batch_op.f('ix_events_reporter_id'))
        batch_op.drop_index('ix_events_reported_at')
        batch_op.drop_index(batch_op.f('ix_events_overdue'))
        batch_op.drop_index(batch_op.f('ix_events_matter_code'))
        batch_op.drop_index('ix_events_lng_lat')
        batch_op.drop_index(batch_op.f('ix_events_holder_user_id'))
        batch_op.drop_index(batch_op.f('ix_events_holder_region_code'))
        batch_op.drop_index(batch_op.f('ix_events_holder_department_id'))
        batch_op.drop_index(batch_op.f('ix_events_grid_id'))
        batch_op.drop_index(batch_op.f('ix_events_grid_code'))
        batch_op.drop_index(batch_op.f('ix_events_county_code'))

    op.drop_table('events')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    op.drop_table('event_counters')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_object_type'))
        batch_op.drop_index(batch_op.f('ix_audit_log_object_id'))

    op.drop_table('audit_log')
    op.drop_table('audit_head')
