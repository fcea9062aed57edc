"""Evolution strategies (Salimans et al. 2017), numpy only.

The learner puts one table of Gaussian noise in the object store; every ES
actor receives it as a read-only numpy view of the same shared memory (no copy
on a node), so a perturbation is just an offset into it. Workers evaluate
antithetic pairs (theta + s*eps, theta - s*eps, on the same env seed) and send
back only offsets and scalar returns; the learner rebuilds each eps from its own
view, shapes fitness by centered ranks and takes an Adam step.
"""
import math

import numpy as np

import mpirt

from .algorithm import Algorithm
from .config import AlgorithmConfig
from .models import NumpyPolicy
from .rollout import make_workers
from .utils import check_positive_int


class ESWorker:
    """Evaluates perturbations of the policy parameters; holds the shared noise table."""

    def __init__(self, env_creator, info, noise, config, worker_index):
        self.noise = noise  # arrives as a read-only view of the object store
        self.policy = NumpyPolicy(info, config["model"])
        self.env = env_creator(worker_index=worker_index, num_workers=config.get("num_workers"))
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


class ESConfig(AlgorithmConfig):
    """RLlib's ``ESConfig`` (RLlib 2.x before ES moved out of it), with mpirt's defaults: RLlib's current
    releases no longer ship ES, and its old defaults (1000 episodes per batch, a 1 GB noise table) are
    sized for clusters. ``noise_seed`` is mpirt's: the seed of the shared noise table."""

    _training = {
        "action_noise_std": 0.01, "l2_coeff": 0.005, "noise_stdev": 0.05, "episodes_per_batch": 32,
        "eval_prob": 0.03, "stepsize": 0.02, "noise_size": 10_000_000, "report_length": 10,
        "tf_single_threaded": True, "noise_seed": 123,
    }
    _defaults = {"num_env_runners": 2, "train_batch_size": 0,
                 "model": {"fcnet_hiddens": [16], "fcnet_activation": "tanh"}}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or ES)

    def _special_keys(self):
        return ("lr", "num_perturbations")

    def _apply_special_keys(self, values, config_dict):
        """mpirt's dict API: ``lr`` is ES's Adam step (``stepsize``, unless given too) and
        ``num_perturbations`` the antithetic pairs per iteration (``episodes_per_batch`` / 2)."""
        if "lr" in values:
            self.lr = values["lr"]
            if "stepsize" not in config_dict:
                self.stepsize = values["lr"]
        if "num_perturbations" in values:
            self.episodes_per_batch = 2 * values["num_perturbations"]


class ES(Algorithm):
    _name = "ES"
    _config_class = ESConfig
    _dict_defaults = {"lr": 0.02, "model": {"fcnet_hiddens": [16], "fcnet_activation": "tanh"}}

    def validate_config(self, config):
        check_positive_int(config, self._name, "episodes_per_batch", "noise_size")
        check_positive_int(config, self._name, "train_batch_size", allow_zero=True)
        if not config.noise_stdev > 0:
            raise ValueError(f"ES: noise_stdev must be > 0, got {config.noise_stdev!r}")
        if not config.stepsize > 0:
            raise ValueError(f"ES: stepsize must be > 0, got {config.stepsize!r}")
        if config.num_env_runners < 1:
            raise ValueError("ES: num_env_runners must be >= 1, got 0")

    def build(self, config):
        worker_config = self.worker_config()
        self.np_policy = NumpyPolicy(self.info, worker_config["model"])
        if config.noise_size < self.np_policy.num_params:
            raise ValueError(f"ES: noise_size {config.noise_size} is smaller than the policy's "
                             f"{self.np_policy.num_params} parameters")
        self.params = self.np_policy.initial_parameters(self.rng)
        self.optimizer = Adam(self.params.size, config.stepsize)
        table = np.random.default_rng(config.noise_seed).standard_normal(config.noise_size, dtype=np.float32)
        self.noise_ref = mpirt.put(table)
        del table
        self.noise = mpirt.get(self.noise_ref)  # the learner reads the same shared copy
        self.workers = make_workers(ESWorker, config.num_env_runners, worker_config,
                                    self.env_creator, self.info, self.noise_ref, worker_config)

    def training_step(self):
        """Antithetic pairs until ``episodes_per_batch`` episodes and ``train_batch_size`` steps are in,
        then one Adam step on the rank-shaped gradient estimate."""
        config = self.config
        pairs = np.array_split(np.arange(math.ceil(config.episodes_per_batch / 2)), len(self.workers))
        params = mpirt.put(self.params)
        results = []
        while not results or sum(int(r["lengths"].sum()) for r in results) < config.train_batch_size:
            calls = [w.evaluate.remote(params, len(share), config.noise_stdev)
                     for w, share in zip(self.workers, pairs) if len(share)]
            results += mpirt.get(calls)
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
        self.params = self.optimizer.step(self.params, -grad + config.l2_coeff * self.params)
        stats = {"grad_norm": float(np.linalg.norm(grad)), "weights_norm": float(np.linalg.norm(self.params)),
                 "update_ratio": float(np.linalg.norm(self.params - old) / (np.linalg.norm(old) + 1e-12)),
                 "num_params": int(dim)}
        episodes = list(zip(returns.ravel().tolist(), lengths.ravel().tolist()))
        return {"timesteps_this_iter": int(lengths.sum()), "episodes": episodes, "learner": stats}

    def compute_action(self, observation, explore=False):
        """ES policies are deterministic; ``explore`` is accepted for the common signature."""
        return self.np_policy.act(self.params, np.asarray(observation, dtype=np.float32))


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
