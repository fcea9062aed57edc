"""Evolution strategies (Salimans et al. 2017), numpy only.

The learner puts one table of Gaussian noise in the object store; every ES
actor receives it as a read-only numpy view of the same shared memory (no copy
on a node), so a perturbation is just an offset into it. Workers evaluate
antithetic pairs (theta + s*eps, theta - s*eps, on the same env seed) and send
back only offsets and scalar returns; the learner rebuilds each eps from its own
view, shapes fitness by centered ranks and takes an Adam step.
"""
import numpy as np

import mpirt

from .algorithm import Algorithm
from .models import NumpyPolicy
from .rollout import make_workers
from .utils import check_positive_int


class ESWorker:
    """Evaluates perturbations of the policy parameters; holds the shared noise table."""

    def __init__(self, env_creator, info, noise, config, worker_index):
        self.noise = noise  # arrives as a read-only view of the object store
        self.policy = NumpyPolicy(info, config["model"])
        self.env = env_creator()
        seed = config["seed"]
        self.rng = np.random.default_rng(None if seed is None else seed + 1000 * worker_index)

    def noise_info(self):
        """How this actor sees the noise table (the tests check it was not copied)."""
        return {"size": int(self.noise.size), "writeable": bool(self.noise.flags.writeable),
                "owndata": bool(self.noise.flags.owndata)}

    def rollout(self, params, seed):
        obs, _ = self.env.reset(seed=seed)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = self.env.step(self.policy.act(params, obs))
            total += float(reward)
            length += 1
            done = terminated or truncated
        return total, length

    def evaluate(self, params, num_pairs, noise_stdev):
        """``num_pairs`` antithetic pairs; returns noise offsets, returns [n, 2] and lengths [n, 2]."""
        dim = params.size
        offsets = self.rng.integers(0, self.noise.size - dim + 1, size=num_pairs)
        returns = np.zeros((num_pairs, 2), np.float64)
        lengths = np.zeros((num_pairs, 2), np.int64)
        for k, offset in enumerate(offsets):
            perturbation = noise_stdev * self.noise[offset:offset + dim]
            seed = int(self.rng.integers(2**31))
            returns[k, 0], lengths[k, 0] = self.rollout(params + perturbation, seed)
            returns[k, 1], lengths[k, 1] = self.rollout(params - perturbation, seed)
        return {"offsets": offsets, "returns": returns, "lengths": lengths}


def centered_ranks(values):
    """Ranks scaled to [-0.5, 0.5]: fitness shaping that ignores the returns' scale and outliers."""
    flat = values.ravel()
    ranks = np.empty(flat.size, np.float64)
    ranks[flat.argsort(kind="stable")] = np.arange(flat.size)
    return (ranks / max(flat.size - 1, 1) - 0.5).reshape(values.shape)


class Adam:
    """Adam on a numpy vector (``step`` takes the gradient of a loss to minimise)."""

    def __init__(self, dim, lr, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.m = np.zeros(dim, np.float32)
        self.v = np.zeros(dim, np.float32)
        self.t = 0

    def step(self, params, grad):
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        lr = self.lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        return (params - lr * self.m / (np.sqrt(self.v) + self.epsilon)).astype(np.float32)


class ES(Algorithm):
    _name = "ES"
    _default_config = {
        "lr": 0.02,
        "model": {"hiddens": [16], "activation": "tanh"},
        "noise_stdev": 0.05,
        "l2_coeff": 0.005,
        # antithetic pairs per iteration (two episodes each), split over the workers
        "num_perturbations": 16,
        # float32 entries in the shared noise table (4 bytes each)
        "noise_size": 10_000_000,
        "noise_seed": 123,
    }

    def validate_config(self, config):
        check_positive_int(config, self._name, "num_perturbations", "noise_size")
        if not config["noise_stdev"] > 0:
            raise ValueError(f"ES: noise_stdev must be > 0, got {config['noise_stdev']!r}")

    def build(self, config):
        self.np_policy = NumpyPolicy(self.info, config["model"])
        if config["noise_size"] < self.np_policy.num_params:
            raise ValueError(f"ES: noise_size {config['noise_size']} is smaller than the policy's "
                             f"{self.np_policy.num_params} parameters")
        self.params = self.np_policy.initial_parameters(self.rng)
        self.optimizer = Adam(self.params.size, config["lr"])
        table = np.random.default_rng(config["noise_seed"]).standard_normal(config["noise_size"], dtype=np.float32)
        self.noise_ref = mpirt.put(table)
        del table
        self.noise = mpirt.get(self.noise_ref)  # the learner reads the same shared copy
        self.workers = make_workers(ESWorker, config["num_workers"], config,
                                    self.env_creator, self.info, self.noise_ref, config)

    def training_step(self):
        config = self.config
        pairs = np.array_split(np.arange(config["num_perturbations"]), len(self.workers))
        params = mpirt.put(self.params)
        calls = [w.evaluate.remote(params, len(share), config["noise_stdev"])
                 for w, share in zip(self.workers, pairs) if len(share)]
        results = mpirt.get(calls)
        offsets = np.concatenate([r["offsets"] for r in results])
        returns = np.concatenate([r["returns"] for r in results])
        lengths = np.concatenate([r["lengths"] for r in results])
        ranks = centered_ranks(returns)
        weights = (ranks[:, 0] - ranks[:, 1]).astype(np.float32)
        dim = self.params.size
        grad = np.zeros(dim, np.float32)
        for weight, offset in zip(weights, offsets):
            grad += weight * self.noise[offset:offset + dim]
        grad /= returns.size
        old = self.params
        self.params = self.optimizer.step(self.params, -grad + config["l2_coeff"] * self.params)
        stats = {"grad_norm": float(np.linalg.norm(grad)), "weights_norm": float(np.linalg.norm(self.params)),
                 "update_ratio": float(np.linalg.norm(self.params - old) / (np.linalg.norm(old) + 1e-12)),
                 "num_params": int(dim)}
        episodes = list(zip(returns.ravel().tolist(), lengths.ravel().tolist()))
        return {"timesteps_this_iter": int(lengths.sum()), "episodes": episodes, "learner": stats}

    def compute_action(self, observation, explore=False):
        """ES policies are deterministic; ``explore`` is accepted for the common signature."""
        return self.np_policy.act(self.params, np.asarray(observation, dtype=np.float32))

    compute_single_action = compute_action

    def get_state(self):
        return {"params": self.params,
                "optimizer": {"m": self.optimizer.m, "v": self.optimizer.v, "t": self.optimizer.t}}

    def set_state(self, state):
        if state["params"].shape != self.params.shape:
            raise ValueError(f"ES checkpoint has {state['params'].size} parameters, this policy has {self.params.size}")
        self.params = state["params"].astype(np.float32)
        self.optimizer.m = state["optimizer"]["m"].astype(np.float32)
        self.optimizer.v = state["optimizer"]["v"].astype(np.float32)
        self.optimizer.t = int(state["optimizer"]["t"])
