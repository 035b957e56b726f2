"""index accounts created at

Revision ID: b2000002
Revises: a1000001
"""

from alembic import op

revision = "b2000002"
down_revision = "a1000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("accounts_created_at_idx", "accounts", ["created_at"])


def downgrade() -> None:
    op.drop_index("accounts_created_at_idx", table_name="accounts")
