"""A replicated table: created on every node and added to the set in one migration.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_replicated_table(
        "api_coupons",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("code", sa.Text, nullable=False),
        schema="public")
    op.execute_everywhere("comment on table public.api_coupons is 'coupons, replicated';")


def downgrade():
    op.drop_replicated_table("api_coupons", schema="public")
