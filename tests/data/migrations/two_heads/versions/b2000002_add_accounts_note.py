"""add accounts note

Revision ID: b2000002
Revises: a1000001
"""

import sqlalchemy as sa
from alembic import op

revision = "b2000002"
down_revision = "a1000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "note")
