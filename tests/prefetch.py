"""The images the selected tests will need (and the CUDA image's torch venv), made in one
background thread from the start of the session, while the first tests run: each is minutes of
single-threaded work (apt, dpkg-deb, xz, `podman import`) and downloads, which a 2-core CI machine
otherwise spends with its second core idle. The code that makes each image, venv and wheel takes
a file lock, so a test that needs one still being made waits for it and then finds it; a prefetch
that fails is left to that test to make again and report. Ordered by when pytest reaches them
(files run by name): the first file (test_aarch64) makes its own arm64 base image meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import cudatorch

from jetwheel.errors import JetwheelError
from jetwheel.runners.baseimage import ensure_base_image
from jetwheel.runners.emulation import ensure_emulation
from jetwheel.runners.sysrootimage import ensure_sysroot_image

# test file -> the image it needs that takes minutes to make, in the order pytest reaches them
MAKERS: tuple[tuple[frozenset[str], Callable[[], object]], ...] = (
    (frozenset({"test_aarch64_cuda"}), ensure_sysroot_image),
    (
        frozenset(
            {
                *("test_docker_runner", "test_doctor", "test_doctor_foreign", "test_door", "test_fleet"),
                *("test_hours", "test_images", "test_preflight", "test_runtime", "test_sccache", "test_triton"),
            }
        ),
        ensure_base_image,
    ),
    (frozenset({"test_vllm_cuda"}), cudatorch.torch_image),
)


def start(files: Iterable[str]) -> threading.Thread | None:
    """Begin making, in the background, the images the test files `files` (names without .py) need."""
    wanted = set(files)
    if "test_aarch64_cuda" in wanted:
        try:  # here, before the thread: two threads must not register the binfmt entry at once
            ensure_emulation("aarch64")
        except JetwheelError:
            wanted.discard("test_aarch64_cuda")  # its fixture says why
    makers = [make for needs, make in MAKERS if needs & wanted]
    if not makers:
        return None

    def run() -> None:
        for make in makers:
            try:
                make()
            except Exception:  # the test that needs it makes it again, and says why it cannot
                continue

    thread = threading.Thread(target=run, name="image-prefetch", daemon=True)
    thread.start()
    return thread
