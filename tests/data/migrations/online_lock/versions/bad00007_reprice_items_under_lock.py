"""reprice items under an exclusive lock

Holds ACCESS EXCLUSIVE on items for ~3 s: every read of items queues behind it.

Revision ID: bad00007
Revises: 5a0e0006
"""

from alembic import op

revision = "bad00007"
down_revision = "5a0e0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    op.execute("SELECT pg_sleep(3)")


def downgrade() -> None:
    pass
