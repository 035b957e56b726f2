"""opsverify: operational verification gates for web services on PostgreSQL and Redis."""

__version__ = "0.1.0"
