"""Entry point of ranks started by MPI_Comm_spawn from a plain-python driver."""


def main():
    from .launch import serve_spawned

    serve_spawned()
