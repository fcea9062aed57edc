"""RolloutWorker: steps a few copies of the env with a policy and returns postprocessed batches.

It runs as an mpirt actor (``make_workers``); each algorithm gives it its
policy class. Envs are stepped one by one (no vector-env wrapper) so that the
true last observation of an episode is kept for bootstrapping before reset.
"""
import numpy as np

import mpirt
from mpirt.util.placement_group import get_current_placement_group
from mpirt.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .utils import set_torch_threads


class RolloutWorker:
    def __init__(self, env_creator, info, policy_cls, config, worker_index):
        set_torch_threads()
        seed = config.get("seed")
        self.worker_index = worker_index
        if seed is not None:
            import torch
            torch.manual_seed(seed + 1000 * worker_index)
        self.policy = policy_cls(info, {**config, "seed": None if seed is None else seed + 1000 * worker_index})
        self.info = info
        self.envs = [env_creator(worker_index=worker_index, vector_index=i, num_workers=config.get("num_workers"))
                     for i in range(config["num_envs_per_worker"])]
        self.obs = []
        for i, env in enumerate(self.envs):
            env_seed = None if seed is None else seed + 1000 * worker_index + i
            self.obs.append(env.reset(seed=env_seed)[0])
            env.action_space.seed(env_seed)
        self.episode_returns = [0.0] * len(self.envs)
        self.episode_lengths = [0] * len(self.envs)

    def set_weights(self, weights):
        self.policy.set_weights(weights)

    def sample(self, steps_per_env, weights=None, **act_kwargs):
        """Step every env ``steps_per_env`` times; returns the policy's batch, the episodes that ended
        (a list of (return, length)) and the number of env steps taken."""
        if weights is not None:
            self.policy.set_weights(weights)
        fragment, episodes = self._collect(steps_per_env, act_kwargs)
        return {"batch": self.policy.postprocess(fragment), "episodes": episodes,
                "steps": steps_per_env * len(self.envs)}

    def sample_and_compute_gradients(self, steps_per_env, weights=None, entropy_coeff=None, **act_kwargs):
        """A3C: sample with ``weights``, then return the policy's gradients on that batch (with the entropy
        coefficient of the moment, when it follows a schedule)."""
        result = self.sample(steps_per_env, weights, **act_kwargs)
        gradients, stats = self.policy.compute_gradients(result.pop("batch"), entropy_coeff)
        return {**result, "gradients": gradients, "stats": stats}

    def _collect(self, steps, act_kwargs):
        num_envs = len(self.envs)
        obs_dim = self.info.obs_dim
        fragment = {
            "obs": np.zeros((steps, num_envs, obs_dim), np.float32),
            "next_obs": np.zeros((steps, num_envs, obs_dim), np.float32),
            "rewards": np.zeros((steps, num_envs), np.float32),
            "terminateds": np.zeros((steps, num_envs), bool),
            "truncateds": np.zeros((steps, num_envs), bool),
        }
        episodes = []
        for t in range(steps):
            obs = np.asarray(self.obs, dtype=np.float32)
            actions, extras = self.policy.act(obs, **act_kwargs)
            if t == 0:
                fragment["actions"] = np.zeros((steps, *actions.shape), actions.dtype)
                for key, value in extras.items():
                    fragment[key] = np.zeros((steps, *value.shape), value.dtype)
            fragment["obs"][t] = obs
            fragment["actions"][t] = actions
            for key, value in extras.items():
                fragment[key][t] = value
            env_actions = self.policy.env_actions(actions)
            for i, env in enumerate(self.envs):
                next_obs, reward, terminated, truncated, _ = env.step(env_actions[i])
                fragment["next_obs"][t, i] = next_obs
                fragment["rewards"][t, i] = reward
                fragment["terminateds"][t, i] = terminated
                fragment["truncateds"][t, i] = truncated
                self.episode_returns[i] += float(reward)
                self.episode_lengths[i] += 1
                if terminated or truncated:
                    episodes.append((self.episode_returns[i], self.episode_lengths[i]))
                    self.episode_returns[i], self.episode_lengths[i] = 0.0, 0
                    next_obs, _ = env.reset()
                self.obs[i] = next_obs
        return fragment, episodes


def make_workers(worker_cls, count, config, *args):
    """``count`` actors of ``worker_cls``, each told its index; they hold ``num_cpus_per_worker`` CPUs
    (0 by default, mpirt's choice: such actors fit anywhere, a laptop's 2 cores included),
    ``num_gpus_per_worker`` GPUs and the custom ``resources``. ``count`` 0 (RLlib's
    ``num_env_runners=0``) gives one ``LocalWorker``: the same class, sampling in this process.

    Inside a placement group (a Tune trial's, from ``default_resource_request``) actors that hold
    resources run in its bundles: bundles 1..count when the group is laid out as the algorithm asks
    (bundle 0 being the algorithm's own), else any bundle with room; actors that hold nothing run
    outside the group, spread over the ranks as without Tune."""
    if count == 0:
        return [LocalWorker(worker_cls, *args, worker_index=0)]
    options = {"num_cpus": config["num_cpus_per_worker"]}
    if config.get("num_gpus_per_worker"):
        options["num_gpus"] = config["num_gpus_per_worker"]
    if config.get("resources"):
        options["resources"] = config["resources"]
    placements = [None] * count
    group = get_current_placement_group()
    if group is not None:
        request = {"CPU": options["num_cpus"], "GPU": options.get("num_gpus", 0), **options.get("resources", {})}
        request = {name: amount for name, amount in request.items() if amount}
        if not request:
            placements = ["DEFAULT"] * count
        else:
            bundles = group.bundle_specs
            laid_out = len(bundles) == count + 1 and all(
                all(bundle.get(name, 0.0) + 1e-9 >= amount for name, amount in request.items())
                for bundle in bundles[1:])
            placements = [PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i + 1 if laid_out
                                                           else -1) for i in range(count)]
    actor_cls = mpirt.remote(worker_cls)
    return [actor_cls.options(**options, **({"scheduling_strategy": placement} if placement else {}))
            .remote(*args, worker_index=i + 1) for i, placement in enumerate(placements)]


class LocalWorker:
    """A rollout worker in the algorithm's own process that answers ``worker.method.remote(...)`` like an
    actor: the call runs at once and its result is put in the object store, so the algorithms' loops
    (``mpirt.get``, ``mpirt.wait``) need no second path."""

    is_local = True

    def __init__(self, worker_cls, *args, **kwargs):
        self._instance = worker_cls(*_resolve(args), **_resolve(kwargs))

    def __getattr__(self, name):
        method = getattr(self._instance, name)
        return _LocalMethod(method)

    def stop(self):
        self._instance = None


class _LocalMethod:
    def __init__(self, method):
        self._method = method

    def remote(self, *args, **kwargs):
        return mpirt.put(self._method(*_resolve(args), **_resolve(kwargs)))


def _resolve(values):
    """Top-level ObjectRefs become their values, as they do for an actor's arguments."""
    if isinstance(values, dict):
        return {k: mpirt.get(v) if isinstance(v, mpirt.ObjectRef) else v for k, v in values.items()}
    return [mpirt.get(v) if isinstance(v, mpirt.ObjectRef) else v for v in values]
