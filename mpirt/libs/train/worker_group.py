"""The training workers: one actor each, gang-reserved in a placement group, joined in one collective group.

``WorkerGroup`` reserves ``num_workers`` bundles at once, starts a ``TrainWorker`` in each, tells each where
it stands (world, local and node rank), declares them a collective group (``mpirt.util.collective``:
an MPI sub-communicator, no address, no port) and runs the trainer's backend set-up on each (the torch
process group, ``torch/process_group.py``). ``TrainWorker.start`` runs ``train_loop_per_worker`` on a
thread of its own; each ``train.report`` there waits until the driver side has collected that round from
every worker (``next_result``), so workers never run ahead of the run that may stop them.
"""
import os
import queue
import threading
import traceback
import uuid
from typing import Any, Callable, List, Optional

import mpirt
from mpirt.util import collective
from mpirt.util.placement_group import placement_group, remove_placement_group
from mpirt.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..tune.trainable import _actor_context, _enter_actor_context
from . import session as session_mod
from .config import ScalingConfig


class _Stopped(BaseException):
    """Raised in a worker's ``train.report`` when the run stops it (a BaseException: ``except Exception``
    in the user's loop does not swallow it)."""


class TrainWorker:
    """One training worker (an actor). Its methods run on the actor's thread; the user's function on
    ``self._thread``."""

    def __init__(self):
        self._results: "queue.Queue" = queue.Queue()
        self._resume = threading.Semaphore(0)
        self._stopped = False
        self._thread: Optional[threading.Thread] = None
        self._started_round = False
        self.context: Optional[session_mod.TrainContext] = None
        self.group_name = ""
        self._backend_teardown: Optional[Callable[[], None]] = None

    def where(self):
        """(node id, process id): the driver side computes local and node ranks from them."""
        return mpirt.get_runtime_context().get_node_id(), os.getpid()

    def setup(self, context: session_mod.TrainContext, group_name: str, backend_setup: Optional[Callable]) -> None:
        self.context = context
        self.group_name = group_name
        collective.get_group_handle(group_name)   # join the declared group: every worker does, at once
        os.environ.update(RANK=str(context.get_world_rank()), WORLD_SIZE=str(context.get_world_size()),
                          LOCAL_RANK=str(context.get_local_rank()),
                          LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
                          NODE_RANK=str(context.get_node_rank()))
        self._backend_teardown = backend_setup(context, group_name) if backend_setup is not None else None

    def start(self, function: Callable, config: Optional[dict], checkpoint) -> None:
        assert self.context is not None, "setup() runs first"
        actor_context = _actor_context()
        session = session_mod.Session(self.context, checkpoint, self._report)

        def run():
            session_mod.set_current(session)
            _enter_actor_context(actor_context)
            try:
                if config is None:
                    function()
                else:
                    function(config)
                self._results.put(("done", None, None))
            except _Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the driver as the run's error
                self._results.put(("error", error, traceback.format_exc()))

        self._thread = threading.Thread(target=run, name=f"mpirt-train-worker-{session.context.world_rank}",
                                        daemon=True)
        self._thread.start()

    def _report(self, metrics, checkpoint):
        if self._stopped:
            raise _Stopped()
        self._results.put(("report", metrics, checkpoint))
        self._resume.acquire()
        if self._stopped:
            raise _Stopped()

    def next_result(self):
        """Let the function go on from its last report, and return its next: ("report", metrics,
        checkpoint), ("done", None, None) or ("error", exception, traceback text)."""
        if self._started_round:
            self._resume.release()
        self._started_round = True
        return self._results.get()

    def shutdown(self) -> None:
        self._stopped = True
        self._resume.release()
        joined = collective.is_group_initialized(self.group_name)
        if joined:
            collective.get_group_handle(self.group_name).group.abandon("the training run is shutting down")
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._backend_teardown is not None:
            self._backend_teardown()
        if joined:
            collective.destroy_collective_group(self.group_name)


def _ranks_by_place(places):
    """(local rank, local world size, node rank) of each worker, from its (node id, pid)."""
    nodes: List[str] = []
    for node, _ in places:
        if node not in nodes:
            nodes.append(node)
    ranks = []
    for i, (node, _) in enumerate(places):
        same = [j for j, (other, _) in enumerate(places) if other == node]
        ranks.append((same.index(i), len(same), nodes.index(node)))
    return ranks


