"""Ray's ``ray.util.collective.types`` names: the reduce operations and the backends."""
import enum


class ReduceOp(enum.Enum):
    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3


UFUNC_NAMES = {"SUM": "add", "PRODUCT": "multiply", "MIN": "minimum", "MAX": "maximum"}   # numpy's (and CuPy's)


class Backend:
    """A backend name, as Ray spells them. ``Backend("gloo")`` returns ``"gloo"``.

    mpirt runs every backend's operations on the group's MPI communicator (``"mpi"``, the default):
    ``"gloo"``, ``"torch_gloo"`` and ``"nccl"`` are accepted so that Ray programs run unchanged. GPU
    tensors take CUDA-aware MPI, NCCL or pinned host memory, whichever the ranks can all use, whatever
    the backend's name (``transports.py``)."""

    MPI = "mpi"
    GLOO = "gloo"
    TORCH_GLOO = "torch_gloo"
    NCCL = "nccl"
    UNRECOGNIZED = "unrecognized"

    def __new__(cls, name):
        if isinstance(name, str):
            backend = getattr(Backend, name.upper(), Backend.UNRECOGNIZED)
            if backend != Backend.UNRECOGNIZED:
                return backend
        raise ValueError(f"Unrecognized backend: '{name}'. mpirt supports 'mpi' (the default); 'gloo', "
                         f"'torch_gloo' and 'nccl' are accepted and run over MPI too.")
