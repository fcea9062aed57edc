"""RLlib's ``ray.rllib.examples`` paths for what its documentation imports from there."""
