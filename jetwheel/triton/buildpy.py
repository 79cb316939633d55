"""Triton Inference Server's build.py, pointed at our index: the requirements secret, the
pytorch-triton and NVPL URLs, the command line, and a dry run of its vLLM install step.

Facts of r25.04 (server v2.57.0) this module relies on are recorded in the profile's [triton]
table. Everything here is derived from the profile, so a new Triton release is a new profile."""

from __future__ import annotations

import contextlib
import shlex
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from jetwheel.build.indexwheels import IndexWheels
from jetwheel.errors import CheckFailed, JetwheelError, PublishError
from jetwheel.index.client.client import IndexClient
from jetwheel.model.profile import Profile, TritonRelease
from jetwheel.model.recipe import Recipe, load_recipes
from jetwheel.runtime.image import runtime_policy
from jetwheel.triton.smoke import Outcome
from jetwheel.triton.smoke import run as run_smoke
from jetwheel.verify import FactCache, published_facts, verify_wheel
from jetwheel.verify.policy import apply
from jetwheel.verify.report import ERROR, INFO, Finding, Report
from jetwheel.verify.resolve import resolve_with_hashes
from jetwheel.wire import TRUSTED


def _release(profile: Profile) -> TritonRelease:
    if profile.triton is None:
        raise JetwheelError(f"profile {profile.name} has no [triton] table: it does not describe a Triton build")
    return profile.triton


def requirements(profile: Profile, client: IndexClient | None = None, require_hashes: bool = False) -> str:
    """The file for build.py's `req` secret: exact pins of what Triton's step installs from the index.

    With require_hashes, every package pip will install (dependencies too, as pip's hash-checking
    mode demands) is pinned with the sha256 the index serves, resolved for the target."""
    rel = _release(profile)
    pins = [f"{name}=={profile.pin(name)}" for name in rel.runtime]
    header = f"# {profile.name}: Triton {rel.release} vLLM backend, installed with --index-url from jetwheel\n"
    if not require_hashes:
        return header + "\n".join(pins) + "\n"
    if client is None:
        raise JetwheelError("--require-hashes needs --index-url: the hashes are the index's")
    target = profile.target()
    findings, resolved = resolve_with_hashes(pins, client.simple_url, target)
    if findings:
        raise JetwheelError(f"cannot pin hashes: {findings[0].detail}")
    untrusted = untrusted_pins(client, resolved)
    if untrusted:
        raise JetwheelError(
            f"refusing to pin what no builder or admin published on {client.url}: {'; '.join(untrusted)}"
        )
    lines = [f"{name}=={version} --hash=sha256:{sha}" for name, version, sha in sorted(resolved)]
    return header + "\n".join(lines) + "\n"


def untrusted_pins(client: IndexClient, resolved: list[tuple[str, str, str]]) -> list[str]:
    """The resolved pins whose file (by its sha256) no builder or admin published on the index: an
    upload user's `filelock-99.0`, or a file the index only redirected to. Each said in words."""
    out = []
    for name, version, sha in sorted(resolved):
        doc = client.project(name) or {}
        by = {
            str(f.get("hashes", {}).get("sha256", "")): str(f.get("_jetwheel-published-by", ""))
            for f in doc.get("files", [])
        }
        if by.get(sha) not in TRUSTED:
            who = f"published by {by[sha] or 'hand'}" if sha in by else "not published on this index"
            out.append(f"{name}=={version} (sha256 {sha[:12]}..., {who})")
    return out


def _trusted_file(client: IndexClient, filename: str, what: str) -> bool:
    """True when a builder or admin published the file; False when the index lacks it; CheckFailed
    when someone else did (a URL build.py fetches must never point at such a file)."""
    info = client.file_info(filename)
    if info is None:
        return False
    if info.get("published_by") not in TRUSTED:
        raise CheckFailed(
            f"{what} {filename} on {client.url} was published by {info.get('published_by') or 'hand'}, "
            "not a builder or admin: refusing to point build.py at it"
        )
    return True


