"""The door: Invoke tasks (also the `jetwheel` console script), one module per family of tasks.
Each task parses its arguments, calls one workflow function, prints what it returns, and turns typed
errors into one clean line and an exit code (`edge.clean_errors`). No decisions here."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from invoke.collection import Collection
from invoke.exceptions import Exit, ParseError
from invoke.parser.context import ParserContext
from invoke.program import Program

from jetwheel import __version__
from jetwheel.cli.build import build_wheel, cache_ns, demo
from jetwheel.cli.dist import dist_ns
from jetwheel.cli.edge import clean_errors
from jetwheel.cli.flaglike import refuse, stray
from jetwheel.cli.images import aarch64_ns, cuda_ns, podman_ns, sysroot_ns
from jetwheel.cli.index import index_ns, status
from jetwheel.cli.parsing import install
from jetwheel.cli.sources import sources_ns
from jetwheel.cli.triton import policy_ns, runtime_ns, triton_ns
from jetwheel.cli.verify import doctor, verify
from jetwheel.errors import ExitCode

__all__ = ["Door", "clean_errors", "main", "namespace", "program"]

install()  # `TASK --help` for the door and for `inv` alike (cli.parsing)

namespace = Collection(
    build_wheel,
    verify,
    doctor,
    demo,
    status,
    index_ns,
    podman_ns,
    triton_ns,
    aarch64_ns,
    sources_ns,
    cache_ns,
    policy_ns,
    runtime_ns,
    cuda_ns,
    dist_ns,
    sysroot_ns,
)


class Door(Program):
    """Invoke's Program whose argument errors exit with ExitCode.USAGE (Invoke's own answer is 1,
    the code of a failed check), and where a positional value that looks like an option is refused
    before any task runs (flaglike). `TASK --help` is the parser's (cli.parsing)."""

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise Exit(str(e), code=ExitCode.USAGE) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            # a stray taken as a positional is often the cause: a value left over, or one missing
            self.answer_strays([e.context] if e.context else [])
            raise Exit(str(e), code=ExitCode.USAGE) from None
        if not self.args.help.value:  # help was asked for: the values given before it are not read
            self.answer_strays(self.tasks)

    def answer_strays(self, tasks: Iterable[ParserContext]) -> None:
        for parsed in tasks:
            value = stray(arg.value for arg in parsed.positional_args)
            if value is not None and parsed.name:
                refuse(parsed.name, value)


def program() -> Program:
    # A copy, as Invoke's loader copies tasks.py's: a Program spends its tasks' help texts (Invoke pops
    # them while it builds its parser), and a second program in one process printed none.
    return Door(namespace=copy.deepcopy(namespace), version=__version__, name="jetwheel", binary="jetwheel")


def main() -> None:
    program().run()
