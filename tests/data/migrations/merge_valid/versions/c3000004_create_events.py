"""create events

Revision ID: c3000004
Revises: b2000002
"""

import sqlalchemy as sa
from alembic import op

revision = "c3000004"
down_revision = "b2000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "account_id", sa.BigInteger(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('login', 'logout')", name="events_kind_known"),
    )


def downgrade() -> None:
    op.drop_table("events")
