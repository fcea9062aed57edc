"""What a running one-host job listens on (docs/operations.md, "What listens").

Each test starts a real job, lists the TCP sockets its processes hold while it runs (from /proc/net/tcp and
tcp6 and each process's socket file descriptors, the job's processes only), and checks them against the
documented rule:

- no rank listens beyond loopback, except under ULFM, where Open MPI's TCP transport is what notices a dead
  rank and its listening socket binds every interface whatever the parameters say (Open MPI binds the
  wildcard address; ``btl_tcp_if_include`` only picks the addresses it advertises); then every connection
  the job makes is on loopback;
- PRRTE's daemon (``prte`` of a plain ``python app.py``, ``prterun`` = ``mpirun``) listens on every
  interface for daemons of other nodes: PRRTE binds its listener to the wildcard address, and restricted
  to the loopback interface it finds no interface to use and does not start.
"""
import os
import select
import socket
import sys
import time

import pytest

from conftest import _matching, _wait_for_no_leftovers, mpirun_has_ulfm, mpirun_path, start_app
from mpirt.core import _mpi_network
from mpirt.core._mpi_env import apply_defaults

LISTEN, ESTABLISHED = "0A", "01"
DAEMONS = ("prte", "prterun", "mpirun")

APP = """
import os, sys, time
import mpirt

mpirt.init(num_cpus=2)

@mpirt.remote
def square(x):
    return x * x

big = mpirt.put(bytearray(4 << 20))   # through the store, and a transfer between the ranks
assert mpirt.get([square.remote(i) for i in range(8)]) == [i * i for i in range(8)]
assert len(mpirt.get(big)) == 4 << 20
print("READY", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists("go") and time.monotonic() < deadline:
    time.sleep(0.05)
mpirt.shutdown()
print("DONE", flush=True)
"""


