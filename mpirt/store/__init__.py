"""The object store: large values live in MPI shared-memory windows, not in messages."""
