"""Generators as Ray documents them: streaming (the default for generator functions and methods),
dynamic, and ``num_returns=N``; on real ranks (2 spawned workers)."""
import asyncio
import time

import numpy as np
import pytest

import mpirt
from mpirt import DynamicObjectRefGenerator, ObjectRefGenerator

pytestmark = pytest.mark.timeout(120)


@mpirt.remote
def squares(n, pause=0.0):
    for i in range(n):
        if pause:
            time.sleep(pause)
        yield i * i


@mpirt.remote
def fails_after(k):
    for i in range(k):
        yield i
    raise ValueError(f"failed after {k}")


@mpirt.remote(num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1

    def value(self):
        return self.n


@mpirt.remote
def counted(counter, n):
    for i in range(n):
        mpirt.get(counter.add.remote())
        yield i


def test_a_generator_streams_by_default_and_items_are_ready_as_they_are_yielded(rt):
    gen = squares.remote(3, pause=1.0)
    assert isinstance(gen, ObjectRefGenerator)
    first = next(gen)
    assert mpirt.get(first) == 0
    ready, _ = mpirt.wait([gen.completed()], timeout=0)
    assert ready == []          # the task still runs: the first item came before its end
    assert [mpirt.get(ref) for ref in gen] == [1, 4]
    assert mpirt.get(gen.completed()) is None and gen.is_finished()


def test_a_generator_consumed_twice_has_nothing_more(rt):
    gen = squares.remote(2)
    assert [mpirt.get(ref) for ref in gen] == [0, 1]
    assert list(gen) == []
    with pytest.raises(StopIteration):
        next(gen)


def test_an_exception_comes_at_its_position_then_the_generator_ends(rt):
    refs = list(fails_after.remote(2))
    assert len(refs) == 3
    assert mpirt.get(refs[:2]) == [0, 1]
    with pytest.raises(ValueError, match="failed after 2"):
        mpirt.get(refs[2])
    with pytest.raises(ValueError, match="failed after 0"):
        mpirt.get(fails_after.remote(0).completed())


def test_dynamic_returns_one_ref_to_the_refs(rt):
    value = mpirt.get(squares.options(num_returns="dynamic").remote(3))
    assert isinstance(value, DynamicObjectRefGenerator) and len(value) == 3
    assert mpirt.get(list(value)) == [0, 1, 4]
    failed = list(mpirt.get(fails_after.options(num_returns="dynamic").remote(1)))
    assert mpirt.get(failed[0]) == 0
    with pytest.raises(ValueError, match="failed after 1"):     # as in Ray: the error is the last ref
        mpirt.get(failed[1])


def test_num_returns_n_keeps_the_values_yielded_before_an_error(rt):
    refs = fails_after.options(num_returns=4).remote(2)
    assert mpirt.get(refs[:2]) == [0, 1]
    for ref in refs[2:]:
        with pytest.raises(ValueError, match="failed after 2"):
            mpirt.get(ref)
    assert mpirt.get(squares.options(num_returns=2).remote(2)) == [0, 1]


def test_wait_on_a_generator_means_its_next_item(rt):
    gen = squares.remote(2, pause=1.0)
    ready, unready = mpirt.wait([gen], timeout=0)
    assert ready == [] and unready == [gen]
    ready, _ = mpirt.wait([gen], timeout=30)
    assert ready == [gen] and mpirt.get(next(gen)) == 0


def test_async_for_over_a_generator(rt):
    async def collect():
        return [await ref async for ref in squares.remote(3)]

    assert asyncio.run(collect()) == [0, 1, 4]


def test_large_values_go_through_the_store(rt):
    @mpirt.remote
    def blocks():
        for i in range(3):
            yield np.full(1 << 18, i, dtype=np.float64)    # 2 MB each

    arrays = [mpirt.get(ref) for ref in blocks.remote()]
    assert [float(a[0]) for a in arrays] == [0.0, 1.0, 2.0]
    assert not arrays[0].flags.writeable     # a read-only view of the shared store, not a copy


def test_backpressure_holds_the_generator_back(rt):
    counter = Counter.remote()
    gen = counted.options(_generator_backpressure_num_objects=2).remote(counter, 10)
    next(gen)
    time.sleep(1.0)      # ample time for an unchecked producer to run ahead
    assert mpirt.get(counter.value.remote()) <= 3
    assert [mpirt.get(ref) for ref in gen] == list(range(1, 10))


def test_actor_generator_methods(rt):
    @mpirt.remote
    class Source:
        def items(self, n):
            yield from range(n)

        @mpirt.method(num_returns="dynamic")
        def batch(self, n):
            yield from range(n)

        def broken(self):
            yield "ok"
            raise KeyError("broken")

    @mpirt.remote
    class AsyncSource:
        async def items(self, n):
            for i in range(n):
                await asyncio.sleep(0.01)
                yield i * 10

    source = Source.remote()
    assert [mpirt.get(ref) for ref in source.items.remote(3)] == [0, 1, 2]
    assert mpirt.get(list(mpirt.get(source.batch.remote(2)))) == [0, 1]
    refs = list(source.broken.remote())
    assert mpirt.get(refs[0]) == "ok"
    with pytest.raises(KeyError):
        mpirt.get(refs[1])
    async_source = AsyncSource.remote()
    assert [mpirt.get(ref) for ref in async_source.items.remote(3)] == [0, 10, 20]
    assert [mpirt.get(r) for r in source.items.options(_generator_backpressure_num_objects=1).remote(3)] == [0, 1, 2]


def test_bad_uses_of_generators(rt):
    @mpirt.remote
    def plain(x=None):
        return x

    with pytest.raises(ValueError, match="num_returns='streaming' can only be used with generator functions"):
        plain.options(num_returns="streaming").remote()
    with pytest.raises(TypeError, match="cannot be passed to another task"):
        plain.remote(squares.remote(1))
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects=0 is not allowed"):
        squares.options(_generator_backpressure_num_objects=0)

    @mpirt.remote
    async def agen():
        yield 1

    with pytest.raises(ValueError, match="async generator"):
        agen.remote()
