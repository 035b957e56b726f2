"""merge note and events

Revision ID: d4000005
Revises: ("c3000003", "c3000004")
"""

revision = "d4000005"
down_revision = ("c3000003", "c3000004")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
