"""``runtime_env``: the environment a task or actor runs in (Ray's ``ray.runtime_env``).

mpirt's workers are long-lived ranks on a shared file system, and tasks run as threads of them. Of Ray's
runtime environment mpirt therefore applies what needs nothing installed:

- ``env_vars``: set while the task runs and put back after. ``${NAME}`` in a value expands to the rank's
  variable, to "" when it has none, as in Ray.
- ``working_dir``: a directory, as a path (relative to the current directory where the option is given) or
  Ray's ``local:///absolute/path`` URI. The task runs with it as its current directory and first on
  ``sys.path`` and ``PYTHONPATH``. Ray uploads a job's directory and runs each worker in a copy of it; mpirt
  uses the directory in place, so what a task writes there lands in it, and ``excludes`` hides nothing. Ray
  takes only URIs for a task's or actor's own ``working_dir``; mpirt also takes paths (there is nothing to
  upload).
- ``config`` and ``excludes`` are accepted; there is nothing for them to do.

Keys that install software or change the interpreter (``pip``, ``conda``, ``uv``, ``py_modules``,
``py_executable``, ``container``, ``image_uri``, ``java_jars``, ``worker_process_setup_hook``, ``nsight``,
``rocprof_sys``) raise NotImplementedError naming the key, where the option is given. A key Ray does not
know raises ValueError (Ray would hand it to a runtime-env plugin of that name, and ignore it when none is
installed: here a misspelt ``env_var`` would otherwise vanish silently).

Levels, as in Ray: ``init(runtime_env=...)`` is the job's; it is put in place on every worker rank when the
rank starts (not on the driver). A task's or actor's own ``runtime_env`` is merged onto its parent's (the
job's, or that of the task submitting it): ``env_vars`` variable by variable, other keys replaced.
``.options(runtime_env=...)`` replaces the decorator's (``None`` keeps it).

One process, many tasks: see ``RankEnvironment``.
"""
import collections
import os
import re
import sys

from .call_context import running_actor_call, task_context

# Keys that need something installed or a different process: not done by mpirt.
UNSUPPORTED_KEYS = ("pip", "conda", "uv", "py_modules", "py_executable", "container", "image_uri", "java_jars",
                    "worker_process_setup_hook", "nsight", "_nsight", "rocprof_sys", "_rocprof_sys")
# Keys accepted with nothing to do: set-up settings, upload filters, Ray's own bookkeeping.
NO_OP_KEYS = ("config", "excludes", "_ray_release", "_ray_commit", "_inject_current_ray")
APPLIED_KEYS = ("env_vars", "working_dir")
KNOWN_KEYS = APPLIED_KEYS + NO_OP_KEYS + UNSUPPORTED_KEYS

_UNSET_REFERENCE = re.compile(r"\$\{[A-Za-z0-9_]+\}")


class RuntimeEnv(dict):
    """Ray's ``RuntimeEnv``: a dict of runtime environment fields, checked as it is made."""

    def __init__(self, *, py_modules=None, py_executable=None, working_dir=None, pip=None, conda=None,
                 container=None, env_vars=None, worker_process_setup_hook=None, nsight=None, rocprof_sys=None,
                 config=None, _validate=True, image_uri=None, uv=None, **kwargs):
        super().__init__()
        fields = dict(kwargs)
        for key, value in (("py_modules", py_modules), ("py_executable", py_executable),
                           ("working_dir", working_dir), ("pip", pip), ("uv", uv), ("conda", conda),
                           ("_nsight", nsight), ("_rocprof_sys", rocprof_sys), ("container", container),
                           ("env_vars", env_vars), ("config", config),
                           ("worker_process_setup_hook", worker_process_setup_hook), ("image_uri", image_uri)):
            if value is not None:
                fields[key] = value
        if _validate:
            resolve(fields)
        self.update(fields)


class RuntimeEnvConfig(dict):
    """Ray's ``RuntimeEnvConfig`` (set-up timeout, eager install, log files): accepted, nothing to set up."""

    def __init__(self, setup_timeout_seconds=600, eager_install=True, log_files=None):
        if isinstance(setup_timeout_seconds, bool) or not isinstance(setup_timeout_seconds, int):
            raise TypeError(f"setup_timeout_seconds must be of type int, got: {type(setup_timeout_seconds)}")
        if setup_timeout_seconds <= 0 and setup_timeout_seconds != -1:
            raise ValueError(f"setup_timeout_seconds must be greater than zero or equals to -1, "
                             f"got: {setup_timeout_seconds}")
        if not isinstance(eager_install, bool):
            raise TypeError(f"eager_install must be a boolean. got {type(eager_install)}")
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install,
                         log_files=list(log_files or []))


