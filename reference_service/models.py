"""The reference service's schema as SQLAlchemy metadata: what head must equal (the drift check).

The service itself speaks SQL through psycopg; this module exists so the migration gate can prove
its autogenerate diff empty (`migrations.metadata = "reference_service.models:metadata"`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("sku", sa.Text(), nullable=False),
    sa.Column("price_cents", sa.BigInteger(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("category", sa.Text(), nullable=True, server_default=sa.text("'general'")),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("price_cents >= 0", name="items_price_cents_nonnegative"),
    sa.Index("items_sku_key", "sku", unique=True),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
    sa.Column("item_id", sa.BigInteger(), sa.ForeignKey("items.id", name="outbox_item_id_fkey", ondelete="SET NULL")),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Column("payload", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
    sa.Column("attempts", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()")),
    sa.CheckConstraint("status IN ('pending', 'sent', 'dead')", name="outbox_status_known"),
    sa.Index("outbox_status_idx", "status"),
    sa.Index("outbox_item_id_idx", "item_id"),
)
