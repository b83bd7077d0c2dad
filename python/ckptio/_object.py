"""Values of a pickle's object that ckptio keeps as data: objects of classes
the pickle policy allows (Stub) and classes or functions used as values
(Global). Nothing is imported and nothing is called to make them."""
from typing import Any, Optional


def _argument_text(value: Any) -> str:
    # Short enough to read in a traceback or a REPL.
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class Stub:
    """An object of the class ``module.name`` as the pickle describes it:
    ``args`` the arguments of its constructor call (a tuple), ``state`` what
    ``__setstate__``/``__dict__`` would get (``{"lr": 0.1}`` for an
    ``argparse.Namespace``; None without BUILD), ``items`` the entries a dict
    subclass received (a dict, or None). TorchScript's ``__torch__`` modules
    are stubs whose state is their attributes. Equal when all five are."""

    __slots__ = ("module", "name", "args", "state", "items")

    def __init__(self, module: str, name: str, args: tuple = (), state: Any = None, items: Optional[dict] = None):
        self.module = module
        self.name = name
        self.args = args
        self.state = state
        self.items = items

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.name}"

    def _fields(self) -> tuple:
        return (self.module, self.name, self.args, self.state, self.items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stub):
            return NotImplemented
        return self._fields() == other._fields()

    # By class only: equal stubs hash alike, and a stub may be a dict key as its object was.
    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __repr__(self) -> str:
        parts = [self.qualified_name]
        parts += [_argument_text(argument) for argument in self.args]
        if isinstance(self.state, dict):
            parts += [f"{key}={_argument_text(value)}" if isinstance(key, str) else f"{key!r}={_argument_text(value)}"
                      for key, value in self.state.items()]
        elif self.state is not None:
            parts.append(f"state={_argument_text(self.state)}")
        if self.items:
            parts.append(f"items={_argument_text(self.items)}")
        return f"Stub({', '.join(parts)})"


class Global:
    """A class or function the pickle uses as a value (``torch.float32``,
    ``collections.OrderedDict``) without calling it: its module and name."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Global):
            return NotImplemented
        return (self.module, self.name) == (other.module, other.name)

    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __repr__(self) -> str:
        return f"Global({self.module}.{self.name})"