def pytorch_triton_url(profile: Profile, client: IndexClient) -> str:
    """The stable URL of our pytorch-triton wheel. Triton's step runs `wget $PYTORCH_TRITON_URL` and
    installs /tmp/pytorch_triton-*.whl, so the URL must end in the wheel's own filename."""
    filename = client.find_wheel(f"pytorch-triton=={profile.pin('pytorch-triton')}", profile.target().tags())
    if filename is None:
        raise JetwheelError(
            f"no pytorch-triton {profile.pin('pytorch-triton')} wheel for "
            f"cp{profile.python_version.replace('.', '')} {profile.platform_tag} on {client.url}; "
            "build it first: inv build-wheel pytorch-triton"
        )
    _trusted_file(client, filename, "pytorch-triton wheel")
    return client.package_url(filename)


def nvpl_slim_url(profile: Profile, client: IndexClient) -> str:
    """The NVPL tarball's URL ("" where the profile needs none); JetwheelError when the file there
    is not a builder's or admin's."""
    rel = _release(profile)
    if not rel.nvpl_slim:
        return ""
    # not reachable from here (a command written before the index is up): there, only a builder or
    # admin may publish this name
    with contextlib.suppress(PublishError):
        _trusted_file(client, rel.nvpl_slim, "NVPL tarball")
    return client.package_url(rel.nvpl_slim)


# build.py options that take separate values: --image ROLE,IMAGE; --build-secret KEY VALUE
_OPTION_ARGS = {"--image": 1, "--build-secret": 2}


@dataclass(frozen=True)
class BuildCommand:
    argv: tuple[str, ...]
    requirements_file: str

    def render(self) -> str:
        lines, args = [], list(self.argv)
        head = " ".join(shlex.quote(a) for a in args[:2])
        i = 2
        while i < len(args):
            n = _OPTION_ARGS.get(args[i], 0) + 1  # an option and its values stay on one line
            lines.append(" ".join(shlex.quote(a) for a in args[i : i + n]))
            i += n
        return head + " \\\n    " + " \\\n    ".join(lines)


def build_command(
    profile: Profile,
    index_url: str,
    triton_url: str,
    nvpl_url: str,
    requirements_file: str = "jetwheel-requirements.txt",
) -> BuildCommand:
    """build.py's command line for a Jetson (igpu) image with the vLLM backend from our index."""
    rel = _release(profile)
    simple = index_url.rstrip("/") + ("/" if index_url.rstrip("/").endswith("/simple") else "/simple/")
    argv = ["python3", "build.py", "-v", f"--target-platform={rel.target_platform}"]
    argv += [f"--target-machine={rel.target_machine}"] if rel.target_machine else []
    argv += ["--enable-gpu"]
    # gpu-base is read only for CPU-only pytorch builds; named too, so no default py3-min image is left
    for role in ("base", "gpu-base") if rel.base_image else ():
        argv += ["--image", f"{role},{rel.base_image}"]
    argv += [f"--enable-{f}" for f in rel.features]
    argv += [f"--endpoint={e}" for e in rel.endpoints]
    argv += [f"--backend={b}:{rel.release}" for b in rel.backends]
    secrets = [
        ("req", requirements_file),
        ("vllm_index_url", simple),
        ("pytorch_triton_url", triton_url),
        ("build_public_vllm", "false"),
    ]
    if nvpl_url:
        secrets.insert(3, ("nvpl_slim_url", nvpl_url))
    for key, value in secrets:
        argv += ["--build-secret", key, value]
    return BuildCommand(tuple(argv), requirements_file)


def _reachable(url: str) -> str:
    """'' if the URL answers 200 to HEAD, else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30):
            return ""
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except OSError as e:
        return str(e)


def smoke_check(profile: Profile, image: str, gpu: bool = False, engine: str = "podman") -> list[Outcome]:
    """The smoke test inside the image build.py made, with the profile's module names."""
    rel = _release(profile)
    if rel.smoke is None:
        raise JetwheelError(f"profile {profile.name} has no [triton.smoke] table: it names no modules to try")
    return run_smoke(image, rel.smoke, gpu, engine)


