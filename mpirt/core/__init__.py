"""The runtime under the public API: one module per role and per mechanism (docs/architecture.md).

Roles: ``submitter`` (tasks this rank submits), ``executor`` (tasks this worker runs, with
``task_slots``/``slot_process``/``slot_wire`` for multi-CPU ranks), ``actor_caller`` (actors this
rank owns or calls), ``actor_host`` (actors this worker hosts); ``invoke`` runs a call for all of
them. ``runtime`` builds one of each per rank and dispatches messages to them.

Mechanisms: ``protocol`` (every message), ``transport`` and ``host_socket`` (moving them),
``objects`` (the object table), ``reachability`` (reference counting), ``serialization``,
``fault`` and ``replacement`` (rank deaths, ULFM), ``log_forward``, ``tracing``.

Leaves: ``current`` (the running Runtime), ``call_context`` (what runs in this thread),
``lifecycle``, ``threads``, ``signals``, ``object_ref``, ``runtime_env``, ``_mpi_env``.
"""
