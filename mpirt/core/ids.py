"""Ids as Ray prints them: hex strings of tasks, actors, objects, nodes and worker processes.

An mpirt id is an integer (session, owner rank, sequence: ``object_ref.make_object_id``); Ray's
are fixed-length hex strings, so these give the same lengths and prefixes.
"""


def hex_id(value):
    """An mpirt task, actor or object id as the hex string ``ObjectRef.hex()`` prints."""
    return format(value, "028x")


def node_id_hex(session, node):
    """The id of ``node`` (an index into the store's node table) in this session: 56 hex
    digits, as long as Ray's node ids, starting "4e" (N); ``nodes()`` reports the same string."""
    return "4e" + format(session << 32 | node, "054x")


def worker_id_hex(session, rank):
    """The id of the process ``rank`` (every rank is one process): 56 hex digits starting "57" (W)."""
    return "57" + format(session << 32 | rank, "054x")