def runtime_findings(
    profile: Profile, client: IndexClient, policy: Path, recipes: Mapping[str, Recipe], cache: FactCache
) -> tuple[list[Finding], list[str]]:
    """The published stack judged against the runtime: the image's policy plus the runtime tarball the
    index serves under the NVPL file name (what Triton's step unpacks into /usr/local/lib)."""
    rel = _release(profile)
    source = IndexWheels(client)
    with tempfile.TemporaryDirectory(prefix="jetwheel-runtime-check-") as tmp:
        trusted = bool(rel.nvpl_slim) and _trusted_file(client, rel.nvpl_slim, "NVPL tarball")
        tarball = client.download(rel.nvpl_slim, Path(tmp)) if trusted else None
        runtime = runtime_policy(policy, tarball)
        target = apply(profile.target(), runtime)
        found = [source.find(f"{n}=={profile.pin(n)}", target.tags()) for n in rel.runtime]
        # a wheel the index lacks is the requirements check's finding
        wheels = [published_facts(f, source, cache, Path(tmp)) for f in found if f is not None]
        reports = [verify_wheel(w, target, recipes.get(w.name), wheels, source, cache, Path(tmp)) for w in wheels]
    findings = [
        replace(f, check="runtime") for r in reports for f in r.findings if f.check == "abi" and f.severity == ERROR
    ]
    return findings, list(runtime.sources)


def check(
    profile: Profile,
    client: IndexClient,
    policy: Path | None = None,
    recipes: Mapping[str, Recipe] | None = None,
    cache: FactCache | None = None,
) -> Report:
    """Dry-run Triton's vLLM install step against the live index, before the hour-long image build;
    with a runtime policy, judge the published stack against that runtime plus the runtime tarball
    (`recipes`: the run's, default the bundled ones; `cache`: the run's fact cache)."""
    rel = _release(profile)
    target = profile.target()
    report = Report(
        wheel=f"Triton {rel.release} vLLM step from {client.simple_url}",
        checks=["requirements", "pytorch_triton_url", "nvpl_slim_url", *(("runtime",) if policy else ())],
    )
    if policy is not None:
        found, report.facts["runtime"] = runtime_findings(
            profile, client, policy, load_recipes() if recipes is None else recipes, cache or FactCache()
        )
        report.findings += found
    pins = [f"{name}=={profile.pin(name)}" for name in rel.runtime]
    findings, resolved = resolve_with_hashes(pins, client.simple_url, target)
    for f in findings:
        report.findings.append(Finding("requirements", ERROR, f.file, f.detail, f.fix))
    for pin in untrusted_pins(client, resolved):
        report.findings.append(
            Finding("requirements", ERROR, pin.split(" ")[0], f"no builder or admin published it: {pin}")
        )
    if resolved:
        report.facts["requirements"] = [f"{n}=={v}" for n, v, _ in sorted(resolved)]
    try:
        url = pytorch_triton_url(profile, client)
    except JetwheelError as e:
        report.findings.append(Finding("pytorch_triton_url", ERROR, "pytorch-triton", str(e)))
    else:
        why = _reachable(url)
        report.findings.append(
            Finding(
                "pytorch_triton_url", ERROR if why else INFO, url, f"not downloadable: {why}" if why else "downloadable"
            )
        )
    try:
        nvpl = nvpl_slim_url(profile, client)
    except JetwheelError as e:
        report.findings.append(Finding("nvpl_slim_url", ERROR, rel.nvpl_slim, str(e)))
        nvpl = ""
    if nvpl:  # Triton's step fetches it on aarch64; a profile names it only where it is needed
        why = _reachable(nvpl)
        report.findings.append(
            Finding(
                "nvpl_slim_url",
                ERROR if why else INFO,
                nvpl,
                f"not downloadable: {why}" if why else "downloadable",
                f"upload NVIDIA's NVPL slim tarball: inv index.upload-artifact {rel.nvpl_slim}" if why else "",
            )
        )
    return report
