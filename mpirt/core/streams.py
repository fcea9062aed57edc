"""Generator tasks and methods whose values are objects as soon as they are yielded (Ray's
``num_returns="streaming"``, and ``"dynamic"`` on top of it).

The call has one return object of its own, its *completion* (``ObjectRefGenerator.completed()``),
whose id names the stream. The rank running it encodes each yielded value as any result (large
ones into the store, read zero-copy) and sends it at once to the caller (``gen_item``), which
makes it an object of its own; the call's end (``done``, or ``actor_done``) sets the completion.
An exception raised by the generator is the call's failure: the caller's generator yields a ref
holding it at the position where it was raised, then stops. Items arrive in the order they were
yielded (messages between two ranks keep their order); a retried call yields again from the
start, and the items the caller has already are skipped.

``_generator_backpressure_num_objects=N`` pauses the generator once N of its items wait unread:
the caller acknowledges what it has read (``gen_ack``) and the producing thread waits for that.
"""
import asyncio
import inspect
import threading
from typing import Dict, Optional

from .codec import dumps, encode
from .object_ref import ObjectRef

# What an unread slot is set to when the stream ends without an item for it: it only wakes the
# reader, which then finds the stream over (it is never handed out).
_END = dumps(None)


class StreamState:
    """The caller's side of one stream."""

    __slots__ = ("stream_id", "refs", "received", "consumed", "done", "failed", "producer", "backpressure")

    def __init__(self, stream_id, backpressure):
        self.stream_id = stream_id
        self.refs = []             # ObjectRef per item slot: received items, then at most one awaited
        self.received = 0          # items that came
        self.consumed = 0          # items handed to the reader
        self.done = False          # the completion is set
        self.failed = False        # ... with the call's error
        self.producer = None       # the rank sending the items (for acknowledgements)
        self.backpressure = backpressure


class Streams:
    def __init__(self, rt):
        self.rt = rt
        self.open: Dict[int, StreamState] = {}
        self.completions: Dict[int, int] = {}    # completion object id -> its stream's id
        self._acked: Dict[int, int] = {}         # producer side: stream id -> items the reader has read
        self._room = threading.Condition(rt.lock)
        rt.register(gen_item=self._on_item, gen_ack=self._on_ack)

    # -- the caller's side --------------------------------------------------------------
    def open_stream(self, completion: ObjectRef, backpressure: int, stream_id: Optional[int] = None
                    ) -> "ObjectRefGenerator":
        """The generator of the call whose completion object is ``completion`` (caller thread, right after
        submitting it and before any item can be handled); its items name ``stream_id`` (a task's: the
        completion's id)."""
        stream_id = completion.id if stream_id is None else stream_id
        state = StreamState(stream_id, backpressure if backpressure and backpressure > 0 else 0)
        with self.rt.lock:
            self.open[stream_id] = state
            self.completions[completion.id] = stream_id
            self.rt.objects.on_ready(completion.id, self._on_completion)
        return ObjectRefGenerator(self, state, completion)

    def _slot(self, state, index):
        """The ObjectRef of item ``index``, made when it is first needed (runtime lock held)."""
        while len(state.refs) <= index:
            state.refs.append(self.rt.objects.owned_ref(self.rt.next_id()))
        return state.refs[index]

    def _on_item(self, source, stream_id, index, blob):
        state = self.open.get(stream_id)
        if state is None or state.done or index != state.received:   # a retry's repeat of what came
            return
        state.producer = source
        ref = self._slot(state, index)
        state.received += 1
        self.rt.objects.set_ready(ref.id, blob)

    def _on_completion(self, object_id, entry):
        state = self.open.pop(self.completions.pop(object_id, object_id), None)
        if state is None:
            return
        state.done = True
        state.failed = entry.is_error
        if len(state.refs) > state.received:      # a reader waits for an item that will not come
            self.rt.objects.set_ready(state.refs[state.received].id, _END)

    def dynamic(self, generator: "ObjectRefGenerator") -> ObjectRef:
        """``num_returns="dynamic"``: one ref, set once the call ended to a DynamicObjectRefGenerator of
        every item of ``generator``; a call that failed has a last item holding its error, as in Ray
        (runtime lock held)."""
        rt = self.rt
        object_id = rt.next_id()
        ref = rt.objects.owned_ref(object_id)

        def on_completion(completion_id, entry):
            refs = generator._state.refs[:generator._state.received]
            if entry.is_error:
                refs.append(generator.completed())
            rt.objects.set_ready(object_id, encode(DynamicObjectRefGenerator(refs), rt.store))

        rt.objects.on_ready(generator.completed().id, on_completion)
        return ref

    def acknowledge(self, state):
        if state.backpressure and state.producer is not None and not state.done:
            self.rt.send(state.producer, ("gen_ack", state.stream_id, state.consumed))

    # -- the producer's side --------------------------------------------------------------
    def produce(self, values, stream_id: int, backpressure: Optional[int], caller: int) -> None:
        """Send each value ``values`` (a generator) yields to ``caller`` as it is yielded (the running
        task's or call's thread); with ``backpressure`` > 0, wait while that many are unread."""
        rt = self.rt
        limit = backpressure if backpressure and backpressure > 0 else 0
        index = 0
        try:
            for value in values:
                rt.send(caller, ("gen_item", stream_id, index, encode(value, rt.store)))
                index += 1
                if limit:
                    with self._room:
                        while index - self._acked.get(stream_id, 0) >= limit:
                            self._room.wait(0.5)
        finally:
            with rt.lock:
                self._acked.pop(stream_id, None)

    async def produce_async(self, values, stream_id: int, backpressure: Optional[int], caller: int) -> None:
        """``produce`` in an async actor's event loop: ``values`` may be an async generator; a
        backpressured one waits without holding the loop."""
        if not inspect.isasyncgen(values):
            await asyncio.get_running_loop().run_in_executor(None, self.produce, values, stream_id, backpressure,
                                                             caller)
            return
        rt = self.rt
        limit = backpressure if backpressure and backpressure > 0 else 0
        index = 0
        try:
            async for value in values:
                rt.send(caller, ("gen_item", stream_id, index, encode(value, rt.store)))
                index += 1
                while limit and index - self._acked.get(stream_id, 0) >= limit:
                    await asyncio.sleep(0.005)
        finally:
            with rt.lock:
                self._acked.pop(stream_id, None)

    def _on_ack(self, source, stream_id, consumed):
        if consumed > self._acked.get(stream_id, 0):
            self._acked[stream_id] = consumed
            self._room.notify_all()