class WorkerGroup:
    """``num_workers`` TrainWorkers in one placement group and one collective group."""

    def __init__(self, scaling: ScalingConfig, run_names: dict, backend_setup: Optional[Callable] = None,
                 one_per_process: bool = False):
        bundle = scaling.worker_bundle
        self.group = placement_group([dict(bundle) for _ in range(scaling.num_workers)],
                                     strategy=scaling.placement_strategy)
        self.workers: List[Any] = []
        self.group_name = f"mpirt-train-{uuid.uuid4().hex[:12]}"
        try:
            mpirt.get(self.group.ready())
            custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
            # two threads: shutdown() must get in while next_result() waits for a stuck loop
            worker_class = mpirt.remote(max_concurrency=2)(TrainWorker)
            self.workers = [worker_class.options(
                num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), resources=custom or None,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=i),
            ).remote() for i in range(scaling.num_workers)]
            places = mpirt.get([w.where.remote() for w in self.workers])
            if one_per_process and len({pid for _, pid in places}) < len(places):
                raise RuntimeError(
                    f"ScalingConfig(num_workers={scaling.num_workers}): some workers share a process, and torch "
                    f"allows one process group per process. Give each worker a rank of its own: start the job "
                    f"with at least {scaling.num_workers} worker ranks offering {bundle} each (e.g. "
                    f"mpirt.init(num_cpus={scaling.num_workers}) or mpirun -n {scaling.num_workers + 2})")
            world = scaling.num_workers
            collective.create_collective_group(self.workers, world, list(range(world)), group_name=self.group_name)
            contexts = [session_mod.TrainContext(i, world, local, local_world, node, use_gpu=scaling.use_gpu,
                                                 **run_names)
                        for i, (local, local_world, node) in enumerate(_ranks_by_place(places))]
            mpirt.get([w.setup.remote(c, self.group_name, backend_setup) for w, c in zip(self.workers, contexts)])
        except BaseException:
            self.shutdown()
            raise

    def run(self, function: Callable, config: Optional[dict], checkpoint, on_report: Callable) -> None:
        """Run ``function`` on every worker until all return; each round of reports goes to ``on_report(metrics
        of worker 0, the first checkpoint)``. A worker's error is raised here (with its traceback)."""
        mpirt.get([w.start.remote(function, config, checkpoint) for w in self.workers])
        while True:
            results = self._next_round()
            kinds = {kind for kind, _, _ in results}
            if kinds == {"done"}:
                return
            if len(kinds) > 1:
                done = [rank for rank, (kind, _, _) in enumerate(results) if kind == "done"]
                raise RuntimeError(f"train workers {done} returned while the others reported: every worker must call "
                                   f"train.report the same number of times")
            checkpoints = [c for _, _, c in results if c is not None]
            on_report(results[0][1], checkpoints[0] if checkpoints else None)

    def _next_round(self):
        """Every worker's next result; a worker's error is raised as soon as it comes (the others may be
        waiting in a collective for it)."""
        refs = [w.next_result.remote() for w in self.workers]
        pending = list(refs)
        while pending:
            ready, pending = mpirt.wait(pending, num_returns=1)
            kind, payload, text = mpirt.get(ready[0])
            if kind == "error":
                raise WorkerError(refs.index(ready[0]), payload, text) from payload
        return mpirt.get(refs)

    def shutdown(self) -> None:
        if self.workers:
            try:
                mpirt.get([w.shutdown.remote() for w in self.workers], timeout=30)
            except Exception:  # noqa: BLE001 - the workers go anyway
                pass
            for worker in self.workers:
                mpirt.kill(worker)
            self.workers = []
        remove_placement_group(self.group)


class WorkerError(RuntimeError):
    """A training worker's function raised: ``rank`` and the traceback text from its worker."""

    def __init__(self, rank, error, text):
        super().__init__(f"train worker {rank} raised {type(error).__name__}: {error}\n{text}")
        self.rank = rank
        self.error = error

    def __reduce__(self):
        return WorkerError, (self.rank, self.error, "")
