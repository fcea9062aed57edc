"""Which GPUs a node has and which of them each worker rank gets.

Worker ranks of a node share its GPUs out by node-local worker index (round-robin), and each worker process
sees only its own through ``CUDA_VISIBLE_DEVICES``, set before any user code runs there.
"""
import os
import shutil
import subprocess


def detect_node_gpus():
    """GPU ids of this node: ``MPIRT_NODE_GPUS`` (a count, to override or fake), else
    ``CUDA_VISIBLE_DEVICES``, else what ``nvidia-smi -L`` lists, else none."""
    override = os.environ.get("MPIRT_NODE_GPUS")
    if override is not None:
        return [str(i) for i in range(int(override))]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [x.strip() for x in visible.split(",") if x.strip() and x.strip() != "-1"]
    if shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]
    return []


def share_gpus(node_gpus, worker_index, workers_on_node, per_worker=None):
    """The GPU ids of worker ``worker_index`` of ``workers_on_node``.

    ``per_worker`` (an explicit count per rank) takes consecutive ids, wrapping around when the node has
    fewer GPUs than its ranks ask for, so ranks share a device (as ``mpirun -n 4`` on a one-GPU node does);
    otherwise the node's GPUs are dealt round-robin, so every GPU is used once.
    """
    if per_worker is not None:
        count = int(per_worker)
        start = worker_index * count
        if node_gpus:
            return [node_gpus[(start + i) % len(node_gpus)] for i in range(count)]
        return [str(start + i) for i in range(count)]
    return [gpu for i, gpu in enumerate(node_gpus) if i % max(workers_on_node, 1) == worker_index]


def restrict_visible_gpus(gpu_ids, node_gpus):
    """Let this process see only ``gpu_ids`` (hide the node's others)."""
    if gpu_ids or node_gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
