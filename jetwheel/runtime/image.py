"""The runtime the wheels meet: the policy of a runtime image, read from its files, and that
policy with the runtime tarball's libraries added (what Triton's vLLM step unpacks into it)."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from jetwheel.digest import sha256_file
from jetwheel.errors import JetwheelError
from jetwheel.runtime.imagefs import inspect, root_filesystem
from jetwheel.target import Target
from jetwheel.verify.loader import Loader
from jetwheel.verify.policy import Policy, apply, load, read_dirs, read_tree
from jetwheel.verify.wheel import Wheel

# the top directory build.py r25.04's vLLM step expects in the tarball at $NVPL_SLIM_URL: it copies
# its lib/* to /usr/local/lib and include/* to /usr/local/include (both must be non-empty)
TOP = "nvpl_slim_24.04"


def policy_from_image(image: str, engine: str = "podman", mount: bool = True) -> Policy:
    """What `image` provides: every library ld.so finds there, with its exports, and the image's digest."""
    info = inspect(engine, image)
    with root_filesystem(engine, image, mount) as root:
        return read_tree(root, info.machine, f"{image}@{info.digest}", info.env.get("LD_LIBRARY_PATH", ""))


def default_policy_path(image: str) -> Path:
    """Where `inv policy.from-image` writes by default: a file named after the image."""
    safe = image.rsplit("/", 1)[-1].replace(":", "-")
    return Path(f"{safe}.policy.json")


def tarball_policy(tarball: Path, machine: str) -> Policy:
    """The libraries the runtime tarball adds: what Triton's step copies from its lib/ to /usr/local/lib."""
    with tempfile.TemporaryDirectory(prefix="jetwheel-runtime-") as tmp:
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data")
        except (OSError, tarfile.TarError) as e:
            raise JetwheelError(f"{tarball}: not a readable tarball ({e})") from None
        lib = f"/{TOP}/lib"
        if not (Path(tmp) / TOP / "lib").is_dir():
            raise JetwheelError(f"{tarball}: no {TOP}/lib/ in it (build.py copies {TOP}/lib/* to /usr/local/lib)")
        return read_dirs(Path(tmp), [lib], machine, f"{tarball.name} sha256:{sha256_file(tarball)}")


def runtime_policy(policy: Path, tarball: Path | None = None) -> Policy:
    """The runtime the wheels meet: the image's policy, plus the runtime tarball's libraries."""
    image = load(policy)
    return image if tarball is None else image.merged(tarball_policy(tarball, image.machine))


def missing_from_runtime(wheels: list[Wheel], target: Target, runtime: Policy) -> list[str]:
    """The library names some ELF file of the wheels needs that neither the set nor the runtime has."""
    loader = Loader(wheels, apply(target, runtime))
    return sorted({n for w in wheels for e in w.elves for n in e.info.needed if loader.find(e, n).kind == "missing"})
