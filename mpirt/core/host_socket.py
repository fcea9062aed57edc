"""One Unix datagram socket per rank of a one-host job: doorbell, and mailbox where MPI is slow.

Doorbell. MPI cannot wake a sleeping thread: a rank hears a message only when it next polls, and an idle
rank polling every millisecond lands its wake-ups on the cores that busy ranks need (each idle rank cost
~5 % of a core and tens of microseconds of latency to the ranks it preempted). So an idle rank sleeps in
``select`` on its socket, and a rank that sends it an MPI message after a quiet spell also sends one byte to
the socket (the rule is in ``transport.py``).

Mailbox. A plain ``python app.py`` spawns its ranks (``MPI_Comm_spawn``), and Open MPI links a parent and
its spawned job over TCP, not shared memory: a small message's round trip took 33-36 us between the driver
and a worker, 10.4 us between two workers. The driver and the spawned ranks therefore send each other their
batches through these sockets (10.5 us per round trip), and a batch arriving also wakes a sleeping rank.
Batches larger than a datagram travel as fragments; the kernel keeps each sender's datagrams in order and
loses none, and a full queue (``EAGAIN``) keeps the rest queued here until the receiver has drained it.

Sockets use Linux's abstract namespace (nothing to clean up) under a random per-job token. Abstract names
have no permissions and anyone on the host can see them (and bind one a rank has closed), so every datagram
starts with a secret cookie shared over MPI; a datagram without it is dropped unread. They are on only when
every rank runs on one host and every rank can reach every other's socket; otherwise (several hosts, no
abstract sockets: macOS, ``MPIRT_HOST_SOCKETS=0``) ``open`` returns None, idle ranks keep polling every
millisecond and all batches go over MPI.
"""
import collections
import errno
import os
import select
import socket
import sys

from ._mpi_env import mpi

_HELLO, _RING = b"?", b"!"
_WHOLE, _MORE, _LAST = b"W", b"M", b"L"   # a batch in one datagram; a fragment, more follow; the last one
FRAGMENT = 1 << 16
_RECEIVE_LIMIT = 64                        # datagrams read per receive() call
_COOKIE_BYTES = 16
_HEADER = _COOKIE_BYTES + 1                # cookie, then the datagram's kind
_SELECT_LIMIT = 1024                       # FD_SETSIZE: select() takes no descriptor from here up
_GONE = (errno.ECONNREFUSED, errno.ENOENT)  # the receiving rank's socket is closed


