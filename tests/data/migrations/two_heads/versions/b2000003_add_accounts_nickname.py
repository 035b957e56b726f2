"""add accounts nickname

Revision ID: b2000003
Revises: a1000001
"""

import sqlalchemy as sa
from alembic import op

revision = "b2000003"
down_revision = "a1000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("nickname", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "nickname")
