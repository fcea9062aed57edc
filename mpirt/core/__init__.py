"""The runtime under the public API: one module per role and per mechanism (docs/architecture.md maps them).

Roles: ``submitter``, ``executor`` (with ``task_slots``, ``slot_process``, ``slot_wire``), ``actor_caller``,
``actor_host``, and ``invoke`` that runs a call for all of them; ``runtime`` builds one of each per rank,
dispatches messages to them and is the core of ``put``/``get``. The other modules are mechanisms (messages,
objects, reference counting, faults, ...) and leaves: ``current`` (the running Runtime), ``call_context``
(what runs in this thread), ``lifecycle``, ``ids``, ``object_ref``, ``threads``, ``signals``, ``_mpi_env``.
"""
