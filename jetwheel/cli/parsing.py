"""Invoke's argv parser, as both doors (`jetwheel` and `inv` on tasks.py) need it.

Invoke 3.0.3's parser hands a task's unfilled positional argument the next token before it looks
for the core `--help` in it, then refuses the task for the positional arguments still missing
(pyinvoke/invoke#982): `index.export --help` exported into ./--help, `dist.server --help` was an
error. Here `--help` and `-h` after a task name ask for that task's help, after any of its options
and whatever it still lacks (an unknown option or a bad value before them is still that one-line
error), and a value that does not cast to its option's kind is a parse error
(one line), not a ValueError's traceback. `inv` builds Invoke's own Parser, which makes its machine
by the module's name: install() replaces that name, so both doors parse alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import invoke.parser.parser
from invoke.parser.argument import Argument
from invoke.parser.parser import ParseMachine
from invoke.tasks import Task

HELP = frozenset({"--help", "-h"})


class HelpFirstMachine(ParseMachine):
    """Invoke's ParseMachine, where a task's `--help` or `-h` comes before anything it still waits
    for (a flag's value, a positional argument) and ends the parse: the rest of argv is not read and
    nothing runs; Invoke's program prints the task's help as for `--help TASK`. A value its argument's
    kind refuses is a ParseError naming the task and the option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before Invoke's init, which already completes the initial context
        self.helping = False
        super().__init__(*args, **kwargs)

    def handle(self, token: str) -> None:
        task = self.context.name if self.context is not None else None
        if token in HELP and task and self.current_state == "context" and "--help" in self.initial.flags:
            # what `--help TASK` sets; Program.parse_cleanup prints it and exits 0
            self.initial.flags["--help"].value = task
            self.helping = True
            self.flag = None  # a flag that waited for its value waits no more
            self.see_unknown(token)  # the rest of argv is stored, never parsed
            return
        super().handle(token)

    def complete_context(self) -> None:
        if not self.helping:
            super().complete_context()
        elif self.context not in self.result:  # the help needs no positional argument
            self.result.append(self.context)

    def see_value(self, value: Any) -> None:
        self._cast(self.flag, value, super().see_value)

    def see_positional_arg(self, value: Any) -> None:
        self._cast(next(iter(self.context.missing_positional_args), None), value, super().see_positional_arg)

    def _cast(self, arg: Argument | None, value: Any, see: Callable[[Any], None]) -> None:
        try:
            see(value)
        except ValueError:
            if arg is None:
                raise
            where = f"{self.context.name!r}: " if self.context.name else ""
            # names[0] is the option's long name as users type it (memory-gb); name is its Python twin (memory_gb)
            self.error(f"{where}--{arg.names[0]} takes {arg.kind.__name__}, not {value!r}")


# Invoke's state machine library gives each class its own states, from the declarations in its body
HelpFirstMachine._class_states = ParseMachine._class_states
HelpFirstMachine._class_transitions = ParseMachine._class_transitions


class HelpTask(Task[Callable[..., Any]]):
    """A task whose options leave `-h` to the help: Invoke gives an option the first free letter of
    its name as its short flag, so index.serve's --host took -h. Use it (`@task(klass=HelpTask)`)
    for a task with an option that starts with h; tests/test_door.py checks that no task's option has
    -h."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        return super().arg_opts(name, default, taken_names | {"h"})


def install() -> None:
    """Make Invoke's Parser, whichever program builds it, parse with HelpFirstMachine."""
    invoke.parser.parser.ParseMachine = HelpFirstMachine  # type: ignore[misc]