def resolve(runtime_env):
    """Check a ``runtime_env`` as Ray does and return what mpirt applies: ``{"env_vars": {...},
    "working_dir": "/absolute/path"}`` with empty parts left out, or None when nothing is left.

    TypeError for a wrong type, ValueError for a wrong value or a key Ray does not know,
    NotImplementedError for a key mpirt cannot apply."""
    if runtime_env is None:
        return None
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be dict or RuntimeEnv, but got: {type(runtime_env)}")
    for key, value in runtime_env.items():
        if key not in KNOWN_KEYS:
            raise ValueError(f"runtime_env has an unknown key {key!r} (runtime_env={runtime_env!r}); the keys are "
                             f"{list(KNOWN_KEYS)}")
        if key in UNSUPPORTED_KEYS and _given(value):
            raise NotImplementedError(
                f"runtime_env[{key!r}] is not supported by mpirt: it installs nothing and starts no processes "
                f"per environment (its workers are long-lived MPI ranks). Install what the job needs where it "
                f"runs (one environment for every rank); mpirt applies 'env_vars' and 'working_dir'.")
    resolved = {}
    env_vars = runtime_env.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, dict):
            raise TypeError(f"runtime_env['env_vars'] must be of type Dict[str, str], got {type(env_vars)}")
        for name, value in env_vars.items():
            if not isinstance(name, str):
                raise TypeError(f"runtime_env['env_vars'] must be of type Dict[str, str], but the key {name} "
                                f"is of type {type(name)}")
            if not isinstance(value, str):
                raise TypeError(f"runtime_env['env_vars'] must be of type Dict[str, str], but the value {value} "
                                f"is of type {type(value)}")
        if env_vars:
            resolved["env_vars"] = dict(env_vars)
    working_dir = runtime_env.get("working_dir")
    if working_dir is not None:
        resolved["working_dir"] = _directory(working_dir)
    excludes = runtime_env.get("excludes")
    if excludes is not None and (not isinstance(excludes, list) or not all(isinstance(e, str) for e in excludes)):
        raise TypeError(f"runtime_env['excludes'] must be of type List[str], got {excludes!r}")
    config = runtime_env.get("config")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"runtime_env['config'] must be of type dict or RuntimeEnvConfig, got {type(config)}")
    return resolved or None


def _given(value):
    """Ray drops a key whose value is None or empty."""
    return value is not None and not (isinstance(value, (str, list, tuple, dict)) and not value)


def _directory(working_dir):
    if not isinstance(working_dir, str):
        raise TypeError(f"`working_dir` must be a string, got {type(working_dir)}.")
    path = working_dir
    if "://" in working_dir:
        scheme, _, rest = working_dir.partition("://")
        if scheme != "local":
            raise NotImplementedError(
                f"runtime_env working_dir {working_dir!r}: mpirt does not download packages. Put the directory "
                f"on a file system every node sees and pass its path (or a local:// URI).")
        if not rest.startswith("/"):
            raise ValueError(f'Invalid "local://" runtime_env URI "{working_dir}": the path must be absolute. '
                             f"Write local:///path/on/every/node.")
        path = rest
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        if os.path.isfile(path):
            raise NotImplementedError(f"runtime_env working_dir {working_dir!r} is a file: mpirt uses a directory "
                                      f"in place and unpacks no archives. Unpack it on a shared file system and "
                                      f"pass the directory.")
        raise ValueError(f"working_dir {working_dir!r} must be an existing directory (mpirt uses it in place, on "
                         f"a file system every node sees); {path} is not one")
    return path


