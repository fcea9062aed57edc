"""Ray's scheduling strategy objects, for ``scheduling_strategy=`` on actors and tasks.

mpirt accepts them so Ray programs run unchanged; what each one means here is said on
the class (mpirt places work itself: see docs/design.md, "Resources").
"""


class NodeAffinitySchedulingStrategy:
    """Ask for a particular node (``node_id`` as ``nodes()`` reports it).

    Accepted for Ray compatibility. A hard affinity (``soft=False``) to a node that does not exist raises at
    ``.remote()``; otherwise placement is still mpirt's own choice (on one node, the same thing).
    """

    def __init__(self, node_id, soft, _spill_on_unavailable=False, _fail_on_unavailable=False):
        if isinstance(node_id, bool) or not isinstance(node_id, (str, int)):
            raise TypeError(f"NodeAffinitySchedulingStrategy: node_id must be a node id (a string, as Ray's, "
                            f"or an mpirt NodeID), got {node_id!r}")
        if node_id == "":
            raise ValueError("Invalid node_id ''. To get a list of all nodes and their IDs in your cluster, "
                             "use ray.nodes().")
        if _spill_on_unavailable and not soft:
            raise ValueError("_spill_on_unavailable cannot be set when soft is False. Please set soft to True "
                             "to use _spill_on_unavailable.")
        if _fail_on_unavailable and soft:
            raise ValueError("_fail_on_unavailable cannot be set when soft is True. Please set soft to False "
                             "to use _fail_on_unavailable.")
        self.node_id = str(node_id)
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft!r})"
