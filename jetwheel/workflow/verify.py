"""`verify`: wheels (files, or names on the index) checked against a profile's target."""

from __future__ import annotations

import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name

from jetwheel.build.indexwheels import IndexWheels
from jetwheel.errors import JetwheelError
from jetwheel.index.client.client import IndexClient
from jetwheel.model.profile import Profile
from jetwheel.target import Target
from jetwheel.verify import FactCache, Wheel, published_facts, read_wheels, resolve_report, retarget, verify_wheel
from jetwheel.verify.policy import apply as apply_policy
from jetwheel.verify.report import Report
from jetwheel.workflow.context import Context, context


def runtime_target(target: Target, policy: str, runtime_tarball: str) -> Target:
    """The target with the runtime read from its image (`inv policy.from-image`) in place of the
    profile's hand-written table, and the runtime tarball's libraries added to it."""
    from jetwheel.runtime.image import runtime_policy

    if not policy:
        if runtime_tarball:
            raise JetwheelError("--runtime-tarball needs --policy: the tarball completes a runtime read from its image")
        return target
    return apply_policy(target, runtime_policy(Path(policy), Path(runtime_tarball) if runtime_tarball else None))


def image_target(target: Target, profile: Profile, cache: Path) -> Target:
    """For a profile whose image provides projects (a sysroot's torch, not built): the target with
    that image's libraries read from its files, so verify binds the wheels' symbols against the very
    libtorch they were compiled against (Debian's libtorch_cuda.so.2.6 is no wheel on any index).
    Read once per image digest into `cache`; a target that already has a runtime is left alone."""
    if not profile.provided or target.system_provided:
        return target
    from jetwheel.runners.docker import find_engine
    from jetwheel.runtime.image import policy_from_image
    from jetwheel.runtime.imagefs import inspect
    from jetwheel.verify.policy import FORMAT as POLICY_FORMAT
    from jetwheel.verify.policy import load, save

    engine = find_engine()
    digest = inspect(engine, profile.image).digest
    path = cache / "policies" / f"{digest.replace(':', '-')}.v{POLICY_FORMAT}.json"  # an older format is read again
    if not path.is_file():
        save(policy_from_image(profile.image, engine), path)
    return apply_policy(target, load(path))


def verify_paths(  # params: one per flag of `verify`
    paths: list[str],
    profile: str,
    client: IndexClient | None,
    with_: list[str],
    arch: str,
    resolve: bool,
    platform: str = "",
    facts: str = "",
    policy: str = "",
    runtime_tarball: str = "",
    ctx: Context | None = None,
) -> list[Report]:
    """The reports of `paths` (files, or names on the index through `client`); `ctx`: the run's
    context (default: this process's, for `profile`)."""
    ctx = ctx or context(profile=profile)
    prof = ctx.profile
    if not paths and not resolve:
        raise JetwheelError("nothing to verify: give wheel files (or names on the index), or --resolve")
    recipes = ctx.recipes
    target = runtime_target(retarget(prof.target(arch), platform), policy, runtime_tarball)
    target = image_target(target, prof, ctx.settings.cache)
    source = IndexWheels(client) if client is not None else None
    cache = FactCache(Path(facts) if facts else ctx.settings.facts)
    with tempfile.TemporaryDirectory(prefix="jetwheel-verify-") as tmp:
        wanted: list[Path | Wheel] = []  # in the order given: files, or the facts of published wheels
        for p in paths:
            if Path(p).is_file():
                wanted.append(Path(p))
            elif source is not None:
                found = source.find(
                    f"{p}=={prof.pin(p)}" if canonicalize_name(p) in prof.versions else p, target.tags()
                )
                if found is None:
                    raise JetwheelError(f"{p}: no such file, and no wheel for it on {source.url}")
                # the index's facts for that very file, when it has them: no download
                wanted.append(published_facts(found, source, cache, Path(tmp)))
            else:
                raise JetwheelError(f"{p}: no such file (pass --index to verify a name on the index)")
        # every wheel is read once, all in one parallel pass: each is both checked and part of the
        # set the others resolve against
        files = [w for w in wanted if isinstance(w, Path)]
        read = iter(read_wheels([*files, *(Path(w) for w in with_)], cache))
        opened = [w if isinstance(w, Wheel) else next(read) for w in wanted]
        given = [*read, *opened]
        reports = [
            verify_wheel(w, target, recipes.get(w.name), given, source, cache, Path(tmp) / "deps") for w in opened
        ]
        if resolve and client is not None:
            reports.append(resolve_report(prof.top, client.simple_url, target))
    return reports


def verify_wheels(  # params: one per flag of `verify`
    paths: list[str],
    profile: str,
    index: str,
    with_: list[str],
    arch: str,
    resolve: bool,
    platform: str,
    facts: str,
    policy: str,
    runtime_tarball: str,
) -> list[Report]:
    """`verify`: as verify_paths, with the index at `index` (the config's for --resolve alone)."""
    ctx = context(profile=profile, index=index)
    client = ctx.client if index or resolve else None
    return verify_paths(paths, profile, client, with_, arch, resolve, platform, facts, policy, runtime_tarball, ctx)
