"""The door: Invoke tasks (also the `jetwheel` console script), one module per family of tasks.
Each task parses its arguments, calls one workflow function, prints what it returns, and turns typed
errors into one clean line and an exit code (`edge.clean_errors`). No decisions here."""

from __future__ import annotations

from invoke.collection import Collection
from invoke.exceptions import Exit, ParseError
from invoke.program import Program

from jetwheel import __version__
from jetwheel.cli.build import build_wheel, cache_ns, demo
from jetwheel.cli.dist import dist_ns
from jetwheel.cli.edge import clean_errors
from jetwheel.cli.images import aarch64_ns, cuda_ns, podman_ns, sysroot_ns
from jetwheel.cli.index import index_ns, status
from jetwheel.cli.sources import sources_ns
from jetwheel.cli.triton import policy_ns, runtime_ns, triton_ns
from jetwheel.cli.verify import doctor, verify
from jetwheel.errors import ExitCode

__all__ = ["Door", "clean_errors", "main", "namespace", "program"]

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
    the code of a failed check)."""

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise Exit(str(e), code=ExitCode.USAGE) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            raise Exit(str(e), code=ExitCode.USAGE) from None


def program() -> Program:
    return Door(namespace=namespace, version=__version__, name="jetwheel", binary="jetwheel")


def main() -> None:
    program().run()
