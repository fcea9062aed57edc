"""Every message the ranks of a job send each other: its kind, its fields, who sends it, who handles it.

A message is a tuple ``(kind, *fields)``: tuples pickle and dispatch fastest, and most travel in batches on
the hot path. ``Runtime._dispatch`` calls ``handler(source, *fields)``; ``Runtime.register`` checks each
handler against ``MESSAGES``, so a kind not declared, or a handler that cannot take its fields, fails when
the rank starts, not when the first such message arrives. A *query* (``kind`` ending in ``_query``) is a
request a thread waits for: its first field is the request id, and its handler answers with ``query_reply``
(``Queries.ask`` and ``Queries.answer``). ``docs/architecture.md`` ("Message catalogue") names each kind's
sender and handler; ``tests/test_protocol.py`` checks that every kind here is there.
"""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

DRIVER_RANK = 0   # runs the user's program; ``init()`` returns only there
HEAD_RANK = 1     # the head scheduler (``scheduler/head.py``)


class Message(NamedTuple):
    kind: str
    fields: tuple[str, ...]   # after the kind, in order; a trailing ``name?`` may be left out
    sender: str               # the role that sends it
    handler: str              # the role that handles it

    @property
    def arity(self) -> tuple[int, int]:
        """(fewest, most) fields a message of this kind carries."""
        required = sum(1 for field in self.fields if not field.endswith("?"))
        return required, len(self.fields)


