"""A parameter server on the GPU: workers compute gradients on their GPUs, the server applies them.

Weights and gradients stay in GPU memory the whole time: they move between ranks of a node
GPU to GPU (CUDA IPC), between nodes through pinned host memory.

    mpirun -n 5 python examples/gpu_parameter_server.py     # driver, scheduler, 3 GPU worker ranks
(needs CuPy and a GPU; ranks share the node's GPUs when there are fewer)
"""
import cupy as cp

import mpirt

DIM, BATCH, STEPS, WORKERS = 1 << 20, 64, 20, 2


@mpirt.remote(num_gpus=1)
class ParameterServer:
    def __init__(self, dim):
        self.weights = cp.zeros(dim, dtype=cp.float32)

    def apply(self, *gradients):
        self.weights -= 0.5 * sum(gradients) / len(gradients)
        return self.weights

    def get_weights(self):
        return self.weights


@mpirt.remote(num_gpus=0.5)
def gradient(weights, seed):
    """Gradient of the mean squared distance to targets drawn around 1.0 (the optimum)."""
    rng = cp.random.default_rng(seed)
    targets = 1.0 + 0.1 * rng.standard_normal((BATCH, weights.size), dtype=cp.float32)
    return weights - targets.mean(axis=0)


def main():
    mpirt.init(num_gpus=1)
    server = ParameterServer.remote(DIM)
    weights = server.get_weights.remote()
    for step in range(STEPS):
        gradients = [gradient.remote(weights, step * WORKERS + i) for i in range(WORKERS)]
        weights = server.apply.remote(*gradients)
    final = mpirt.get(weights)
    error = float(cp.abs(final - 1.0).mean())
    print(f"after {STEPS} steps: mean |w - 1| = {error:.4f} on {final.device}, {type(final).__module__}")
    assert error < 0.01
    mpirt.shutdown()


if __name__ == "__main__":
    main()