def _address(hex_address):
    """``0100007F:1F90`` (/proc/net/tcp) or its 32-digit IPv6 form -> (ip, port)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return ip, int(port, 16)


def _tcp_sockets():
    """{socket inode: (state, local (ip, port), remote (ip, port))} of this network namespace."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                found[int(fields[9])] = (fields[3], _address(fields[1]), _address(fields[2]))
    return found


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:["):-1]))
    except OSError:
        pass
    return inodes


def _process_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return "?"


def _loopback(ip):
    return ip == "::1" or ip.startswith(("127.", "::ffff:127."))


def job_sockets(marker):
    """[(pid, process name, state, local, remote)] for every TCP socket a process of the job holds."""
    tcp = _tcp_sockets()
    found = []
    for line in _matching(marker):
        pid = int(line.split()[0])
        for inode in _socket_inodes(pid):
            if inode in tcp:
                state, local, remote = tcp[inode]
                found.append((pid, _process_name(pid), state, local, remote))
    return found


def observe(tmp_path, ranks=None, env=None, mpirun_args=()):
    """Start APP, list its job's TCP sockets once it is running, then let it finish."""
    app = start_app(tmp_path, APP, ranks=ranks, env=env, mpirun_args=mpirun_args)
    try:
        assert _wait_for_line(app.proc, "READY", 90), "the job did not start within 90 s"
        sockets = job_sockets(app.marker)
        (tmp_path / "go").write_text("")
        out, err = app.proc.communicate(timeout=60)
    except BaseException:
        app.kill()
        raise
    assert app.proc.returncode == 0 and "DONE" in out, err
    assert not _wait_for_no_leftovers(app.marker)
    return sockets


def _wait_for_line(proc, text, seconds):
    """Read ``proc``'s stdout until a line holds ``text``; False if it ends or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        line = proc.stdout.readline()
        if not line:
            return False
        if text in line:
            return True
    return False


def listeners(sockets, daemons):
    """The job's listening sockets, of its PRRTE daemon or of its other processes."""
    return [s for s in sockets if s[2] == LISTEN and (s[1] in DAEMONS) == daemons]


def assert_daemon_rule(sockets):
    """The daemon's listeners: loopback (its PMIx server), or the wildcard (its out-of-band channel)."""
    daemon = listeners(sockets, daemons=True)
    assert daemon, f"no PRRTE daemon listener seen: {sockets}"
    for _, name, _, (ip, _), _ in daemon:
        assert _loopback(ip) or ip in ("0.0.0.0", "::"), (name, ip)


def assert_loopback_traffic(sockets):
    connected = [s for s in sockets if s[2] == ESTABLISHED]
    off_host = [s for s in connected if not (_loopback(s[3][0]) and _loopback(s[4][0]))]
    assert not off_host, f"connections beyond loopback: {off_host}"


def test_mpirun_on_one_node_ranks_listen_on_nothing(tmp_path):
    mpirun_path()
    sockets = observe(tmp_path, ranks=4)
    assert listeners(sockets, daemons=False) == [], sockets
    assert_daemon_rule(sockets)
    assert_loopback_traffic(sockets)


def test_plain_python_without_ulfm_ranks_listen_on_nothing(tmp_path):
    sockets = observe(tmp_path, env={"OMPI_MCA_mpi_ft_enable": "0"})
    assert listeners(sockets, daemons=False) == [], sockets
    assert_daemon_rule(sockets)
    assert_loopback_traffic(sockets)


@pytest.mark.parametrize("launch", ["spawn", "mpirun"])
def test_under_ulfm_ranks_talk_over_loopback_only(tmp_path, launch):
    """The TCP transport stays, for ULFM; it listens on the wildcard address, and every connection of the
    job is on loopback."""
    if launch == "mpirun":
        if not mpirun_has_ulfm():
            pytest.skip("this Open MPI has no ULFM")
        sockets = observe(tmp_path, ranks=4, mpirun_args=("--with-ft", "ulfm"))
    else:
        sockets = observe(tmp_path)
    for _, name, _, (ip, _), _ in listeners(sockets, daemons=False):
        assert _loopback(ip) or ip in ("0.0.0.0", "::"), (name, ip)
    assert_daemon_rule(sockets)
    assert_loopback_traffic(sockets)


def test_a_site_configuration_wins(tmp_path):
    """A user's setting, in the environment or an MCA parameter file, leaves the transports alone."""
    param_file = tmp_path / "mca-params.conf"
    param_file.write_text("# site settings\nbtl = self,sm,tcp   # ours\n")
    env = {"PATH": "/usr/bin", "OMPI_MCA_mca_param_files": str(param_file), "OMPI_MCA_mpi_ft_enable": "0"}
    apply_defaults(env)
    assert "OMPI_MCA_btl" not in env and "OMPI_MCA_btl_ofi_mode" not in env, env
    env = {"PATH": "/usr/bin", "OMPI_MCA_btl_tcp_if_exclude": "docker0", "OMPI_MCA_mca_param_files": "none"}
    apply_defaults(env)
    assert "OMPI_MCA_btl_tcp_if_include" not in env, env


def test_only_a_one_host_job_is_kept_on_loopback():
    base = {"PATH": "/usr/bin", "OMPI_MCA_mca_param_files": "none"}
    plain = dict(base)
    apply_defaults(plain)   # python app.py: ULFM on, TCP on loopback
    assert plain["OMPI_MCA_btl_tcp_if_include"] == "127.0.0.1/8", plain
    for elsewhere in ({"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2"},                  # several nodes
                      {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"},   # mpirun, 2 nodes
                      {"PMIX_RANK": "0", "SLURM_STEP_ID": "0"},                           # srun
                      {"OMPI_PARENT_PORT": "1.0:2", "OMPI_COMM_WORLD_SIZE": "1",          # a spawned rank
                       "OMPI_COMM_WORLD_LOCAL_SIZE": "1"}):
        env = {**base, **elsewhere}
        apply_defaults(env)
        assert "OMPI_MCA_btl_tcp_if_include" not in env and env["OMPI_MCA_btl"] == "^ofi", env
    one_node = {**base, "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}
    apply_defaults(one_node)   # mpirun without ULFM on one node: shared memory only
    if _mpi_network.bundled_open_mpi(sys.executable):
        assert one_node["OMPI_MCA_btl"] == "self,sm" and "OMPI_MCA_btl_tcp_if_include" not in one_node
    else:
        assert one_node["OMPI_MCA_btl_tcp_if_include"] == "127.0.0.1/8"
