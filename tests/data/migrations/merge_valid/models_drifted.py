"""Models one change ahead of the merge_valid tree: accounts.plan has no migration."""

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column("email", sa.Text(), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("plan", sa.Text(), nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column(
        "account_id", sa.BigInteger(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.CheckConstraint("kind IN ('login', 'logout')", name="events_kind_known"),
)