def merge(parent, child):
    """Ray's inheritance: ``child`` (resolved) onto ``parent`` (resolved): env_vars merged
    variable by variable (the child's win), other keys replaced."""
    if not parent:
        return child
    if not child:
        return parent
    merged = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        merged["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return merged


def freeze(resolved):
    """A resolved runtime_env as it travels with a task and keys ``RankEnvironment``:
    ``(working_dir or None, ((name, value), ...))``, variables in their given order (a value
    may refer to one set before it); None for nothing."""
    if not resolved:
        return None
    return (resolved.get("working_dir"), tuple((resolved.get("env_vars") or {}).items()))


def thaw(frozen):
    if frozen is None:
        return None
    working_dir, env_items = frozen
    resolved = {"env_vars": dict(env_items)} if env_items else {}
    if working_dir is not None:
        resolved["working_dir"] = working_dir
    return resolved


def for_submission(job_env, own):
    """The frozen environment a task or actor submitted now from this thread runs in: ``own``
    (resolved, or None) merged onto that of the task running here, if any, else onto the job's
    ``job_env``. None when it is just the job's (what every worker rank has in place)."""
    task = task_context.task
    if task is not None:
        parent = task.environment
    else:                      # from an actor's constructor or call: the actor's, as in Ray
        actor, _ = running_actor_call()
        parent = getattr(actor, "environment", None)
    if own is None:
        return parent
    frozen = freeze(merge(thaw(parent) if parent is not None else job_env, own))
    return None if frozen == freeze(job_env) else frozen


def expand(value):
    """``${NAME}`` and ``$NAME`` in an env_vars value, from this process's environment; a name
    that is not set gives "" (Ray's rule)."""
    return _UNSET_REFERENCE.sub("", os.path.expandvars(value))


class _Applied:
    """What putting one environment in place replaced, so it can be put back."""

    __slots__ = ("variables", "cwd", "path_entry")

    def __init__(self):
        self.variables = {}     # name -> previous value, or None if it was not set
        self.cwd = None
        self.path_entry = None


def _put_in_place(frozen, applied):
    working_dir, env_items = frozen
    environ = os.environ
    for name, value in env_items:
        applied.variables.setdefault(name, environ.get(name))
        environ[name] = expand(value)
    if working_dir is not None:
        applied.variables.setdefault("PYTHONPATH", environ.get("PYTHONPATH"))
        python_path = environ.get("PYTHONPATH")
        environ["PYTHONPATH"] = working_dir + (os.pathsep + python_path if python_path else "")
        applied.cwd = os.getcwd()
        os.chdir(working_dir)
        sys.path.insert(0, working_dir)
        applied.path_entry = working_dir


def _take_away(applied):
    environ = os.environ
    for name, value in applied.variables.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    if applied.path_entry is not None:
        try:
            sys.path.remove(applied.path_entry)
        except ValueError:   # the task took it out itself
            pass
    if applied.cwd is not None:
        try:
            os.chdir(applied.cwd)
        except OSError:
            pass


def apply_for_good(resolved):
    """Put a job's environment in place in this process (a worker rank starting)."""
    frozen = freeze(resolved)
    if frozen is not None:
        _put_in_place(frozen, _Applied())


class RankEnvironment:
    """The process-wide environment of one worker rank, shared by the tasks on its threads.

    Environment variables, the current directory and ``sys.path`` belong to the process, so two tasks with
    different environments cannot run on one rank at the same time. A task holds the rank's environment
    while it runs: tasks with the same environment (the usual case: none beyond the job's) hold it together,
    and a task with another waits until they are done; its environment is then put in place, and taken away
    again when the last task holding it is done. Arrivals with the held environment wait too while a task
    with another one waits, so neither side starves. A task blocked in ``get``/``wait`` lets go (as it gives
    its CPU back) and takes it again before it resumes, so a task waiting for a child with another
    environment that runs on the same rank cannot deadlock.

    Calls come with the runtime's lock held (``TaskExecutor``); waiting is on the runtime's condition, which
    releases that lock.

    Actor calls hold it the same way (``actor_host``); the calls of one async actor join the environment
    their actor already holds without waiting (``join``), since a waiting call would block the loop its
    other calls need to finish. Not covered: a module imported from one task's ``working_dir`` stays
    imported for the rest of the rank's life.
    """

    def __init__(self, cond):
        self.cond = cond
        self.current = None      # the frozen environment in place beyond the job's; None for the job's
        self.holders = 0
        self.waiting = collections.Counter()   # frozen environment -> tasks waiting to put it in place
        self._applied = None

    def enter(self, frozen):
        """Hold the rank's environment as ``frozen`` (None: the job's); waits while it is another."""
        if self.holders and (frozen != self.current or self._others_waiting(frozen)):
            self.waiting[frozen] += 1
            try:
                while self.holders and (frozen != self.current or self._others_waiting(frozen)):
                    self.cond.wait()
            finally:
                self.waiting[frozen] -= 1
                if not self.waiting[frozen]:
                    del self.waiting[frozen]
        if frozen != self.current:      # nobody holds it: switch
            self._switch(frozen)
        self.holders += 1

    def join(self):
        """Hold the environment in place once more, without waiting: for a caller that already
        holds it (another call of the same async actor)."""
        self.holders += 1

    def leave(self):
        self.holders -= 1
        if self.holders == 0:
            if self.current is not None:
                self._switch(None)
            if self.waiting:
                self.cond.notify_all()

    def _others_waiting(self, frozen):
        return any(key != frozen for key in self.waiting)

    def _switch(self, frozen):
        if self._applied is not None:
            _take_away(self._applied)
            self._applied = None
        if frozen is not None:
            self._applied = _Applied()
            _put_in_place(frozen, self._applied)
        self.current = frozen
