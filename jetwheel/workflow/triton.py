"""The `triton.*` tasks: the `req` secret, build.py's command, and the check of the index (and of the
image build.py made) before and after Triton's hour-long image build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import CheckFailed, JetwheelError, UsageError
from jetwheel.index.client.client import IndexClient
from jetwheel.triton.smoke import Outcome
from jetwheel.verify.report import Report
from jetwheel.workflow.context import context


def requirements(profile: str, require_hashes: bool, index_url: str) -> str:
    """The requirements file for build.py's `req` secret (hash-pinned from the index with `require_hashes`)."""
    from jetwheel.triton.buildpy import requirements as make

    ctx = context(profile=profile, index=index_url)
    return make(ctx.profile, ctx.client if index_url else None, require_hashes)


def triton_command(index_url: str, profile: str, requirements_file: str, pytorch_triton_url: str = "") -> str:
    """The build.py command, with the wheel URL looked up on the index when it is reachable."""
    from jetwheel.triton.buildpy import build_command, nvpl_slim_url
    from jetwheel.triton.buildpy import pytorch_triton_url as lookup

    ctx = context(profile=profile)
    prof = ctx.profile
    client = IndexClient(index_url)
    if not pytorch_triton_url:
        try:
            pytorch_triton_url = lookup(prof, client)
        except CheckFailed:
            raise  # the index has it, from someone who is not a builder: never point build.py at it
        except JetwheelError:
            # not reachable from here (the command is often written before the index is up):
            # the URL the index will serve once pytorch-triton is published
            from jetwheel.build.plan import wheel_name, wheel_version

            recipe = ctx.recipes["pytorch-triton"]
            pytorch_triton_url = client.package_url(wheel_name(recipe, prof, wheel_version(recipe, prof)))
    cmd = build_command(prof, index_url, pytorch_triton_url, nvpl_slim_url(prof, client), requirements_file)
    return cmd.render()


@dataclass(frozen=True)
class TritonCheck:
    """The index's report (with an index URL), the image's smoke-test outcomes (with an image)."""

    report: Report | None
    smoke: list[Outcome]

    @property
    def passed(self) -> bool:
        return (self.report is None or self.report.passed) and all(o.ok for o in self.smoke)


def check(index_url: str, profile: str, image: str, gpu: bool, engine: str, policy: str) -> TritonCheck:
    """Dry-run Triton's vLLM install step against the index, and/or smoke-test the image build.py made."""
    from jetwheel.triton.buildpy import check as check_index
    from jetwheel.triton.buildpy import smoke_check

    if not index_url and not image:
        raise UsageError("give --index-url (check the index) or --image (smoke-test an image)")
    from jetwheel.verify.factcache import FactCache

    ctx = context(profile=profile, index=index_url)
    prof = ctx.profile
    report = None
    if index_url:
        cache = FactCache(ctx.settings.facts)
        report = check_index(prof, ctx.client, Path(policy) if policy else None, ctx.recipes, cache)
    return TritonCheck(report, smoke_check(prof, image, gpu, engine) if image else [])
