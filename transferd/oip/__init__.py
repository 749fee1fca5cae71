"""Stubs of the Open Inference Protocol v2 (package `inference`): run `make stubs` to generate them.

Generated into a descriptor pool of their own, so that they load beside tritonclient's stubs,
which register the same message names in protobuf's default pool.
"""
