"""`policy.from-image` and `runtime.tarball`: the runtime the wheels meet, read from its image, and
the tarball of what it lacks."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from jetwheel.runtime.tarball import Member
from jetwheel.verify.policy import Policy
from jetwheel.workflow.context import context


@dataclass(frozen=True)
class PolicyFile:
    path: Path
    policy: Policy


def policy_from_image(image: str, engine: str, out: str) -> PolicyFile:
    """The libraries `image` provides, saved as a policy file (default: IMAGE-TAG.policy.json here)."""
    from jetwheel.runtime.image import default_policy_path
    from jetwheel.runtime.image import policy_from_image as read
    from jetwheel.verify.policy import save

    policy = read(image, engine)
    path = Path(out) if out else default_policy_path(image)
    save(policy, path)
    return PolicyFile(path, policy)


@dataclass(frozen=True)
class Tarball:
    path: Path
    sha256: str
    members: list[Member]
    url: str  # where it was uploaded; "" when it was not


def runtime_tarball(  # params: one per flag of `runtime.tarball`
    paths: list[str], builder: str, policy: str, profile: str, index: str, out: str, upload: bool, engine: str
) -> Tarball:
    """The libraries the stack's wheels need that the runtime lacks, from the builder image, with
    their licenses, as the tarball Triton's vLLM step unpacks; uploaded to the index with `upload`."""
    from jetwheel.runtime.tarball import make, stack_wheels
    from jetwheel.verify.factcache import FactCache

    ctx = context(profile=profile, index=index)
    prof = ctx.profile
    client = ctx.client if index or upload else None
    path = Path(out or (prof.triton.nvpl_slim if prof.triton and prof.triton.nvpl_slim else "runtime.tar"))
    with tempfile.TemporaryDirectory(prefix="jetwheel-tarball-") as tmp:
        wheels = stack_wheels(paths, prof, client, Path(tmp), FactCache(ctx.settings.facts))
        members, sha = make(builder, Path(policy), wheels, prof.target(), path, engine)
    url = ""
    if upload and client is not None:
        client.upload(path, artifact=True)
        url = client.package_url(path.name)
    return Tarball(path, sha, members, url)
