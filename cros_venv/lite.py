"""Stand-ins for `typing.NamedTuple`, `contextlib.contextmanager`, `contextlib.suppress`
and `signal` on the paths every create_venv call runs.

The originals are cheap themselves, but `typing` and `contextlib` import `collections`,
`functools`, `re` and `enum`: ~6 ms of a warm build's ~80 (python -X importtime, 3.11),
for three small features; `signal` is the builtin `_signal` with enums added (~4 ms).
These behave as the originals do for what this project uses (tests/test_lite.py runs the
same cases through both); mypy checks every use against the originals (the TYPE_CHECKING
branch), so annotations and errors are the standard ones.
Code off those paths (the maintainer tools) uses typing and contextlib directly.
"""

from __future__ import annotations

from _operator import itemgetter  # builtin: no import cost (operator.py is ~0.2 ms)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as signal
    from collections.abc import Iterator
    from contextlib import contextmanager as contextmanager
    from contextlib import suppress as suppress
    from typing import NamedTuple as NamedTuple
else:
    import _signal as signal  # (signal.py wraps these in enums: ~4 ms of imports)

    class suppress:
        """contextlib.suppress: swallow the given exceptions (and their subclasses)."""

        __slots__ = ("_exceptions",)

        def __init__(self, *exceptions):
            self._exceptions = exceptions

        def __enter__(self):
            return None

        def __exit__(self, typ, value, tb):
            return typ is not None and issubclass(typ, self._exceptions)

    class _GeneratorContextManager:
        """contextlib's generator-based context manager, for one `with` each."""

        __slots__ = ("gen",)

        def __init__(self, gen):
            self.gen = gen

        def __enter__(self):
            try:
                return next(self.gen)
            except StopIteration:
                raise RuntimeError("generator didn't yield") from None

        def __exit__(self, typ, value, tb):
            if typ is None:
                try:
                    next(self.gen)
                except StopIteration:
                    return False
                raise RuntimeError("generator didn't stop")
            if value is None:
                value = typ()
            try:
                self.gen.throw(value)
            except StopIteration as exc:
                return exc is not value  # the generator swallowed the exception
            except RuntimeError as exc:
                if exc is value or (isinstance(value, StopIteration) and exc.__cause__ is value):
                    value.__traceback__ = tb
                    return False
                raise
            except BaseException as exc:
                if exc is not value:
                    raise  # another exception, chained to this one by the generator
                exc.__traceback__ = tb
                return False
            raise RuntimeError("generator didn't stop after throw()")

    def contextmanager(func):
        """contextlib.contextmanager: a `with` over a generator that yields once."""

        def helper(*args, **kwargs):
            return _GeneratorContextManager(func(*args, **kwargs))

        helper.__name__, helper.__qualname__, helper.__doc__ = func.__name__, func.__qualname__, func.__doc__
        helper.__wrapped__ = func
        return helper

    class _RecordMeta(type):
        """Makes `class X(NamedTuple): a: int; b: str = ""` a tuple subclass, as typing does."""

        def __new__(mcs, name, bases, namespace):
            if namespace.get("_root", False):
                return super().__new__(mcs, name, bases, namespace)
            annotations = namespace.get("__annotations__")
            if annotations is None:  # annotations kept only as strings, in the class body
                raise TypeError(f"{name}: a module that uses lite.NamedTuple needs `from __future__ import "
                                "annotations`")
            fields = tuple(annotations)
            defaults = tuple(namespace[f] for f in fields if f in namespace)
            if any(f not in namespace for f in fields[len(fields) - len(defaults):]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            body = {k: v for k, v in namespace.items() if k not in fields and k != "__annotations__"}
            body.update(__slots__=(), _fields=fields, _field_defaults=dict(zip(fields[len(fields) - len(defaults):],
                                                                                 defaults)))
            body.update({f: property(itemgetter(i), doc=f"Alias for field number {i}") for i, f in enumerate(fields)})
            cls = super().__new__(mcs, name, bases, body)
            cls.__annotations__ = annotations
            return cls

    class _Record(tuple, metaclass=_RecordMeta):
        _root = True
        __slots__ = ()
        _fields: tuple[str, ...] = ()
        _field_defaults: dict[str, object] = {}  # noqa: RUF012 (set per class by _RecordMeta)

        def __new__(cls, *args, **kwargs):
            fields, n = cls._fields, len(args)
            if n > len(fields):
                raise TypeError(f"{cls.__name__} takes {len(fields)} arguments, got {n}")
            values = list(args)
            for f in fields[n:]:
                if f in kwargs:
                    values.append(kwargs.pop(f))
                elif f in cls._field_defaults:
                    values.append(cls._field_defaults[f])
                else:
                    raise TypeError(f"{cls.__name__} is missing the argument {f!r}")
            if kwargs:
                raise TypeError(f"{cls.__name__} got unexpected arguments {sorted(kwargs)}")
            return tuple.__new__(cls, values)

        @classmethod
        def _make(cls, iterable):
            return tuple.__new__(cls, iterable)

        def _replace(self, **kwargs):
            values = [kwargs.pop(f, v) for f, v in zip(self._fields, self)]
            if kwargs:
                raise ValueError(f"Got unexpected field names: {list(kwargs)!r}")
            return self._make(values)

        def _asdict(self):
            return dict(zip(self._fields, self))

        def __getnewargs__(self):
            return tuple(self)

        def __repr__(self):
            return f"{type(self).__name__}({', '.join(f'{f}={v!r}' for f, v in zip(self._fields, self))})"

    def NamedTuple(*args, **kwargs):
        raise TypeError("cros_venv.lite.NamedTuple only supports the class form")

    NamedTuple.__mro_entries__ = lambda bases: (_Record,)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait (blocked for this thread) until the block is done: for work
    that an interrupt must not cut in two (putting the old venv back, making or removing a
    temporary directory). A signal that came meanwhile is delivered when it ends.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
