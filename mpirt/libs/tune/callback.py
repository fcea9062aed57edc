"""``tune.Callback``: hooks into the experiment loop (``RunConfig(callbacks=[...])``).

The loop on the driver calls each hook with ``iteration`` (its step count), ``trials`` (all
trials) and the trial concerned, as Ray does. ``on_trial_result`` may set
``result["should_checkpoint"] = True`` to have a class trainable checkpoint now.
"""


class Callback:
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        """Called once before the first trial starts."""

    def on_step_begin(self, iteration, trials, **info):
        pass

    def on_step_end(self, iteration, trials, **info):
        pass

    def on_trial_start(self, iteration, trials, trial, **info):
        pass

    def on_trial_restore(self, iteration, trials, trial, **info):
        pass

    def on_trial_save(self, iteration, trials, trial, **info):
        pass

    def on_trial_result(self, iteration, trials, trial, result, **info):
        pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        pass

    def on_trial_recover(self, iteration, trials, trial, **info):
        pass

    def on_trial_error(self, iteration, trials, trial, **info):
        pass

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        pass

    def on_experiment_end(self, trials, **info):
        pass

    def get_state(self):
        return None

    def set_state(self, state):
        pass


class CallbackList:
    """Calls one hook on every callback, in order."""

    def __init__(self, callbacks):
        callbacks = list(callbacks or [])
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be tune.Callback instances, got {callback!r}")
        self.callbacks = callbacks

    def __getattr__(self, hook):
        if not hook.startswith(("on_", "setup")):
            raise AttributeError(hook)

        def call(**info):
            for callback in self.callbacks:
                getattr(callback, hook)(**info)
        return call

    def __bool__(self):
        return bool(self.callbacks)
