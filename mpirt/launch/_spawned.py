"""Entry point of ranks started by MPI_Comm_spawn: a plain-python driver's ranks, and ranks that
replace dead workers (``join``: see ``replacement.py``)."""
import os
import sys

from .spawn import serve_replacement, serve_spawned


def main():
    if "join" in sys.argv[1:]:
        # Replacements exist only under ULFM; the newcomer needs it on before MPI starts.
        os.environ["OMPI_MCA_mpi_ft_enable"] = "1"
        serve_replacement()
        return
    serve_spawned()
