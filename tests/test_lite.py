"""lite: the stand-ins for typing.NamedTuple, contextlib and signal behave as the originals,
for every case the project uses (each case runs through both)."""

from __future__ import annotations

import contextlib
import pickle
import signal
import typing
from typing import Any, Callable, Iterator

import pytest

from cros_venv import lite


class LitePoint(lite.NamedTuple):
    """A record."""

    x: str
    y: int = 2
    z: tuple[str, ...] = ()

    def twice(self) -> int:
        return self.y * 2

    @classmethod
    def make(cls, x: str) -> LitePoint:
        return cls(x, 5)


class TypingPoint(typing.NamedTuple):
    """A record."""

    x: str
    y: int = 2
    z: tuple[str, ...] = ()

    def twice(self) -> int:
        return self.y * 2

    @classmethod
    def make(cls, x: str) -> TypingPoint:
        return cls(x, 5)


RECORD_CASES: dict[str, Callable[[Any], object]] = {
    "positional": lambda cls: tuple(cls("a", 1, ("b",))),
    "defaults": lambda cls: tuple(cls("a")),
    "keywords": lambda cls: tuple(cls(x="a", z=("c",))),
    "fields": lambda cls: (cls("a").x, cls("a").y, cls("a").z, cls._fields),
    "defaults-map": lambda cls: cls._field_defaults,
    "method": lambda cls: cls("a", 4).twice(),
    "classmethod": lambda cls: tuple(cls.make("q")),
    "unpack": lambda cls: [*cls("a", 3)],
    "index": lambda cls: (cls("a", 3)[1], cls("a", 3)[-1], cls("a", 3)[:2]),
    "len": lambda cls: len(cls("a")),
    "equal-to-tuple": lambda cls: (cls("a", 2, ()) == ("a", 2, ()), hash(cls("a")) == hash(("a", 2, ()))),
    "replace": lambda cls: tuple(cls("a")._replace(y=9)),
    "asdict": lambda cls: cls("a", 1)._asdict(),
    "make": lambda cls: tuple(cls._make(["a", 1, ()])),
    "tuple-new": lambda cls: tuple.__new__(cls, ("r", 1, ())).y,
    "isinstance": lambda cls: (isinstance(cls("a"), tuple), isinstance(cls("a"), cls)),
    "pickle": lambda cls: tuple(pickle.loads(pickle.dumps(cls("a", 7)))),
    "repr": lambda cls: repr(cls("a", 1)).split("(", 1)[1],
    "doc": lambda cls: cls.__doc__,
    "immutable": lambda cls: _raises(lambda: setattr(cls("a"), "x", "b")),
    "too-many": lambda cls: _raises(lambda: cls("a", 1, (), 4)),
    "missing": lambda cls: _raises(lambda: cls()),
    "unknown-keyword": lambda cls: _raises(lambda: cls("a", w=1)),
    "replace-unknown": lambda cls: _raises(lambda: cls("a")._replace(w=1)),
}


def _raises(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as e:
        return type(e).__name__
    return "no error"


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_named_tuple_behaves_as_typings(case: str) -> None:
    assert RECORD_CASES[case](LitePoint) == RECORD_CASES[case](TypingPoint)


def test_named_tuple_needs_the_class_form() -> None:
    with pytest.raises(TypeError):
        lite.NamedTuple("P", [("x", int)])


def test_named_tuple_refuses_a_field_without_default_after_one_with() -> None:
    with pytest.raises(TypeError):
        class Bad(lite.NamedTuple):
            a: int = 1
            b: int  # type: ignore[misc]


def _cm_cases(cm: Callable[..., Any]) -> list[object]:
    """The same uses of a contextmanager-decorated generator, with what each gave."""
    log: list[object] = []

    @cm
    def managed(value: int) -> Iterator[int]:
        log.append("enter")
        try:
            yield value
        except KeyError:
            log.append("swallowed KeyError")
        finally:
            log.append("exit")

    @cm
    def reraise() -> Iterator[None]:
        try:
            yield
        except ValueError as e:
            raise RuntimeError("replaced") from e

    @cm
    def no_yield() -> Iterator[None]:
        if False:
            yield

    @cm
    def two_yields() -> Iterator[None]:
        yield
        yield

    with managed(1) as v:
        log.append(v)
    with managed(2):
        raise KeyError("k")  # swallowed by the generator
    log.append(_raises(lambda: _with(managed(3), OSError("o"))))
    log.append(_raises(lambda: _with(reraise(), ValueError("v"))))
    log.append(_raises(lambda: _with(no_yield(), None)))
    log.append(_raises(lambda: _with(two_yields(), None)))
    log.append(_raises(lambda: _with(managed(4), KeyboardInterrupt())))
    log.append(_raises(lambda: _with(managed(5), StopIteration())))
    log.append(managed.__name__)
    log.append(managed.__doc__)
    return log


def _with(manager: Any, error: BaseException | None) -> None:
    try:
        with manager:
            if error is not None:
                raise error
    except KeyboardInterrupt:
        raise RuntimeError("KeyboardInterrupt") from None


def test_contextmanager_behaves_as_contextlibs() -> None:
    assert _cm_cases(lite.contextmanager) == _cm_cases(contextlib.contextmanager)


def test_an_exception_keeps_its_traceback_through_contextmanager() -> None:
    @lite.contextmanager
    def passing() -> Iterator[None]:
        yield

    with pytest.raises(ValueError) as info, passing():
        raise ValueError("here")
    assert info.traceback[-1].name == "test_an_exception_keeps_its_traceback_through_contextmanager"


def test_suppress_behaves_as_contextlibs() -> None:
    for suppress in (lite.suppress, contextlib.suppress):
        with suppress(OSError):
            raise FileNotFoundError("a subclass is swallowed")
        with suppress(KeyError, OSError):
            raise KeyError("any of several")
        with pytest.raises(ValueError), suppress(OSError):
            raise ValueError("another passes")
        with suppress(OSError):
            pass


def test_signal_has_what_the_build_uses() -> None:
    for name in ("SIGINT", "SIGTERM", "SIGKILL", "SIG_BLOCK", "SIG_SETMASK", "SIG_DFL", "SIG_IGN"):
        assert getattr(lite.signal, name) == getattr(signal, name)
    old = lite.signal.pthread_sigmask(lite.signal.SIG_BLOCK, {lite.signal.SIGTERM})
    try:
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        lite.signal.pthread_sigmask(lite.signal.SIG_SETMASK, old)