class ObjectRefGenerator:
    """What ``.remote()`` of a generator returns (``num_returns="streaming"``): an iterator of the
    ObjectRefs of the values the call yields, each usable as soon as it was yielded."""

    def __init__(self, streams, state, completion):
        self._streams = streams
        self._state = state
        self._completion = completion

    def __iter__(self):
        return self

    def __next__(self):
        return self._next_sync()

    def _next_sync(self, timeout_s: Optional[float] = None) -> ObjectRef:
        """The next item's ref; StopIteration at the end (the end of a failed call is preceded by a
        ref holding its error). With ``timeout_s``, GetTimeoutError-free: a ref that is not
        ready yet comes back after that long, as Ray's does (check with ``wait``)."""
        streams, state = self._streams, self._state
        rt = streams.rt
        while True:
            with rt.lock:
                index = state.consumed
                if index < state.received:
                    ref = state.refs[index]
                    state.refs[index] = None
                    state.consumed += 1
                    streams.acknowledge(state)
                    return ref
                if state.done:
                    if state.failed and index == state.received:
                        state.consumed += 1
                        return self._completion       # it holds the call's error
                    raise StopIteration
                waiting = streams._slot(state, index)
            ready = rt.waits.wait_entries([waiting], 1, timeout_s, False)[0].ready
            if not ready and timeout_s is not None:
                return waiting

    def waitable(self) -> ObjectRef:
        """A ref that is ready when ``next()`` would return at once (``wait()`` on a generator)."""
        streams, state = self._streams, self._state
        with streams.rt.lock:
            if state.consumed < state.received:
                return state.refs[state.consumed]
            if state.done:
                return self._completion
            return streams._slot(state, state.consumed)

    def __aiter__(self):
        return self

    async def __anext__(self):
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def _next_or_none(self):
        try:
            return self._next_sync()
        except StopIteration:   # it cannot cross a Future
            return None

    def completed(self) -> ObjectRef:
        """A ref that is ready when the call has ended; it holds the call's error if it failed."""
        return self._completion

    def is_finished(self) -> bool:
        """Whether every item has been read."""
        state = self._state
        return state.done and state.consumed >= state.received + (1 if state.failed else 0)

    def next_ready(self) -> bool:
        """Whether ``next()`` would return at once."""
        state = self._state
        return state.consumed < state.received or state.done

    def __repr__(self):
        return f"ObjectRefGenerator({self._completion.hex()})"

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be passed to another task or actor: iterate it where the "
                        "generator call was made, and pass the ObjectRefs it yields instead")


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` call: the ObjectRefs of what it yielded, in order."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