_DECLARED = (
    # tasks: submitter <-> executor of the leased worker
    Message("task", ("lease_id", "spec"), "submitter", "executor"),
    Message("done", ("task_id", "blobs", "is_error", "retryable", "seconds"), "executor", "submitter"),
    Message("steal", ("lease_id",), "submitter", "executor"),
    Message("stolen", ("lease_id", "task_ids"), "executor", "submitter"),
    Message("cancel", ("task_id", "force", "recursive?"), "submitter", "executor"),
    Message("cancel_request", ("object_id", "force", "recursive"), "any rank", "submitter of the task"),
    # scheduling: submitters, executors and actor callers <-> head
    Message("lease_req", ("key", "shape", "preferred", "constraint"), "submitter", "head"),
    Message("lease_grant", ("key", "lease_id", "worker"), "head", "submitter"),
    Message("lease_ret", ("lease_id",), "submitter", "head"),
    Message("lease_unschedulable", ("key", "why"), "head", "submitter"),
    Message("cpu_release", ("shape",), "executor", "head"),
    Message("cpu_reacquire", ("shape",), "executor", "head"),
    Message("resources_query", ("request_id",), "any rank", "head"),
    # actors: caller and owner (actor_caller) <-> host (actor_host), placement by the head
    Message("actor_place", ("actor_id", "placement", "held", "constraint"), "actor owner", "head"),
    Message("actor_placed", ("actor_id", "worker"), "head", "actor owner"),
    Message("actor_unplaceable", ("actor_id", "why"), "head", "actor owner"),
    Message("actor_pending", ("actor_id", "why", "waited_s"), "head", "actor owner"),
    Message("actor_create", ("actor_id", "class_blob", "args_blob", "inlined", "options", "failed_blob"),
            "actor owner", "actor host"),
    Message("actor_call", ("actor_id", "call_id", "method", "args_blob", "inlined", "num_returns", "overrides?"),
            "actor caller", "actor host"),
    Message("actor_done", ("call_id", "blobs", "is_error"), "actor host", "actor caller"),
    Message("actor_locate", ("actor_id",), "actor caller", "actor owner"),
    Message("actor_where", ("actor_id",), "actor caller", "head"),
    Message("actor_location", ("actor_id", "worker", "max_task_retries?"), "actor owner or head", "actor caller"),
    Message("actor_kill", ("actor_id", "why?"), "any rank or the head", "actor host"),
    Message("actor_kill_restart", ("actor_id",), "any rank", "actor owner"),
    Message("actor_restart", ("actor_id",), "actor owner", "actor host"),
    Message("actor_restarted", ("actor_id",), "actor host", "actor owner"),
    Message("actor_terminate", ("actor_id",), "actor owner", "actor host"),
    Message("actor_cancel_call", ("actor_id", "call_id"), "actor caller", "actor host"),
    Message("actor_dead", ("actor_id",), "actor host or owner", "head"),
    Message("actor_name_query", ("request_id", "namespace", "name", "state"), "any rank", "head"),
    Message("actor_names_query", ("request_id", "namespace"), "any rank", "head"),
    # placement groups: any rank <-> head
    Message("group_create", ("group_id", "shapes", "strategy", "name", "namespace", "lifetime"), "any rank", "head"),
    Message("group_wait", ("group_id", "object_id"), "any rank", "head"),
    Message("group_ready", ("object_id", "removed"), "head", "rank waiting for a group"),
    Message("group_remove", ("group_id",), "any rank", "head"),
    Message("group_removed", ("group_id",), "head", "submitter with tasks in the group"),
    Message("group_table_query", ("request_id", "group_id"), "any rank", "head"),
    Message("group_name_query", ("request_id", "namespace", "name"), "any rank", "head"),
    # collective groups (mpirt.util.collective): members meet at the head (scheduler/collectives.py)
    Message("collective_declare_query", ("request_id", "name", "world_size", "rank_of_actor", "backend"),
            "driver (create_collective_group)", "head"),
    Message("collective_join_query", ("request_id", "name", "world_size", "rank", "actor_id", "backend"),
            "collective group member", "head"),
    Message("collective_leave", ("name", "rank"), "collective group member", "head"),
    # streaming generators: the rank running one -> its caller (streams.py)
    Message("gen_item", ("stream_id", "index", "blob"), "rank running a generator", "its caller"),
    Message("gen_ack", ("stream_id", "consumed"), "caller reading a generator", "rank running it"),
    # objects and reference counting: borrower <-> owner
    Message("obj_req", ("object_id",), "borrower", "object owner"),
    Message("obj", ("object_id", "blob", "is_error"), "object owner", "borrower"),
    Message("obj_ref", ("key", "event"), "borrower", "object owner"),
    Message("actor_ref", ("key", "event"), "borrower", "actor owner"),
    # object store: reader <-> owner and holder
    Message("store_pin", ("object_id",), "reader", "object owner"),
    Message("store_unpin", ("object_id",), "reader", "object owner"),
    Message("store_free", ("location",), "object owner", "holder"),
    Message("store_adopt_report", ("dead", "keys"), "rank of a dead rank's node", "the node's adopter"),
    Message("store_wake", (), "reader on another node", "holder"),
    Message("store_read_done", (), "reader on another node", "holder"),
    Message("store_read_query", ("request_id", "key", "start", "size"), "reader on another node", "holder"),
    Message("store_read_spilled_query", ("request_id", "key"), "reader", "holder"),
    Message("store_locate_query", ("request_id", "key"), "reader", "holder"),
    Message("store_make_room_query", ("request_id", "size"), "writer", "rank of the same node"),
    Message("store_stats_query", ("request_id",), "any rank", "every rank"),
    Message("device_free", ("keys",), "object owner", "holder"),
    Message("device_fetch", ("key", "tag", "direct"), "reader", "holder"),
    Message("device_fetch_failed", ("tag", "why"), "holder", "reader"),
    # queries and observability
    Message("query_reply", ("request_id", "value"), "handler of a query", "asking rank"),
    Message("timeline_query", ("request_id",), "any rank", "every rank"),
    Message("state_query", ("request_id", "what"), "any rank (state API, status writer)", "every rank"),
    # faults and replacement ranks
    Message("rank_died", ("rank",), "driver", "every other rank"),
    Message("replace_round", ("dead", "first"), "driver", "head or every live rank"),
    Message("replace_commit", ("plan",), "driver", "other workers"),
    Message("replace_committed", (), "worker", "driver"),
    Message("replace_abandoned", ("why",), "driver", "every live rank"),
    Message("replace_pool_query", ("request_id",), "driver", "rank of the dead rank's node"),
    # output of other ranks, and shutdown
    Message("log", ("stream_name", "prefix", "pid", "text"), "every other rank", "driver"),
    Message("shutdown", ("free_store",), "driver", "every other rank"),
    Message("shutdown_ack", (), "every other rank", "driver"),
)

MESSAGES: dict[str, Message] = {message.kind: message for message in _DECLARED}


class ProtocolError(TypeError):
    """A handler registered for an undeclared kind, or one that cannot take its kind's fields."""


def check_handler(kind: str, handler: Callable) -> None:
    """Raise ProtocolError unless ``handler(source, *fields)`` fits every declared form of ``kind``."""
    message = MESSAGES.get(kind)
    if message is None:
        raise ProtocolError(f"no message kind {kind!r} in mpirt/core/protocol.py: declare it there (fields, sender, "
                            f"handler) and in docs/architecture.md before registering a handler")
    fewest, most = message.arity
    parameters = inspect.signature(handler).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    if required > 1 + fewest or len(positional) < 1 + most:
        name = getattr(handler, "__qualname__", repr(handler))
        raise ProtocolError(f"{name} cannot handle {kind!r}: it is called as (source, {', '.join(message.fields)}) "
                            f"with {fewest}-{most} fields, and takes {len(positional)} positional parameters "
                            f"({required} required)")
