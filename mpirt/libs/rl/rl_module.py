"""RLModule: RLlib's view of a policy network (``algo.get_module().forward_inference({"obs": x})``).

It wraps the algorithm's own network (the learner's live weights, not a copy),
so what it computes is what ``compute_single_action`` would. Outputs follow
RLlib's columns: ``action_dist_inputs`` (Categorical logits, or a diagonal
Gaussian's mean and log std side by side), ``vf_preds`` from ``forward_train``,
and for Q networks ``qf_preds`` and the greedy ``actions``.
"""
import numpy as np
import torch
from torch import nn


class RLModule(nn.Module):
    """Base of the modules ``Algorithm.get_module`` returns; ``forward_exploration`` and
    ``forward_train`` compute what ``forward_inference`` does, plus values where there are any."""

    def __init__(self, algorithm):
        super().__init__()
        self.observation_space = algorithm.env.observation_space
        self.action_space = algorithm.env.action_space
        self.inference_only = False

    @staticmethod
    def of(algorithm):
        from .models import ActorCritic, QNetwork

        model = getattr(getattr(algorithm, "policy", None), "model", None)
        if isinstance(model, ActorCritic):
            return ActorCriticModule(algorithm, model)
        if isinstance(model, QNetwork):
            return QModule(algorithm, model)
        return NumpyPolicyModule(algorithm)

    def _obs(self, batch):
        if not isinstance(batch, dict) or "obs" not in batch:
            raise KeyError(f"{type(self).__name__} needs a batch dict with an 'obs' entry, got "
                           f"{type(batch).__name__}{' with keys ' + str(list(batch)) if isinstance(batch, dict) else ''}")
        obs = torch.as_tensor(np.asarray(batch["obs"]) if not torch.is_tensor(batch["obs"]) else batch["obs"])
        return obs.to(dtype=torch.float32, device=self._device())

    def _device(self):
        return torch.device("cpu")

    def forward_inference(self, batch, **kwargs):
        raise NotImplementedError

    def forward_exploration(self, batch, **kwargs):
        return self.forward_inference(batch, **kwargs)

    def forward_train(self, batch, **kwargs):
        return self.forward_inference(batch, **kwargs)

    def forward(self, batch, **kwargs):
        return self.forward_train(batch, **kwargs)


class ActorCriticModule(RLModule):
    def __init__(self, algorithm, model):
        super().__init__(algorithm)
        self.model = model

    def _device(self):
        return next(self.model.parameters()).device

    def _dist_inputs(self, obs):
        out = self.model.pi(obs)
        if self.model.discrete:
            return out
        return torch.cat([out, self.model.log_std.expand_as(out)], dim=-1)

    def forward_inference(self, batch, **kwargs):
        with torch.no_grad():
            return {"action_dist_inputs": self._dist_inputs(self._obs(batch)).cpu()}

    def forward_train(self, batch, **kwargs):
        obs = self._obs(batch)
        return {"action_dist_inputs": self._dist_inputs(obs), "vf_preds": self.model.value(obs)}

    def compute_values(self, batch, embeddings=None):
        return self.model.value(self._obs(batch))


class QModule(RLModule):
    def __init__(self, algorithm, model):
        super().__init__(algorithm)
        self.model = model

    def _device(self):
        return next(self.model.parameters()).device

    def forward_inference(self, batch, **kwargs):
        with torch.no_grad():
            q = self.model(self._obs(batch)).cpu()
        return {"actions": q.argmax(-1), "qf_preds": q}

    def forward_train(self, batch, **kwargs):
        q = self.model(self._obs(batch))
        return {"qf_preds": q, "actions": q.argmax(-1)}


class NumpyPolicyModule(RLModule):
    """ES's deterministic numpy policy: the raw outputs as ``action_dist_inputs``, and the actions."""

    def __init__(self, algorithm):
        super().__init__(algorithm)
        self._algorithm = algorithm

    def forward_inference(self, batch, **kwargs):
        obs = self._obs(batch).cpu().numpy()
        algo = self._algorithm
        policy = algo.np_policy
        x = obs
        layers = list(policy._layers(algo.params))
        for i, (w, b) in enumerate(layers):
            x = x @ w + b
            if i < len(layers) - 1:
                x = policy.activation(x)
        actions = [policy.act(algo.params, o) for o in obs]
        return {"action_dist_inputs": torch.as_tensor(x), "actions": torch.as_tensor(np.asarray(actions))}
