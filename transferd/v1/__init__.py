"""Stubs for package `transferd.v1`: run `make stubs` (or any make target) to generate them."""
