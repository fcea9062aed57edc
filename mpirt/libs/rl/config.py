"""AlgorithmConfig: RLlib's builder-style configuration (``PPOConfig().environment(...).training(...)``).

A config object holds every setting under RLlib's name. Its setter methods take
RLlib's keyword arguments (each method the names RLlib gives it), so a valid
RLlib call is accepted and a typo raises ``TypeError`` naming the setting and the
config class, as Python does for an unexpected keyword. ``to_dict()`` gives the
flat dict that Tune passes to a trainable, and ``Algorithm(config=dict)`` turns
such a dict back into a config object (``update_from_dict``), so one code path
serves ``config.build_algo()``, ``PPO(config={...})`` and ``tune.run("PPO", ...)``.

Settings fall in three groups. Most are used by mpirt's algorithms. Some describe
machinery mpirt does not have (timeouts of Ray's actor manager, tf session
arguments, connector pipelines with their defaults, ...): they are stored, shown
by ``to_dict()`` and have no effect. A few ask for a feature mpirt lacks
(multi-agent policies, offline data, callbacks, LSTM models, ...): building an
algorithm whose config changes one of those from its default raises
``NotImplementedError`` naming it, rather than silently training something else.
"""
import copy
import difflib

# method -> {parameter: default}, RLlib's names and defaults (RLlib 2.x's AlgorithmConfig).
SETTINGS: dict[str, dict] = {
    "environment": {
        "env": None, "env_config": {}, "observation_space": None, "action_space": None, "render_env": False,
        "clip_rewards": None, "normalize_actions": True, "clip_actions": False, "disable_env_checking": False,
        "is_atari": None, "action_mask_key": "action_mask", "env_task_fn": None,
    },
    "env_runners": {
        "env_runner_cls": None, "num_env_runners": 0, "create_local_env_runner": True,
        "create_env_on_local_worker": False, "num_envs_per_env_runner": 1, "gym_env_vectorize_mode": "sync",
        # Ray's default is 1; mpirt's rollout actors hold no CPU by default (see docs/rl.md, "Resources")
        "num_cpus_per_env_runner": 0, "num_gpus_per_env_runner": 0, "custom_resources_per_env_runner": {},
        "validate_env_runners_after_construction": True, "sample_timeout_s": 60.0,
        "max_requests_in_flight_per_env_runner": 1, "env_to_module_connector": None,
        "module_to_env_connector": None, "add_default_connectors_to_env_to_module_pipeline": True,
        "add_default_connectors_to_module_to_env_pipeline": True, "episode_lookback_horizon": 1,
        "merge_env_runner_states": "training_only", "broadcast_env_runner_states": True,
        "use_env_runner_state_server": False, "env_runner_state_server_max_concurrency": 16,
        "compress_observations": False, "rollout_fragment_length": 200, "batch_mode": "truncate_episodes",
        "explore": True, "episodes_to_numpy": True, "use_worker_filter_stats": True,
        "update_worker_filter_stats": True, "exploration_config": {}, "sample_collector": None,
        "remote_worker_envs": False, "remote_env_batch_wait_ms": 0, "preprocessor_pref": "deepmind",
        "observation_filter": "NoFilter", "enable_tf1_exec_eagerly": False, "sampler_perf_stats_ema_coef": None,
        "restart_failed_sub_environments": False,
    },
    "training": {
        "gamma": 0.99, "lr": 0.001, "grad_clip": None, "grad_clip_by": "global_norm", "train_batch_size": 32,
        "train_batch_size_per_learner": None, "num_epochs": 1, "minibatch_size": None,
        "shuffle_batch_per_epoch": False,
        "model": {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh", "vf_share_layers": False},
        "optimizer": {}, "num_aggregator_actors_per_learner": 0, "max_requests_in_flight_per_aggregator_actor": 3,
        "learner_class": None, "learner_connector": None, "add_default_connectors_to_learner_pipeline": True,
        "learner_config_dict": {},
    },
    "learners": {
        "num_learners": 0, "num_cpus_per_learner": "auto", "num_gpus_per_learner": 0,
        "custom_resources_per_learner": {}, "num_aggregator_actors_per_learner": 0,
        "max_requests_in_flight_per_aggregator_actor": 3, "local_gpu_idx": 0, "max_requests_in_flight_per_learner": 3,
        "learner_class": None, "learner_connector": None, "add_default_connectors_to_learner_pipeline": True,
        "learner_config_dict": {},
    },
    "framework": {
        "framework": "torch", "eager_tracing": True, "eager_max_retraces": 20, "tf_session_args": {},
        "local_tf_session_args": {}, "torch_compile_learner": False, "torch_compile_learner_what_to_compile":
        "forward_train", "torch_compile_learner_dynamo_mode": None, "torch_compile_learner_dynamo_backend":
        "inductor", "torch_compile_worker": False, "torch_compile_worker_dynamo_backend": "onnxrt",
        "torch_compile_worker_dynamo_mode": None, "torch_ddp_kwargs": {}, "torch_skip_nan_gradients": False,
    },
    "debugging": {"log_level": "WARN", "log_sys_usage": True, "fake_sampler": False, "seed": None},
    "evaluation": {
        "evaluation_interval": None, "evaluation_duration": 10, "evaluation_duration_unit": "episodes",
        "evaluation_auto_duration_min_env_steps_per_sample": 100,
        "evaluation_auto_duration_max_env_steps_per_sample": 2000, "evaluation_sample_timeout_s": 120.0,
        "evaluation_parallel_to_training": False, "evaluation_unhealthy_workers_timeout_s": 0.0,
        "evaluation_error_after_n_consecutive_skips": None, "evaluation_force_reset_envs_before_iteration": True,
        "evaluation_config": None, "off_policy_estimation_methods": {}, "ope_split_batch_by_episode": True,
        "evaluation_num_env_runners": 0, "custom_evaluation_function": None, "offline_evaluation_interval": None,
        "num_offline_eval_runners": 0, "offline_evaluation_type": "eval_loss", "offline_eval_runner_class": None,
        "offline_loss_for_module_fn": None, "offline_eval_batch_size_per_runner": 256,
        "dataset_num_iters_per_offline_eval_runner": 1, "offline_eval_rl_module_inference_only": False,
        "num_cpus_per_offline_eval_runner": 1, "num_gpus_per_offline_eval_runner": 0,
        "custom_resources_per_offline_eval_runner": {}, "offline_evaluation_timeout_s": 120.0,
        "max_requests_in_flight_per_offline_eval_runner": 1, "broadcast_offline_eval_runner_states": False,
        "validate_offline_eval_runners_after_construction": True, "restart_failed_offline_eval_runners": True,
        "ignore_offline_eval_runner_failures": False, "max_num_offline_eval_runner_restarts": 1000,
        "offline_eval_runner_health_probe_timeout_s": 30.0, "offline_eval_runner_restore_timeout_s": 1800.0,
        "always_attach_evaluation_results": True,
    },
    "resources": {
        "num_cpus_for_main_process": 1, "custom_resources_for_main_process": {}, "num_gpus": 0,
        "_fake_gpus": False, "placement_strategy": "PACK", "local_gpu_idx": 0,
    },
    "api_stack": {"enable_rl_module_and_learner": True, "enable_env_runner_and_connector_v2": True},
    "rl_module": {"model_config": {}, "rl_module_spec": None, "algorithm_config_overrides_per_module": {}},
    "reporting": {
        "keep_per_episode_custom_metrics": False, "metrics_episode_collection_timeout_s": 60.0,
        "metrics_num_episodes_for_smoothing": 100, "min_time_s_per_iteration": None,
        "min_train_timesteps_per_iteration": 0, "min_sample_timesteps_per_iteration": 0, "log_gradients": False,
        "custom_stats_cls_lookup": {},
    },
    "checkpointing": {"export_native_model_files": False, "checkpoint_trainable_policies_only": False},
    "fault_tolerance": {
        "restart_failed_env_runners": True, "ignore_env_runner_failures": False, "max_num_env_runner_restarts": 1000,
        "delay_between_env_runner_restarts_s": 60.0, "restart_failed_sub_environments": False,
        "num_consecutive_env_runner_failures_tolerance": 100, "env_runner_health_probe_timeout_s": 30.0,
        "env_runner_restore_timeout_s": 1800.0,
    },
    "callbacks": {
        "callbacks_class": None, "on_algorithm_init": None, "on_train_result": None, "on_evaluate_start": None,
        "on_evaluate_end": None, "on_evaluate_offline_start": None, "on_evaluate_offline_end": None,
        "on_env_runners_recreated": None, "on_offline_eval_runners_recreated": None, "on_checkpoint_loaded": None,
        "on_environment_created": None, "on_episode_created": None, "on_episode_start": None,
        "on_episode_step": None, "on_episode_end": None, "on_sample_end": None,
    },
    "multi_agent": {
        "policies": None, "policy_map_capacity": 100, "policy_mapping_fn": None, "policies_to_train": None,
        "policy_states_are_swappable": False, "observation_fn": None, "count_steps_by": "env_steps",
        "algorithm_config_overrides_per_module": {},
    },
    "offline_data": {
        "input_": "sampler", "offline_data_class": None, "input_read_method": "read_parquet",
        "input_read_method_kwargs": {}, "input_read_schema": {}, "input_read_episodes": False,
        "input_read_sample_batches": False, "input_read_batch_size": None, "input_filesystem": None,
        "input_filesystem_kwargs": {}, "input_compress_columns": ["obs", "new_obs"], "materialize_data": False,
        "materialize_mapped_data": True, "map_batches_kwargs": {}, "iter_batches_kwargs": {},
        "ignore_final_observation": False, "prelearner_class": None, "prelearner_buffer_class": None,
        "prelearner_buffer_kwargs": {}, "prelearner_module_synch_period": 10,
        "prelearner_use_recorded_module_states": False, "dataset_num_iters_per_learner": None, "input_config": {},
        "actions_in_input_normalized": False, "postprocess_inputs": False, "shuffle_buffer_size": 0,
        "output": None, "output_config": {}, "output_compress_columns": ["obs", "new_obs"],
        "output_max_file_size": 64 * 1024 * 1024, "output_max_rows_per_file": None,
        "output_write_remaining_data": False, "output_write_method": "write_parquet",
        "output_write_method_kwargs": {}, "output_filesystem": None, "output_filesystem_kwargs": {},
        "output_write_episodes": True, "offline_sampling": False,
    },
    "python_environment": {"extra_python_environs_for_driver": {}, "extra_python_environs_for_worker": {}},
    "experimental": {
        "_validate_config": True, "_use_msgpack_checkpoints": False, "_torch_grad_scaler_class": None,
        "_torch_lr_scheduler_classes": None, "_tf_policy_handles_more_than_one_loss": False,
        "_disable_preprocessor_api": False, "_disable_action_flattening": False,
        "_disable_initialize_loss_from_dummy_batch": False,
    },
}

# Old argument names a setter still takes, as RLlib does: (method, old) -> new, or None where RLlib raises.
RENAMED_ARGUMENTS = {
    ("training", "num_sgd_iter"): "num_epochs",
    ("evaluation", "evaluation_num_workers"): "evaluation_num_env_runners",
    ("resources", "num_cpus_per_worker"): "num_cpus_per_env_runner",
    ("resources", "num_gpus_per_worker"): "num_gpus_per_env_runner",
    ("resources", "custom_resources_per_worker"): "custom_resources_per_env_runner",
    ("resources", "num_learner_workers"): "num_learners",
    ("resources", "num_cpus_per_learner_worker"): "num_cpus_per_learner",
    ("resources", "num_gpus_per_learner_worker"): "num_gpus_per_learner",
    ("resources", "num_cpus_for_local_worker"): "num_cpus_for_main_process",
    ("rl_module", "model_config_dict"): "model_config",
    ("env_runners", "num_rollout_workers"): None,
    ("env_runners", "num_envs_per_worker"): None,
}
_REPLACEMENT_OF_REMOVED = {"num_rollout_workers": "num_env_runners", "num_envs_per_worker": "num_envs_per_env_runner"}

# Keys of old-style config dicts (and of mpirt's own dict API) -> the attribute they set.
DICT_ALIASES = {
    "num_workers": "num_env_runners", "num_rollout_workers": "num_env_runners",
    "num_envs_per_worker": "num_envs_per_env_runner", "num_cpus_per_worker": "num_cpus_per_env_runner",
    "num_gpus_per_worker": "num_gpus_per_env_runner", "num_learner_workers": "num_learners",
    "num_gpus_per_learner_worker": "num_gpus_per_learner", "num_cpus_per_learner_worker": "num_cpus_per_learner",
    "evaluation_num_workers": "evaluation_num_env_runners", "num_sgd_iter": "num_epochs",
    "sgd_minibatch_size": "minibatch_size", "lambda": "lambda_", "input": "input_",
    "callbacks": "callbacks_class", "framework": "framework_str", "create_env_on_driver": "create_env_on_local_worker",
    "custom_eval_function": "custom_evaluation_function", "model_config": "_model_config",
    "rl_module_spec": "_rl_module_spec",
}
# Attribute -> key in to_dict() (RLlib's spelling there).
_DICT_KEYS = {"lambda_": "lambda", "input_": "input", "callbacks_class": "callbacks", "framework_str": "framework",
              "create_env_on_local_worker": "create_env_on_driver",
              "custom_evaluation_function": "custom_eval_function", "_model_config": "model_config",
              "_rl_module_spec": "rl_module_spec"}
# Dict settings that setters and update_from_dict update key by key (as RLlib does) instead of replacing.
_MERGED = ("model", "replay_buffer_config")
# Setter parameter -> attribute, where RLlib stores it under another name.
_ATTRIBUTES = {"framework": "framework_str", "model_config": "_model_config", "rl_module_spec": "_rl_module_spec"}

# Settings that ask for a feature mpirt.libs.rl does not have: building with a non-default value raises.
UNSUPPORTED = {
    "clip_rewards": "reward clipping", "env_task_fn": "task-settable envs", "env_runner_cls": "custom env runners",
    "env_to_module_connector": "connector pipelines", "module_to_env_connector": "connector pipelines",
    "remote_worker_envs": "envs in actors of their own", "learner_class": "custom learners",
    "learner_connector": "connector pipelines", "custom_evaluation_function": "custom evaluation functions",
    "off_policy_estimation_methods": "off-policy estimation", "offline_evaluation_interval": "offline evaluation",
    "rl_module_spec": "custom RLModules", "algorithm_config_overrides_per_module": "per-module overrides",
    "policies": "multi-agent training", "policy_mapping_fn": "multi-agent training",
    "policies_to_train": "multi-agent training", "output": "writing experiences",
    "extra_python_environs_for_driver": "extra environment variables (use runtime_env)",
    "extra_python_environs_for_worker": "extra environment variables (use runtime_env)",
    **{name: "callbacks (the result of train() is where metrics come from)"
       for name in SETTINGS["callbacks"]},
}
# Values these settings may take (other than their default).
ALLOWED = {
    "batch_mode": ("truncate_episodes",), "observation_filter": ("NoFilter",), "input_": ("sampler",),
    "framework_str": ("torch",),
}
# Keys of ``model`` / ``model_config`` that change the network into something mpirt does not build.
UNSUPPORTED_MODEL_KEYS = ("use_lstm", "use_attention", "custom_model", "conv_filters", "post_fcnet_hiddens",
                          "head_fcnet_hiddens", "free_log_std", "fcnet_use_layernorm")


class _NotProvided:
    def __repr__(self):
        return "NotProvided"


NotProvided = _NotProvided()


def _make_setter(method):
    def setter(self, *args, **kwargs):
        if args:
            if method in ("framework",) or (method == "environment" and len(args) == 1):
                kwargs[next(iter(SETTINGS[method]))] = args[0]
            else:
                raise TypeError(f"{type(self).__name__}.{method}() takes keyword arguments only")
        return self._set(method, kwargs)

    setter.__name__ = method
    setter.__doc__ = (f"Set {method} settings (RLlib's ``AlgorithmConfig.{method}``): keyword arguments "
                      f"{', '.join(SETTINGS[method])}. Returns this config, for chaining.")
    return setter


class AlgorithmConfig:
    """RLlib's configuration object. ``algo_class`` is the algorithm ``build_algo()`` makes; subclasses
    (``PPOConfig``, ...) add their training settings in ``_training`` and change defaults in ``_defaults``."""

    _training: dict = {}    # algorithm-specific parameters of training(), with their defaults
    _defaults: dict = {}    # RLlib's defaults for this algorithm where they differ from AlgorithmConfig's
    _aliases: dict = {}     # algorithm-specific DICT_ALIASES
    _unsupported: dict = {}  # algorithm-specific UNSUPPORTED

    def __init__(self, algo_class=None):
        object.__setattr__(self, "_is_frozen", False)
        self.algo_class = algo_class
        for method, params in self._settings().items():
            for name, default in params.items():
                if not name.startswith("on_"):
                    setattr(self, _ATTRIBUTES.get(name, name), copy.deepcopy(default))
        for name in SETTINGS["callbacks"]:
            if name.startswith("on_"):
                setattr(self, "callbacks_" + name, None)
        for name, value in self._defaults.items():
            setattr(self, name, copy.deepcopy(value))

    @classmethod
    def _settings(cls):
        settings = dict(SETTINGS)
        settings["training"] = {**SETTINGS["training"], **cls._training}
        return settings

    @classmethod
    def _default_values(cls):
        """{attribute: default} of a fresh config of this class."""
        fresh = cls.__new__(cls)
        cls.__init__(fresh)
        return vars(fresh)

    # ------------------------------------------------------------------ setters
    def _set(self, method, kwargs):
        known = self._settings()[method]
        for name, value in kwargs.items():
            if value is NotProvided:
                continue
            if (method, name) in RENAMED_ARGUMENTS:
                new = RENAMED_ARGUMENTS[(method, name)]
                if new is None:
                    raise ValueError(f"`AlgorithmConfig.{method}({name})` has been deprecated. Use "
                                     f"`AlgorithmConfig.{method}({_REPLACEMENT_OF_REMOVED[name]})` instead.")
                name = new
            elif name not in known:
                close = difflib.get_close_matches(name, list(known), n=3)
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                raise TypeError(f"{type(self).__name__}.{method}() got an unexpected keyword argument "
                                f"{name!r}{hint}")
            if name.startswith("on_"):
                setattr(self, "callbacks_" + name, value)
            elif name in _MERGED and isinstance(value, dict):  # RLlib updates these dicts key by key
                setattr(self, name, {**getattr(self, name), **copy.deepcopy(value)})
            elif name == "env_config" and value is None:
                self.env_config = {}
            elif name == "evaluation_config" and isinstance(value, AlgorithmConfig):
                self.evaluation_config = value.to_dict()
            else:
                setattr(self, _ATTRIBUTES.get(name, name), copy.deepcopy(value) if _copyable(value) else value)
        return self

    environment = _make_setter("environment")
    env_runners = _make_setter("env_runners")
    training = _make_setter("training")
    learners = _make_setter("learners")
    framework = _make_setter("framework")
    debugging = _make_setter("debugging")
    evaluation = _make_setter("evaluation")
    resources = _make_setter("resources")
    api_stack = _make_setter("api_stack")
    rl_module = _make_setter("rl_module")
    reporting = _make_setter("reporting")
    checkpointing = _make_setter("checkpointing")
    fault_tolerance = _make_setter("fault_tolerance")
    callbacks = _make_setter("callbacks")
    multi_agent = _make_setter("multi_agent")
    offline_data = _make_setter("offline_data")
    python_environment = _make_setter("python_environment")
    experimental = _make_setter("experimental")

    def rollouts(self, *args, **kwargs):
        raise ValueError("`rollouts` has been deprecated. Use `AlgorithmConfig.env_runners(..)` instead.")

    def exploration(self, *args, **kwargs):
        raise ValueError("`exploration` has been deprecated. Use `AlgorithmConfig.env_runners(..)` instead.")

    # ------------------------------------------------------------------ attribute access
    def __setattr__(self, key, value):
        if self.__dict__.get("_is_frozen") and key != "_is_frozen":
            raise AttributeError(f"Cannot set attribute ({key}) of an already frozen AlgorithmConfig!")
        object.__setattr__(self, key, value)

    @property
    def model_config(self):
        """The network's settings: ``rl_module(model_config=)`` over ``training(model=)``."""
        model_config = self._model_config
        if not isinstance(model_config, dict):  # a DefaultModelConfig dataclass
            import dataclasses
            model_config = dataclasses.asdict(model_config)
        return {**self.model, **model_config}

    @property
    def rl_module_spec(self):
        return self._rl_module_spec

    @property
    def total_train_batch_size(self):
        per_learner = self.train_batch_size_per_learner
        return per_learner * max(self.num_learners, 1) if per_learner else self.train_batch_size

    @property
    def is_multi_agent(self):
        return False

    def _translate(self, key):
        return {**DICT_ALIASES, **self._aliases}.get(key, key)

    def __getitem__(self, key):
        return getattr(self, self._translate(key))

    def __setitem__(self, key, value):
        setattr(self, self._translate(key), value)

    def __contains__(self, key):
        return hasattr(self, self._translate(key))

    def get(self, key, default=None):
        return getattr(self, self._translate(key), default)

    def pop(self, key, default=None):
        return self.get(key, default)

    def keys(self):
        return self.to_dict().keys()

    def values(self):
        return self.to_dict().values()

    def items(self):
        return self.to_dict().items()

    # ------------------------------------------------------------------ dicts, copies
    def to_dict(self):
        """Every setting in one flat dict, RLlib's keys (``lambda``, ``framework``, ``callbacks``, ...):
        what Tune passes to the trainable, and what ``update_from_dict`` reads back."""
        out = {}
        for key, value in vars(self).items():
            if key in ("algo_class", "_is_frozen"):
                continue
            out[_DICT_KEYS.get(key, key)] = copy.deepcopy(value) if _copyable(value) else value
        return out

    def serialize(self):
        return self.to_dict()

    def update_from_dict(self, config_dict):
        """Set every key of ``config_dict`` (RLlib's keys, their old names such as ``num_workers``, or
        mpirt's dict API). An unknown key raises ValueError with the closest known names."""
        known = set(vars(self)) | set(_DICT_KEYS.values())
        pending = dict(config_dict)
        special = {key: pending.pop(key) for key in list(pending) if key in self._special_keys()}
        for key, value in pending.items():
            if key.startswith("__") or key == "_is_frozen":  # bookkeeping a caller such as Tune may add
                continue
            attribute = self._translate(key)
            if attribute not in known and not attribute.startswith("callbacks_"):
                candidates = sorted(k for k in self.to_dict())
                close = difflib.get_close_matches(key, candidates, n=3)
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                raise ValueError(f"{self._algo_name()}: unknown config key {key!r}{hint}; see "
                                 f"{type(self).__name__}().to_dict() for the known keys")
            if attribute in _MERGED and isinstance(value, dict):
                value = {**getattr(self, attribute), **(_model_from_mpirt(value) if attribute == "model" else value)}
            elif attribute == "evaluation_config" and isinstance(value, AlgorithmConfig):
                value = value.to_dict()
            setattr(self, attribute, copy.deepcopy(value) if _copyable(value) else value)
        if special:
            self._apply_special_keys(special, config_dict)
        return self

    def _special_keys(self):
        """Keys of mpirt's dict API that set something in another form (DQN's epsilon schedule, ...)."""
        return ()

    def _apply_special_keys(self, values, config_dict):
        raise NotImplementedError

    @classmethod
    def from_dict(cls, config_dict):
        return cls().update_from_dict({k: v for k, v in config_dict.items() if k != "_is_frozen"})

    @classmethod
    def overrides(cls, **kwargs):
        """A dict of settings meant to override another config's (``evaluation_config=``); names are
        checked against this class's settings."""
        defaults = cls._default_values()
        for key in kwargs:
            if key not in defaults and cls()._translate(key) not in defaults:
                raise KeyError(f"Invalid property name {key} for config class {cls.__name__}!")
        return dict(kwargs)

    def copy(self, copy_frozen=None):
        clone = copy.copy(self)
        object.__setattr__(clone, "__dict__", {k: (copy.deepcopy(v) if _copyable(v) else v)
                                               for k, v in self.__dict__.items()})
        if copy_frozen is not None:
            object.__setattr__(clone, "_is_frozen", bool(copy_frozen))
        return clone

    def freeze(self):
        object.__setattr__(self, "_is_frozen", True)

    # ------------------------------------------------------------------ checks and building
    def _algo_name(self):
        algo = self.algo_class
        return getattr(algo, "_name", None) or getattr(algo, "__name__", None) or type(self).__name__

    def validate(self):
        """Raise for settings mpirt cannot honour (NotImplementedError naming them) and for values no
        algorithm can use (ValueError). Ranges of each hyperparameter are checked when the algorithm
        is built."""
        if not self._validate_config:
            return
        defaults = self._default_values()
        name = self._algo_name()
        for key, reason in {**UNSUPPORTED, **self._unsupported}.items():
            attribute = "callbacks_" + key if key.startswith("on_") else _ATTRIBUTES.get(key, key)
            value = getattr(self, attribute, None)
            if value is not None and value != defaults.get(attribute) and value != {}:
                raise NotImplementedError(f"{name}: {_method_of(key)}({key}={_short(value)}) asks for {reason}, "
                                          f"which mpirt.libs.rl does not support")
        for attribute, allowed in ALLOWED.items():
            value = getattr(self, attribute)
            if value not in allowed:
                setting = _DICT_KEYS.get(attribute, attribute).rstrip("_")
                raise NotImplementedError(f"{name}: {setting}={value!r} is not supported by mpirt.libs.rl; "
                                          f"supported: {', '.join(map(repr, allowed))}")
        model = self.model_config
        for key in UNSUPPORTED_MODEL_KEYS:
            if model.get(key):
                raise NotImplementedError(f"{name}: model option {key}={_short(model[key])} is not supported "
                                          f"by mpirt.libs.rl (it builds fully connected networks: "
                                          f"fcnet_hiddens, fcnet_activation)")
        if not isinstance(self.num_learners, int) or isinstance(self.num_learners, bool) or self.num_learners > 1:
            raise NotImplementedError(f"{name}: num_learners={self.num_learners!r}: mpirt.libs.rl learns in the "
                                      f"algorithm's own process (num_learners 0 or 1); data-parallel learners "
                                      f"are not supported")

    def build_algo(self, env=None, logger_creator=None, use_copy=True):
        """The algorithm this config describes (``algo_class``), with its rollout actors started."""
        config = self.copy(copy_frozen=False) if use_copy else self
        if env is not None:
            config.env = env
        if self.algo_class is None:
            raise ValueError(f"{type(self).__name__} has no algo_class: use PPOConfig(), DQNConfig(), "
                             f"A3CConfig() or ESConfig(), or AlgorithmConfig(algo_class=...)")
        algo_class = self.algo_class
        if isinstance(algo_class, str):
            from . import get_algorithm_class
            algo_class = get_algorithm_class(algo_class)
        return algo_class(config=config)

    def build(self, env=None, logger_creator=None, use_copy=True):
        return self.build_algo(env=env, logger_creator=logger_creator, use_copy=use_copy)

    def __repr__(self):
        changed = {k: v for k, v in self.to_dict().items()
                   if k in ("env", "lr", "train_batch_size", "num_env_runners") and v is not None}
        return f"{type(self).__name__}({', '.join(f'{k}={_short(v)}' for k, v in changed.items())})"


def _method_of(parameter):
    for method, params in SETTINGS.items():
        if parameter in params:
            return method
    return "config"


def _short(value):
    text = repr(value) if not callable(value) else getattr(value, "__name__", repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _copyable(value):
    """Deep-copy plain data only: classes, functions and env creators are shared, not copied."""
    return isinstance(value, (dict, list, tuple, set))


def _model_from_mpirt(model):
    """mpirt's dict API spells the network {"hiddens": [...], "activation": ...}; RLlib's fcnet_*."""
    model = dict(model)
    if "hiddens" in model:
        model["fcnet_hiddens"] = model.pop("hiddens")
    if "activation" in model:
        model["fcnet_activation"] = model.pop("activation")
    return model
