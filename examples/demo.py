"""A tour of mpirt in one file: tasks, futures, dependencies, nested tasks, errors.

    python examples/demo.py               # mpirt spawns one worker per core
    mpirun -n 4 python examples/demo.py   # rank 0 runs this, 1 schedules, 2-3 work
"""
import time

import numpy as np

import mpirt as ray

ray.init()
print("cluster:", ray.cluster_resources())


@ray.remote
def slow_square(x):
    time.sleep(0.1)
    return x * x


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def tree_sum(values):
    """Nested parallelism: a task that splits its input and waits on subtasks."""
    if len(values) <= 2:
        return sum(values)
    middle = len(values) // 2
    return sum(ray.get([tree_sum.remote(values[:middle]), tree_sum.remote(values[middle:])]))


@ray.remote
def fails():
    raise ValueError("this task fails on purpose")


# 1. Futures: eight 100 ms tasks run in parallel on the workers.
start = time.time()
squares = ray.get([slow_square.remote(i) for i in range(8)])
print(f"squares {squares} in {time.time() - start:.2f} s")

# 2. Dependencies: ObjectRefs passed as arguments become values before the task runs.
total = add.remote(slow_square.remote(3), slow_square.remote(4))
print("3*3 + 4*4 =", ray.get(total))

# 3. Objects: put once, use from many tasks.
matrix = ray.put(np.eye(3))
print("trace via tasks:", ray.get(add.remote(matrix, matrix)).trace())

# 4. Nested tasks.
print("tree_sum(0..63) =", ray.get(tree_sum.remote(list(range(64)))))

# 5. wait: take results as they come.
refs = [slow_square.remote(i) for i in range(4)]
ready, not_ready = ray.wait(refs, num_returns=2)
print(f"wait: {len(ready)} ready, {len(not_ready)} still running")

# 6. Errors come back at get(), as the original exception class.
try:
    ray.get(fails.remote())
except ValueError as error:
    print("caught:", str(error).splitlines()[0])

ray.shutdown()
print("done")
