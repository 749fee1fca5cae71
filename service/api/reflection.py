"""Server reflection over a descriptor pool of exactly the files this server serves.

The Open Inference Protocol's stubs live in a descriptor pool of their own (tritonclient's stubs,
which the Triton runtime imports, define the same names in the default pool), so reflection
cannot answer from the default pool: it answers from one built of the served files and their
dependencies.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool


def served_pool(files: Iterable[FileDescriptor]) -> DescriptorPool:
    """A new pool holding `files` and, before each, the files it imports."""
    pool = DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        added.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        pool.AddSerializedFile(file.serialized_pb)

    for file in files:
        add(file)
    return pool
