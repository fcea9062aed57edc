"""Ray's ``ray.experimental`` names that mpirt has: ``tqdm_ray`` (progress bars drawn on the driver).

Import the submodule itself, as in Ray: ``from mpirt.experimental.tqdm_ray import tqdm``.
"""
