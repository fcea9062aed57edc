"""The runtime under the public API: one module per role and per mechanism (docs/architecture.md).

Roles: ``submitter`` (tasks this rank submits), ``executor`` (tasks this worker runs, with
``task_slots``/``slot_process``/``slot_wire`` for multi-CPU ranks), ``actor_caller`` (actors this
rank owns or calls), ``actor_host`` (actors this worker hosts); ``invoke`` runs a call for all of
them. ``runtime`` builds one of each per rank, dispatches messages to them and is the core of
``put``/``get``.

Mechanisms: ``protocol`` (every message), ``transport`` and ``host_socket`` (moving them),
``objects`` (the object table), ``object_value`` and ``codec`` (what a value is, and how it is
encoded), ``serialization`` (arguments), ``reachability`` (reference counting), ``waiting`` (how
``get``/``wait`` block), ``queries``, ``shutdown``, ``fault`` and ``replacement`` (rank deaths,
ULFM), ``log_forward``, ``tracing``, ``runtime_env``, ``gc_tuning``.

Leaves: ``current`` (the running Runtime), ``call_context`` (what runs in this thread),
``lifecycle``, ``ids``, ``object_ref``, ``threads``, ``signals``, ``_mpi_env``.
"""