class HostSocket:
    """This rank's socket and the addresses of the others' (one host)."""

    def __init__(self, sock, token, rank, size, cookie):
        self._sock = sock
        self.token = token                         # names this job's sockets
        self._cookie = cookie                      # starts every datagram of this job
        self._addresses, self._rank_of = [], {}    # rank -> socket address, and back
        self.add_peer(size - 1)
        self._own = self._addresses[rank]
        # select() sleeps to the microsecond but only takes descriptors below FD_SETSIZE (an
        # application with many open files pushes ours above); poll() takes any, in milliseconds.
        self._poller = None
        if sock.fileno() >= _SELECT_LIMIT:
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
        self.mail_peers = frozenset()              # ranks whose batches travel through the sockets
        self._unsent = collections.defaultdict(collections.deque)   # rank -> datagrams its queue refused
        self._fragments = {}                       # rank -> fragments of a batch being received
        self.backlog = False                       # some datagrams wait for room in a receiver's queue
        self.fragments_sent = 0
        self.refusals = 0                          # sends a full receiver queue refused (retried later)

    @classmethod
    def open(cls, comm):
        """Collective: a socket for every rank, or None on every rank where they cannot work."""
        MPI = mpi()
        rank = comm.Get_rank()
        token, cookie = comm.bcast((os.urandom(8).hex(), os.urandom(_COOKIE_BYTES)) if rank == 0 else None, root=0)
        hosts = comm.allgather(socket.gethostname())
        size = comm.Get_size()
        wanted = os.environ.get("MPIRT_HOST_SOCKETS", "1") != "0" and sys.platform.startswith("linux")
        sock = _bind(_address(token, rank)) if wanted and len(set(hosts)) == 1 else None
        if not comm.allreduce(sock is not None, op=MPI.LAND):
            _close(sock)
            return None
        host = cls(sock, token, rank, size, cookie)
        # Every rank must reach every other's socket (same network namespace: containers may differ).
        reachable = all(host._send_datagram(_address(token, r), (_HELLO,)) for r in range(size) if r != rank)
        if not comm.allreduce(reachable, op=MPI.LAND):
            host.close()
            return None
        # The hellos stay queued: reading drops them like rings (dropping them here could drop a
        # batch that a faster rank already sent).
        return host

    @classmethod
    def join(cls, token, cookie, rank, size):
        """The socket of a rank that joins a running job (``replacement.py``): the job's token and
        cookie come from its ranks; None if it cannot bind."""
        sock = _bind(_address(token, rank))
        return None if sock is None else cls(sock, token, rank, size, cookie)

    def add_peer(self, rank):
        """Make ranks up to ``rank`` reachable (at start, and a rank that joined the job later)."""
        while len(self._addresses) <= rank:
            address = _address(self.token, len(self._addresses))
            self._rank_of[address] = len(self._addresses)
            self._addresses.append(address)

    # -- doorbell ------------------------------------------------------------------
    def ring(self, rank):
        """Wake ``rank`` if it sleeps on its socket (if not, it finds one byte there next time)."""
        self._send_datagram(self._addresses[rank], (_RING,))

    def ring_self(self):
        self._send_datagram(self._own, (_RING,))

    def wait(self, timeout):
        """Sleep until a datagram comes or ``timeout`` seconds passed; True if one came. Rings are
        dropped here when no batch can come this way; else ``receive`` reads them with the batches.
        A ring may come just before its MPI message is visible."""
        try:
            if self._poller is None:
                readable = select.select((self._sock,), (), (), timeout)[0]
            else:
                readable = [fd for fd, events in self._poller.poll(timeout * 1e3) if events & select.POLLIN]
        except OSError:  # closed by stop() meanwhile
            return False
        if readable and not self.mail_peers:
            self._drop_all()
        return bool(readable)

    # -- mailbox -------------------------------------------------------------------
    def send(self, rank, payload):
        """Queue the pickled batch ``payload`` for ``rank`` and send what its queue accepts."""
        datagrams = self._unsent[rank]
        cookie = self._cookie
        if len(payload) <= FRAGMENT:
            datagrams.append((cookie, _WHOLE, payload))
        else:
            view = memoryview(payload)
            for start in range(0, len(payload), FRAGMENT):
                kind = _MORE if start + FRAGMENT < len(payload) else _LAST
                datagrams.append((cookie, kind, view[start:start + FRAGMENT]))
            self.fragments_sent += (len(payload) + FRAGMENT - 1) // FRAGMENT
        self._send_queued(rank, datagrams)

    def send_unsent(self):
        """Retry datagrams that receivers' full queues refused (``backlog`` says whether some
        still wait); True if any went."""
        waiting = went = False
        for rank, datagrams in self._unsent.items():
            if datagrams:
                before = len(datagrams)
                self._send_queued(rank, datagrams)
                went = went or len(datagrams) < before
                waiting = waiting or bool(datagrams)
        self.backlog = waiting
        return went

    def forget(self, rank):
        self._unsent.pop(rank, None)
        self._fragments.pop(rank, None)

    def receive(self):
        """The batches (source rank, pickled bytes) that arrived whole; rings are dropped."""
        batches = []
        sock = self._sock
        cookie = self._cookie
        for _ in range(_RECEIVE_LIMIT):
            try:
                data, address = sock.recvfrom(FRAGMENT + _HEADER)
            except OSError:   # none left (BlockingIOError, InterruptedError), or closed by stop()
                break
            source = self._rank_of.get(address)
            if source is None or not data.startswith(cookie):   # not from a rank of this job
                continue
            kind = data[_COOKIE_BYTES:_HEADER]
            if kind == _WHOLE:
                batches.append((source, memoryview(data)[_HEADER:]))
            elif kind == _MORE or kind == _LAST:
                parts = self._fragments.setdefault(source, [])
                parts.append(memoryview(data)[_HEADER:])
                if kind == _LAST:
                    self._fragments.pop(source, None)
                    batches.append((source, b"".join(parts)))
        return batches

    def close(self):
        _close(self._sock)

    # -- internals -------------------------------------------------------------------
    def _send_queued(self, rank, datagrams):
        address = self._addresses[rank]
        sock = self._sock
        while datagrams:
            try:
                sock.sendmsg(datagrams[0], (), 0, address)
            except OSError as error:
                if error.errno in _GONE:   # the rank is gone: what it would have got is moot
                    datagrams.clear()
                else:   # its queue is full (BlockingIOError), or short of kernel memory (ENOBUFS, ENOMEM)
                    self.backlog = True    # retried by send_unsent()
                    self.refusals += 1
                return
            datagrams.popleft()

    def _send_datagram(self, address, parts):
        """True if ``address`` is a live socket (a full queue counts: it will wake anyway)."""
        try:
            self._sock.sendmsg((self._cookie, *parts), (), 0, address)
            return True
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:   # gone (ConnectionRefused, FileNotFound) or unreachable
            return False

    def _drop_all(self):
        try:
            while self._sock.recv(FRAGMENT + _HEADER):
                pass
        except OSError:   # BlockingIOError: empty
            pass


def _address(token, rank):
    return f"\0mpirt-{token}-{rank}".encode()


def _bind(address):
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        sock.bind(address)
        sock.setblocking(False)
        # Room for a burst of full fragments (the kernel caps these at net.core.[wr]mem_max).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
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
