"""Durable state: the metadata database (SQLAlchemy) and the head artifact files."""
