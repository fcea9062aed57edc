"""Small helpers shared by the algorithms (config checks, torch threads, learner device, gradient clipping),
and RLlib's ``ray.rllib.utils`` paths below it (``replay_buffers``, ``annotations``, ``typing``)."""
import io


def set_torch_threads():
    """One torch thread per rank: the ranks of a node already share its cores."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def check_positive_int(config, algorithm, *keys, allow_zero=False):
    for key in keys:
        value = config[key]
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{algorithm}: config[{key!r}] must be an integer >= {low}, got {value!r}")


def learner_device(num_gpus, algorithm):
    """"cuda" when ``num_gpus`` > 0 and torch sees a GPU; asking for one that is not there is an error."""
    import torch

    if not num_gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{algorithm}: num_gpus_per_learner={num_gpus} (num_gpus in the dict API) but torch "
                         f"sees no CUDA device (torch {torch.__version__}); set it to 0 to learn on the CPU")
    return torch.device("cuda")


def optimizer_bytes(optimizer):
    """A torch optimizer's state (Adam moments) in torch's own format, kept opaque in the HDF5 file."""
    import torch

    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    return buffer.getvalue()


def load_optimizer(optimizer, data, device):
    import torch

    optimizer.load_state_dict(torch.load(io.BytesIO(data), map_location=device, weights_only=True))


def clip_gradients(groups, grad_clip, grad_clip_by):
    """Clip the gradients of each parameter group (a network: mpirt keeps policy and value networks
    apart, so "global_norm" is taken per network), by "global_norm", "norm" (each tensor) or "value"."""
    import torch

    if not grad_clip:
        return
    for params in groups:
        params = [p for p in params if p.grad is not None]
        if grad_clip_by == "value":
            torch.nn.utils.clip_grad_value_(params, grad_clip)
        elif grad_clip_by == "norm":
            for param in params:
                torch.nn.utils.clip_grad_norm_([param], grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)


def check_grad_clip(config, algorithm):
    if config["grad_clip"] is not None and (not isinstance(config["grad_clip"], (int, float))
                                            or not config["grad_clip"] > 0):
        raise ValueError(f"{algorithm}: grad_clip must be None or a number > 0, got {config['grad_clip']!r}")
    if config["grad_clip_by"] not in ("global_norm", "norm", "value"):
        raise ValueError(f"{algorithm}: grad_clip_by must be 'global_norm', 'norm' or 'value', got "
                         f"{config['grad_clip_by']!r}")


def schedule(value, name, algorithm):
    """RLlib's forms of a scheduled setting (``lr``, ``entropy_coeff``, DQN's ``epsilon``): a number, or
    ``[[timestep, value], ...]`` interpolated linearly in env steps sampled, constant after the last point.
    Returns the points, sorted."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [(0, float(value))]
    try:
        points = sorted((int(t), float(v)) for t, v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{algorithm}: {name} must be a number or a list of [timestep, value] pairs, "
                         f"got {value!r}") from None
    if not points:
        raise ValueError(f"{algorithm}: {name} schedule is empty")
    return points


def scheduled_value(points, timestep):
    if timestep <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if timestep <= t1:
            return v0 + (v1 - v0) * (timestep - t0) / max(t1 - t0, 1)
    return points[-1][1]
