"""Ray's ``ray.util.scheduling_strategies``: the strategy objects, defined in ``mpirt.scheduler.strategies``."""
from ..scheduler.strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
