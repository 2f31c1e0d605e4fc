"""Frozen dataclasses that are quick to build.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`; measured
(CPython 3.11), that makes building one about 3x slower than a plain class, and a decision builds
its typed facts, its request and its answer on every call. `quick_init` gives such a class an
`__init__` with the same signature that fills the instance's `__dict__` in one step; the class
stays frozen (assigning a field still raises), and equality, hashing and `replace` are unchanged.
"""

import dataclasses
from typing import TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Replace a frozen dataclass's `__init__` (plain fields with plain defaults only)."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    if (
        not dataclasses.is_dataclass(cls)
        or not cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        or hasattr(cls, "__post_init__")
        or hasattr(cls, "__slots__")
        or any(not p.init or p.kw_only or p.default_factory is not dataclasses.MISSING for p in params)
    ):
        raise TypeError(f"{cls.__name__}: quick_init takes a frozen dataclass of plain fields")
    defaults = {f"_default_{p.name}": p.default for p in params if p.default is not dataclasses.MISSING}
    signature = ", ".join(p.name if p.default is dataclasses.MISSING else f"{p.name}=_default_{p.name}" for p in params)
    values = ", ".join(f"{p.name!r}: {p.name}" for p in params)
    namespace = dict(defaults)
    exec(f"def __init__(self, {signature}):\n    self.__dict__.update({{{values}}})\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
