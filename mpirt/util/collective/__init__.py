"""``mpirt.util.collective``: Ray's ``ray.util.collective`` (collective communication between actors), over
MPI sub-communicators instead of NCCL or Gloo sockets. The functions are in ``collective.py``; a group's
state on a rank in ``group.py``; what MPI reads of a tensor in ``tensors.py``."""
from .collective import *  # noqa: F401,F403 - the public names, as ray.util.collective has them
from .collective import __all__  # noqa: F401
