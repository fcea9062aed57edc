"""Names Ray programs import from ``ray._raylet`` (Ray's compiled core), where mpirt has them."""
from .core.object_ref import ObjectRef
from .core.streams import DynamicObjectRefGenerator, ObjectRefGenerator
from .scheduler.strategies import PlacementGroupID

__all__ = ["ObjectRef", "ObjectRefGenerator", "DynamicObjectRefGenerator", "PlacementGroupID"]
