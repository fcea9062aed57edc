"""How big a node's store is and where it lives: Ray's 30% of the job's memory, /dev/shm or
node-local temporary space, explicit sizes and their errors."""
import pytest

from mpirt.store import capacity


def test_default_is_30_percent_of_the_memory_the_job_may_use(monkeypatch):
    monkeypatch.delenv("SLURM_MEM_PER_NODE", raising=False)
    monkeypatch.delenv("SLURM_MEM_PER_CPU", raising=False)
    ram, _ = capacity.node_memory()
    size, why = capacity.default_bytes()
    assert size == int(ram * 0.3) or size == capacity.MAX_DEFAULT_STORE_BYTES
    assert "30%" in why or "200 GB" in why
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1000")            # MB, as Slurm gives it
    assert capacity.node_memory() == (1000 << 20, "SLURM_MEM_PER_NODE")
    assert capacity.default_bytes()[0] == int((1000 << 20) * 0.3)
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    monkeypatch.setenv("SLURM_MEM_PER_CPU", "500")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "4")
    assert capacity.node_memory()[0] == 2000 << 20


def test_requested_sizes_and_their_errors(monkeypatch):
    monkeypatch.delenv("MPIRT_OBJECT_STORE_MEMORY", raising=False)
    assert capacity.requested_bytes(None) is None
    assert capacity.requested_bytes(64 << 20) == 64 << 20
    monkeypatch.setenv("MPIRT_OBJECT_STORE_MEMORY", str(32 << 20))
    assert capacity.requested_bytes(None) == 32 << 20
    assert capacity.requested_bytes(64 << 20) == 64 << 20     # the argument wins
    with pytest.raises(ValueError, match=r"object_store_memory must be .* got 1000"):
        capacity.requested_bytes(1000)
    with pytest.raises(ValueError, match="got True"):
        capacity.requested_bytes(True)
    monkeypatch.setenv("MPIRT_OBJECT_STORE_MEMORY", "lots")
    with pytest.raises(ValueError, match="MPIRT_OBJECT_STORE_MEMORY .* got 'lots'"):
        capacity.requested_bytes(None)


def test_a_store_too_big_for_dev_shm_goes_to_node_local_temp_space(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("MPIRT_SHM_AVAILABLE_BYTES", str(64 * 10**6))
    size, why, directory, warning = capacity.choose(256 << 20)
    assert (size, directory) == (256 << 20, str(tmp_path))
    assert "64,000,000 bytes free" in warning and "--shm-size" in warning
    size, _, directory, warning = capacity.choose(32 << 20)
    assert directory == capacity.SHM_DIR and warning is None
