"""A ParameterServer actor updated by four worker tasks that loop forever.

The driver reads the parameters a few times and ends; shutdown stops the
workers mid-loop, as in the Ray original.

    python examples/parameter_server.py
    mpirun -n 7 python examples/parameter_server.py
"""
import time

import numpy as np

import mpirt as ray

ray.init()


@ray.remote
class ParameterServer:
    def __init__(self):
        self.params = np.zeros(10)

    def get_params(self):
        return self.params

    def update_params(self, grad):
        self.params -= grad


@ray.remote
def worker(ps):
    while True:
        params = ray.get(ps.get_params.remote())
        grad = np.ones(10)
        time.sleep(0.2)  # This is a fake placeholder for some computation.
        ps.update_params.remote(grad)


ps = ParameterServer.remote()

worker_results = [worker.remote(ps) for _ in range(4)]

for _ in range(5):
    time.sleep(0.5)
    print("params[0] =", ray.get(ps.get_params.remote())[0])
