"""initial schema: regions, grids, org, matters, calendar

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 05:00:23.712057
"""

from alembic import op
import sqlalchemy as sa
import gridgov.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table('calendar_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('is_workday', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_calendar_days'))
    )
    op.create_table('calendar_years',
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_calendar_years'))
    )
    op.create_table('matter_categories',
    sa.Column('code', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('sort', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_matter_categories'))
    )
    op.create_table('regions',
    sa.Column('code', sa.String(length=12), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('parent_code', sa.String(length=12), nullable=True),
    sa.Column('geom', gridgov.db.Geometry('MULTIPOLYGON'), nullable=True),
    sa.Column('synthetic', sa.Boolean(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.CheckConstraint("(level = 'county' AND length(code) = 6) OR (level = 'town' AND length(code) = 9) OR (level = 'village' AND length(code) = 12)", name=op.f('ck_regions_code_matches_level')),
    sa.CheckConstraint("(level = 'county') OR (parent_code IS NOT NULL)", name=op.f('ck_regions_parent_below_county')),
    sa.ForeignKeyConstraint(['parent_code'], ['regions.code'], name=op.f('fk_regions_parent_code_regions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_regions'))
    )
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_regions_level'), ['level'], unique=False)
        batch_op.create_index(batch_op.f('ix_regions_parent_code'), ['parent_code'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('departments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("level IN ('county', 'town')", name=op.f('ck_departments_level')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_departments_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_departments')),
    sa.UniqueConstraint('code', name=op.f('uq_departments_code'))
    )
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_departments_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_departments_region_code'), ['region_code'], unique=False)

    op.create_table('grid_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('county_code', sa.String(length=12), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('synthetic', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('grid_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['county_code'], ['regions.code'], name=op.f('fk_grid_sets_county_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grid_sets'))
    )
    with op.batch_alter_table('grid_sets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_grid_sets_county_code'), ['county_code'], unique=False)
        batch_op.create_index('uq_grid_sets_active_county', ['county_code'], unique=True, sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.create_table('matters',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('category_code', sa.String(length=8), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('handling_level', sa.String(length=8), nullable=False),
    sa.Column('lead_kind', sa.String(length=32), nullable=False),
    sa.Column('self_handle_allowed', sa.Boolean(), nullable=False),
    sa.Column('photo_required', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("handling_level IN ('village', 'town', 'county')", name=op.f('ck_matters_handling_level')),
    sa.ForeignKeyConstraint(['category_code'], ['matter_categories.code'], name=op.f('fk_matters_category_code_matter_categories')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_matters'))
    )
    with op.batch_alter_table('matters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_matters_category_code'), ['category_code'], unique=False)

    op.create_table('grids',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_set_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=15), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('village_code', sa.String(length=12), nullable=False),
    sa.Column('geom', gridgov.db.Geometry('MULTIPOLYGON'), nullable=False),
    sa.Column('area_m2', sa.Float(), nullable=False),
    sa.CheckConstraint('length(code) = 15', name=op.f('ck_grids_code_length')),
    sa.ForeignKeyConstraint(['grid_set_id'], ['grid_sets.id'], name=op.f('fk_grids_grid_set_id_grid_sets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['village_code'], ['regions.code'], name=op.f('fk_grids_village_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grids')),
    sa.UniqueConstraint('grid_set_id', 'code', name='uq_grids_set_code')
    )
    with op.batch_alter_table('grids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_grids_code'), ['code'], unique=False)
        batch_op.create_index(batch_op.f('ix_grids_grid_set_id'), ['grid_set_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_grids_village_code'), ['village_code'], unique=False)

    op.create_table('matter_assists',
    sa.Column('matter_code', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['matter_code'], ['matters.code'], name=op.f('fk_matter_assists_matter_code_matters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('matter_code', 'kind', name=op.f('pk_matter_assists'))
    )
    op.create_table('matter_time_limits',
    sa.Column('matter_code', sa.String(length=16), nullable=False),
    sa.Column('urgency', sa.String(length=12), nullable=False),
    sa.Column('stage', sa.String(length=12), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.CheckConstraint("stage IN ('accept', 'dispatch', 'handle', 'verify')", name=op.f('ck_matter_time_limits_stage')),
    sa.CheckConstraint("unit IN ('hours', 'working_hours', 'working_days')", name=op.f('ck_matter_time_limits_unit')),
    sa.CheckConstraint("urgency IN ('urgent', 'pressing', 'normal')", name=op.f('ck_matter_time_limits_urgency')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_matter_time_limits_amount_positive')),
    sa.ForeignKeyConstraint(['matter_code'], ['matters.code'], name=op.f('fk_matter_time_limits_matter_code_matters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('matter_code', 'urgency', 'stage', name=op.f('pk_matter_time_limits'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('region_code', sa.String(length=12), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('password_changed_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(role <> 'dept_handler') OR (department_id IS NOT NULL)", name=op.f('ck_users_handler_has_dept')),
    sa.CheckConstraint("role IN ('grid_worker', 'town_operator', 'county_dispatcher', 'county_shift_lead', 'dept_handler', 'leader', 'sys_admin', 'sec_admin', 'audit_admin')", name=op.f('ck_users_role')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_users_department_id_departments')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_users_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_users_region_code'), ['region_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_users_role'), ['role'], unique=False)

    op.create_table('user_grids',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('grid_code', sa.String(length=15), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_grids_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'grid_code', name=op.f('pk_user_grids'))
    )
    with op.batch_alter_table('user_grids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_grids_grid_code'), ['grid_code'], unique=False)

    if postgres:
        op.create_index("ix_regions_geom", "regions", ["geom"], postgresql_using="gist")
        op.create_index("ix_grids_geom", "grids", ["geom"], postgresql_using="gist")


def downgrade() -> None:
    with op.batch_alter_table('user_grids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_grids_grid_code'))

    op.drop_table('user_grids')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_role'))
        batch_op.drop_index(batch_op.f('ix_users_region_code'))
        batch_op.drop_index(batch_op.f('ix_users_department_id'))

    op.drop_table('users')
    op.drop_table('matter_time_limits')
    op.drop_table('matter_assists')
    with op.batch_alter_table('grids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_grids_village_code'))
        batch_op.drop_index(batch_op.f('ix_grids_grid_set_id'))
        batch_op.drop_index(batch_op.f('ix_grids_code'))

    op.drop_table('grids')
    with op.batch_alter_table('matters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_matters_category_code'))

    op.drop_table('matters')
    with op.batch_alter_table('grid_sets', schema=None) as batch_op:
        batch_op.drop_index('uq_grid_sets_active_county', sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))
        batch_op.drop_index(batch_op.f('ix_grid_sets_county_code'))

    op.drop_table('grid_sets')
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_departments_region_code'))
        batch_op.drop_index(batch_op.f('ix_departments_kind'))

    op.drop_table('departments')
    op.drop_table('settings')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_regions_parent_code'))
        batch_op.drop_index(batch_op.f('ix_regions_level'))

    op.drop_table('regions')
    op.drop_table('matter_categories')
    op.drop_table('calendar_years')
    op.drop_table('calendar_days')
