"""Two tasks make matrices, a third multiplies them once both exist.

    python examples/zeros_multiply.py
    mpirun -n 4 python examples/zeros_multiply.py
"""
import numpy as np

import mpirt as ray

ray.init()


@ray.remote
def zeros(shape):
    return np.zeros(shape)


@ray.remote
def multiply(a, b):
    return np.dot(a, b)


# The two zeros tasks run in parallel; multiply starts when both are done.
first = zeros.remote([100, 100])
second = zeros.remote([100, 100])
product = multiply.remote(first, second)

result = ray.get(product)
print("product shape:", result.shape, "sum:", result.sum())
