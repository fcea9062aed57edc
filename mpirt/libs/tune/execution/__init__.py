"""``ray.tune.execution``: ``placement_groups.PlacementGroupFactory``, a trial's resource request."""
from . import placement_groups
from .placement_groups import PlacementGroupFactory

__all__ = ["placement_groups", "PlacementGroupFactory"]
