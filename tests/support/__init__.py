"""Test doubles and helpers shared by test tiers (no pretrained model, no subprocess)."""
