"""normalize emails

Revision ID: b2000002
Revises: a1000001
"""

from alembic import op

revision = "b2000002"
down_revision = "a1000001"
branch_labels = None
depends_on = None

# Rewrites rows on purpose (lower-cased emails): exempt from row-count equality.
data_change = True


def upgrade() -> None:
    op.execute("UPDATE accounts SET email = lower(email) WHERE email <> lower(email)")


def downgrade() -> None:
    raise NotImplementedError("the original letter case of emails is not kept")
