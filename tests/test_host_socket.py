"""Host sockets without MPI: batches arrive whole and in order, and only from ranks of this job."""
import os
import pickle
import socket
import sys

import pytest

from mpirt.core.host_socket import FRAGMENT, HostSocket, _address, _bind

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets are Linux's")


def make_job(ranks, cookie):
    token = "test-" + os.urandom(8).hex()
    addresses = [_address(token, r) for r in range(ranks)]
    hosts = [HostSocket(_bind(address), token, r, ranks, cookie) for r, address in enumerate(addresses)]
    for host in hosts:
        host.mail_peers = frozenset(range(ranks))
    return addresses, hosts


def receive_all(host, expected, sender=None):
    batches = []
    for _ in range(1000):
        if sender is not None:
            sender.send_unsent()        # what a full queue refused
        batches += host.receive()
        if len(batches) >= expected:
            break
        host.wait(0.01)
    return batches


def test_large_batches_arrive_whole_and_in_order():
    _, (driver, worker) = make_job(2, os.urandom(16))
    payloads = [os.urandom(size) for size in (10, FRAGMENT, FRAGMENT + 1, 5 * FRAGMENT + 7)]
    for payload in payloads:
        worker.send(0, payload)
        got = receive_all(driver, 1, worker)
        assert [(source, bytes(data)) for source, data in got] == [(1, payload)]
    assert worker.fragments_sent == 2 + 6


def test_datagrams_without_the_jobs_cookie_are_dropped_unread():
    """Abstract socket names are visible to every user of the host (/proc/net/unix), and a rank's
    name may be bound by anyone once that rank closed it: the cookie shared over MPI decides."""
    addresses, (driver, worker, leaving) = make_job(3, os.urandom(16))
    leaving.close()                                # rank 2 exited; someone else takes its name
    intruder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    intruder.bind(addresses[2])
    evil = pickle.dumps([("run", "anything")])
    intruder.sendto(b"W" + evil, addresses[0])
    intruder.sendto(os.urandom(16) + b"W" + evil, addresses[0])   # a guessed cookie
    worker.send(0, b"real batch")
    got = receive_all(driver, 1)
    assert [(source, bytes(data)) for source, data in got] == [(1, b"real batch")]
    intruder.close()


def test_a_rank_that_joins_later_exchanges_batches_with_the_others():
    cookie = os.urandom(16)
    _, (driver, worker) = make_job(2, cookie)
    newcomer = HostSocket.join(driver.token, cookie, 2, 3)
    for host in (driver, worker):
        host.add_peer(2)
        host.mail_peers = frozenset(range(3))
    newcomer.mail_peers = frozenset(range(3))
    driver.send(2, b"welcome")
    assert receive_all(newcomer, 1, driver) == [(0, b"welcome")]
    newcomer.send(1, b"hello")
    assert [(source, bytes(data)) for source, data in receive_all(worker, 1, newcomer)] == [(2, b"hello")]
    for host in (driver, worker, newcomer):
        host.close()
