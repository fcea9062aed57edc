"""Neural networks for the policies (PyTorch) and the numpy policy ES perturbs.

Weights travel between learner and rollout actors as dicts of numpy arrays
(``get_weights``/``set_weights``): plain data that pickles out of band and
needs no torch on the wire.
"""
import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "swish": nn.SiLU, "silu": nn.SiLU,
               "linear": nn.Identity}
NUMPY_ACTIVATIONS = {
    "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "swish": lambda x: x / (1.0 + np.exp(-x)), "silu": lambda x: x / (1.0 + np.exp(-x)), "linear": lambda x: x,
}


def check_model_config(model, where):
    """``model`` is {"hiddens": [64, 64], "activation": "tanh"} (the config's fcnet_hiddens and
    fcnet_activation); say clearly what is wrong, in the names the user wrote."""
    hiddens = model.get("hiddens")
    if not isinstance(hiddens, (list, tuple)) or not all(isinstance(h, int) and h > 0 for h in hiddens):
        raise ValueError(f"{where}: model['fcnet_hiddens'] must be a list of positive layer sizes, got {hiddens!r}")
    if model.get("activation") not in ACTIVATIONS:
        raise ValueError(f"{where}: model['fcnet_activation'] must be one of {sorted(ACTIVATIONS)}, "
                         f"got {model.get('activation')!r}")


def mlp(sizes, activation, out_gain=1.0):
    """Linear layers with ``activation`` between them; orthogonal init, the last layer scaled by ``out_gain``
    (a small gain keeps a fresh policy near uniform, which PPO and A3C explore from)."""
    layers = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate policy and value networks; Categorical for Discrete actions, a diagonal Gaussian with a
    state-independent log std for Box actions. Separate networks keep a large value loss (Pendulum's
    returns are in the hundreds) from swamping the policy's gradient."""

    def __init__(self, info, model):
        super().__init__()
        hiddens, activation = list(model["hiddens"]), model["activation"]
        self.discrete = info.discrete
        out = info.num_actions if info.discrete else info.action_dim
        self.pi = mlp([info.obs_dim, *hiddens, out], activation, out_gain=0.01)
        self.vf = mlp([info.obs_dim, *hiddens, 1], activation, out_gain=1.0)
        if not info.discrete:
            self.log_std = nn.Parameter(torch.zeros(info.action_dim))

    def distribution(self, obs):
        out = self.pi(obs)
        if self.discrete:
            return torch.distributions.Categorical(logits=out)
        std = self.log_std.clamp(-5.0, 2.0).exp().expand_as(out)
        return torch.distributions.Independent(torch.distributions.Normal(out, std), 1)

    def value(self, obs):
        return self.vf(obs).squeeze(-1)

    def policy_parameters(self):
        params = list(self.pi.parameters())
        return params + ([self.log_std] if not self.discrete else [])


class QNetwork(nn.Module):
    """Q(s, .) for every discrete action; ``dueling`` splits it into value and advantage streams, each a
    head with ``head_hiddens`` layers (RLlib's DQN ``hiddens``) on the shared ``hiddens`` body."""

    def __init__(self, info, model, dueling=True, head_hiddens=()):
        super().__init__()
        hiddens, activation = list(model["hiddens"]), model["activation"]
        head_hiddens = list(head_hiddens)
        self.dueling = dueling
        if dueling:
            if hiddens:
                self.body = nn.Sequential(mlp([info.obs_dim, *hiddens], activation, out_gain=np.sqrt(2)),
                                          ACTIVATIONS[activation]())
            else:
                self.body = nn.Identity()
            features = hiddens[-1] if hiddens else info.obs_dim
            self.advantage = mlp([features, *head_hiddens, info.num_actions], activation)
            self.state_value = mlp([features, *head_hiddens, 1], activation)
        else:
            self.q = mlp([info.obs_dim, *hiddens, *head_hiddens, info.num_actions], activation)

    def forward(self, obs):
        if not self.dueling:
            return self.q(obs)
        features = self.body(obs)
        advantage = self.advantage(features)
        return self.state_value(features) + advantage - advantage.mean(dim=-1, keepdim=True)


def get_weights(module):
    """The module's parameters and buffers as a dict of numpy arrays (copies, on the CPU)."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in module.state_dict().items()}


def set_weights(module, weights):
    """Load a dict from ``get_weights`` (arrays may be read-only views from the object store)."""
    state = {name: torch.as_tensor(np.array(value)) for name, value in weights.items()}
    module.load_state_dict(state)


class NumpyPolicy:
    """A deterministic MLP on a flat parameter vector, for ES: perturbing a policy is adding noise to
    one array, and a rollout needs no torch. Discrete: argmax of the outputs; Box: tanh scaled to bounds."""

    def __init__(self, info, model):
        self.info = info
        self.activation = NUMPY_ACTIVATIONS[model["activation"]]
        out = info.num_actions if info.discrete else info.action_dim
        sizes = [info.obs_dim, *model["hiddens"], out]
        self.shapes = [(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]
        self.num_params = sum(a * b + b for a, b in self.shapes)

    def initial_parameters(self, rng):
        """Layers scaled like a normalized-column init (the ES paper's choice), biases zero."""
        parts = []
        for fan_in, fan_out in self.shapes:
            w = rng.standard_normal((fan_in, fan_out)).astype(np.float32)
            w *= 1.0 / np.sqrt(np.square(w).sum(axis=0, keepdims=True))
            parts += [w.ravel(), np.zeros(fan_out, np.float32)]
        return np.concatenate(parts)

    def _layers(self, params):
        offset = 0
        for fan_in, fan_out in self.shapes:
            w = params[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
            offset += fan_in * fan_out
            b = params[offset:offset + fan_out]
            offset += fan_out
            yield w, b

    def act(self, params, obs):
        x = np.asarray(obs, dtype=np.float32)
        layers = list(self._layers(params))
        for i, (w, b) in enumerate(layers):
            x = x @ w + b
            if i < len(layers) - 1:
                x = self.activation(x)
        if self.info.discrete:
            return int(np.argmax(x))
        low, high = self.info.low, self.info.high
        return low + (np.tanh(x) + 1.0) * 0.5 * (high - low)
