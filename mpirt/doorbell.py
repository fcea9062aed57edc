"""Doorbells: waking a sleeping rank of the same host without MPI.

MPI cannot wake a sleeping thread: a rank hears a message only when it next polls,
so an idle rank had to poll every millisecond, and on a small machine those wake-ups
land on the cores that busy ranks need (each idle rank cost ~5 % of a core and tens
of microseconds of latency to the ranks it preempted). With doorbells an idle rank
sleeps on a Unix datagram socket (``select`` with a timeout), and a rank that sends
it an MPI message after a quiet spell also sends one byte to that socket
(``Transport``, DESIGN notes in docs/design.md "Idle ranks").

Sockets use Linux's abstract namespace (nothing to clean up) under a random per-job
token. Doorbells are on only when every rank runs on one host and every rank can
reach every other's socket; otherwise (several hosts, no abstract sockets: macOS,
``MPIRT_DOORBELLS=0``) ``open`` returns None and idle ranks keep polling every millisecond.
"""
import os
import select
import socket
import sys

from ._mpi_env import mpi

_HELLO = b"?"
_RING = b"!"


class Doorbells:
    """This rank's doorbell socket and the addresses of the others' (one host)."""

    def __init__(self, sock, addresses, rank):
        self._sock = sock
        self._addresses = addresses   # rank -> socket address
        self._own = addresses[rank]
        self.rings = 0

    @classmethod
    def open(cls, comm):
        """Collective: doorbells for every rank, or None on every rank where they cannot work."""
        MPI = mpi()
        rank = comm.Get_rank()
        token = comm.bcast(os.urandom(8).hex() if rank == 0 else None, root=0)
        hosts = comm.allgather(socket.gethostname())
        addresses = [f"\0mpirt-{token}-{r}".encode() for r in range(comm.Get_size())]
        wanted = os.environ.get("MPIRT_DOORBELLS", "1") != "0"
        sock = _bind(addresses[rank]) if wanted and len(set(hosts)) == 1 and sys.platform.startswith("linux") else None
        if not comm.allreduce(sock is not None, op=MPI.LAND):
            _close(sock)
            return None
        bells = cls(sock, addresses, rank)
        # Every rank must reach every other's socket (same network namespace: containers may differ).
        reachable = all(bells._send(addresses[r], _HELLO) for r in range(len(addresses)) if r != rank)
        if not comm.allreduce(reachable, op=MPI.LAND):
            bells.close()
            return None
        bells.rings = 0
        return bells

    def ring(self, rank):
        """Wake ``rank`` if it sleeps on its doorbell (if not, it finds one byte there next time)."""
        self._send(self._addresses[rank], _RING)

    def ring_self(self):
        self._send(self._own, _RING)

    def wait(self, timeout):
        """Sleep until rung or ``timeout`` seconds passed; True if rung (the rings that came
        meanwhile are cleared). A ring may come just before its MPI message is visible."""
        sock = self._sock
        try:
            readable, _, _ = select.select((sock,), (), (), timeout)
        except (OSError, ValueError):  # closed by stop() meanwhile
            return False
        if readable:
            try:
                while sock.recv(64):
                    pass
            except (BlockingIOError, OSError):
                pass
        return bool(readable)

    def close(self):
        _close(self._sock)

    def _send(self, address, payload):
        """True if ``address`` is a live doorbell (a full queue counts: it will wake anyway)."""
        try:
            self._sock.sendto(payload, address)
            self.rings += 1
            return True
        except BlockingIOError:
            return True
        except OSError:   # gone (ConnectionRefused, FileNotFound) or unreachable
            return False


def _bind(address):
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        sock.bind(address)
        sock.setblocking(False)
    except OSError:   # no abstract namespace (not Linux)
        sock.close()
        return None
    return sock


def _close(sock):
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
