"""Tenants, API keys, and who is calling (the principal)."""
