"""Ray's scheduling strategy objects, for ``scheduling_strategy=`` on actors and tasks.

mpirt accepts them so Ray programs run unchanged; what each one means here is said on
the class (mpirt places work itself: see docs/design.md, "Resources").

``PlacementGroup`` is the handle ``mpirt.util.placement_group()`` returns; it lives here because
the options, the submitter and the public functions all need it and it needs none of them.
"""
from ..core import object_ref
from ..core.current import runtime_for_call
from ..exceptions import GetTimeoutError

_ID_HEX_DIGITS = 36   # Ray's placement group ids are 18 bytes


class PlacementGroupID:
    """A placement group's id (Ray's ``PlacementGroupID``): ``hex()``, ``binary()``, ``is_nil()``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    @classmethod
    def nil(cls):
        return cls(0)

    def hex(self):
        return format(self.value, f"0{_ID_HEX_DIGITS}x")

    def binary(self):
        return self.value.to_bytes(_ID_HEX_DIGITS // 2, "big")

    def is_nil(self):
        return self.value == 0

    def __eq__(self, other):
        return isinstance(other, PlacementGroupID) and other.value == self.value

    def __hash__(self):
        return hash(self.value)

    def __reduce__(self):
        return (PlacementGroupID, (self.value,))

    def __repr__(self):
        return f"PlacementGroupID({self.hex()})"


class PlacementGroup:
    """A handle to a placement group: pass it to ``PlacementGroupSchedulingStrategy``, to tasks
    and to actors (it pickles as its id and bundles)."""

    @staticmethod
    def empty():
        return PlacementGroup(PlacementGroupID.nil())

    def __init__(self, id, bundle_cache=None):
        self.id = id
        self.bundle_cache = bundle_cache

    @property
    def is_empty(self):
        return self.id.is_nil()

    def ready(self):
        """An ObjectRef that resolves (to this handle) once every bundle is reserved."""
        return runtime_for_call().groups.ready(self)

    def wait(self, timeout_seconds=30):
        """Wait until every bundle is reserved: True, or False after ``timeout_seconds``."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) \
                or timeout_seconds < 0:
            raise ValueError(f"PlacementGroup.wait(timeout_seconds={timeout_seconds!r}): give a number of "
                             f"seconds >= 0")
        try:
            object_ref.get_through_api(self.ready(), timeout=timeout_seconds)
        except GetTimeoutError:
            return False
        return True

    @property
    def bundle_specs(self):
        """The bundles, as ``[{resource: amount}, ...]``."""
        if self.bundle_cache is None:
            self.bundle_cache = [dict(shape) for shape in runtime_for_call().groups.shapes_of(self.id.value)]
        return self.bundle_cache

    @property
    def bundle_count(self):
        return len(self.bundle_specs)

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and self.id == other.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup(id={self.id.hex()})"


class PlacementGroupSchedulingStrategy:
    """Run a task or actor in a placement group's bundle (``placement_group_bundle_index``,
    -1: any bundle with room). ``placement_group_capture_child_tasks``: the tasks and actors it
    starts run in the group too unless they say otherwise (default False)."""

    def __init__(self, placement_group, placement_group_bundle_index=-1, placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self):
        return (f"PlacementGroupSchedulingStrategy(placement_group={self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index!r})")


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
