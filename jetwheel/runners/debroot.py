"""A Debian root filesystem for another architecture, made on this host without running a single
package's maintainer script: apt (this host's, with a private configuration and state) resolves
the closure of the packages asked for, `apt-get download` fetches them, and `dpkg-deb` unpacks them
into the tree. Under qemu the same root took over 30 minutes to `apt-get install` (xz and
byte-compiling run emulated); here every step runs natively.

What the skipped maintainer scripts would have done and a build needs is done here instead: the
users and groups (base-passwd's master files), the alternatives symlinks (read from the packages'
postinst), the CA bundle (ca-certificates' update-ca-certificates: without it pip in the root
cannot start), and a dpkg status file so `dpkg -l` and preflight see what is installed. The dynamic
linker's cache is left to the caller (the root's own ldconfig)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jetwheel.errors import RunnerError

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# merged /usr: the loaders' PT_INTERP paths (/lib/ld-linux-aarch64.so.1, /lib64/ld-linux-x86-64.so.2)
USR_MERGE = ("bin", "sbin", "lib", "lib64")


@dataclass(frozen=True)
class Deb:
    """One package version of one architecture, as apt resolved it."""

    name: str
    version: str
    arch: str  # arm64, amd64 or all

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.arch}={self.version}" if self.arch != "all" else f"{self.name}={self.version}"

    @property
    def filename(self) -> str:
        # apt-get download's name: the epoch's colon is written %3a
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass(frozen=True)
class Apt:
    """This host's apt pointed at one suite through its own state directory."""

    root: Path  # the private state: lists, config
    suite: str
    components: str  # e.g. "main contrib non-free"
    arches: tuple[str, ...]  # the first is the native one of `conf`

    def conf(self, native: str) -> Path:
        """The configuration file for `native` as apt's native architecture (the others foreign)."""
        others = "".join(f' "{a}";' for a in self.arches if a != native)
        path = self.root / f"apt-{native}.conf"
        path.write_text(
            f'Dir "{self.root}/";\n'
            f'Dir::State::status "{self.root}/status";\n'
            'Dir::Etc::TrustedParts "/etc/apt/trusted.gpg.d";\n'
            f'APT::Architecture "{native}";\n'
            f'APT::Architectures {{ "{native}";{others} }};\n'
            'APT::Install-Recommends "false";\nAPT::Sandbox::User "root";\nAcquire::Languages "none";\n'
        )
        return path

    def run(self, native: str, *args: str, cwd: Path | None = None) -> str:
        # `env` adds the config to the environment apt inherits (nothing below the workflow reads it)
        argv = ["env", f"APT_CONFIG={self.conf(native)}", "LC_ALL=C", "apt-get", *args]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            tail = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line.strip()][-4:]
            raise RunnerError(f"apt-get {args[0]} ({self.suite}, {native}) failed: {' | '.join(tail)}")
        return done.stdout

    def update(self) -> None:
        """Fetch the suite's package lists for every architecture."""
        for sub in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "var/lib/apt/lists/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        (self.root / "etc/apt/sources.list").write_text(
            f"deb [signed-by={KEYRING}] {MIRROR} {self.suite} {self.components}\n"
        )
        self.run(self.arches[0], "update", "-q")

    def packages_file(self, arch: str) -> list[Path]:
        return sorted((self.root / "var/lib/apt/lists").glob(f"*_dists_{self.suite}_*_binary-{arch}_Packages"))

    def essential(self, arch: str) -> list[str]:
        """The suite's Essential and Priority: required packages of `arch`: what debootstrap's
        minbase starts from, the tools any shell script in the root expects."""
        names: set[str] = set()
        for path in self.packages_file(arch):
            for stanza in path.read_text(errors="replace").split("\n\n"):
                if re.search(r"^(Essential: yes|Priority: required)$", stanza, re.M):
                    found = re.search(r"^Package: (\S+)$", stanza, re.M)
                    names.update([found.group(1)] if found else [])
        return sorted(names)

    def resolve(self, native: str, packages: Iterable[str]) -> list[Deb]:
        """The closure of `packages` (their Depends and Pre-Depends), from an empty system."""
        out = self.run(native, "install", "-s", "-q", *packages)
        return [Deb(*m) for m in re.findall(r"^Inst (\S+?)(?::\w+)? \((\S+) .*\[(\w+)\]\)", out, re.M)]

    def multiarch_same(self, names: Iterable[str], arch: str) -> set[str]:
        """Those of `names` whose `arch` build is Multi-Arch: same (installable beside another arch's)."""
        argv = ["env", f"APT_CONFIG={self.conf(arch)}", "apt-cache", "show", "--no-all-versions", *names]
        done = subprocess.run(argv, capture_output=True, text=True)
        same = set()
        for stanza in done.stdout.split("\n\n"):
            name = re.search(r"^Package: (\S+)$", stanza, re.M)
            if name and re.search(r"^Multi-Arch: same$", stanza, re.M):
                same.add(name.group(1))
        return same

    def download(self, debs: Iterable[Deb], into: Path) -> list[Path]:
        """The .deb files of `debs` in `into`, fetched where missing (a cache across builds)."""
        into.mkdir(parents=True, exist_ok=True)
        debs = list(debs)
        missing = [d.spec for d in debs if not (into / d.filename).is_file()]
        for start in range(0, len(missing), 200):  # command-line length
            self.run(self.arches[0], "download", "-q", *missing[start : start + 200], cwd=into)
        paths = [into / d.filename for d in debs]
        absent = [p.name for p in paths if not p.is_file()]
        if absent:
            raise RunnerError(f"apt-get download left out {', '.join(absent[:5])}")
        return paths


def merge(native: list[Deb], foreign: list[Deb], same: set[str]) -> list[Deb]:
    """The root's packages: `foreign` (the host's tools) and `native` (the target's files). Where
    both name one package, both are kept when it is Multi-Arch: same (its files are under each
    arch's triplet, e.g. libc6:amd64); otherwise the foreign one wins: e.g. on arm64 the native
    binutils is also called binutils-aarch64-linux-gnu, and its ld, run emulated, cannot load the
    x86_64 cross gcc's LTO plugin."""
    names = {d.name for d in foreign}
    files = {d.filename for d in foreign}
    kept = [d for d in native if (d.name not in names or d.name in same) and d.filename not in files]
    return kept + foreign


def unpack(debs: Iterable[Path], root: Path) -> None:
    """Unpack every package's files into `root`, whose merged-/usr symlinks are kept (GNU tar
    would replace a symlink to a directory by a directory)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "usr").mkdir(exist_ok=True)
    for top in USR_MERGE:
        (root / "usr" / top).mkdir(exist_ok=True)
        if not (root / top).is_symlink():
            (root / top).symlink_to(f"usr/{top}")
    for deb in debs:
        data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        done = subprocess.run(
            ["tar", "-x", "--keep-directory-symlink", "-C", str(root)], stdin=data.stdout, capture_output=True
        )
        data.wait()
        if done.returncode != 0 or data.returncode != 0:
            raise RunnerError(f"unpacking {deb.name} failed: {done.stderr.decode(errors='replace').strip()[-300:]}")


def ca_bundle(root: Path) -> None:
    """/etc/ssl/certs/ca-certificates.crt as update-ca-certificates writes it: every certificate
    ca-certificates ships (all are enabled by default), concatenated in name order."""
    certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    if certs:
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(b"".join(c.read_bytes() for c in certs))


def control(deb: Path, member: str) -> str:
    """One file of the package's control archive ("" if it has none)."""
    data = subprocess.Popen(["dpkg-deb", "--ctrl-tarfile", str(deb)], stdout=subprocess.PIPE)
    done = subprocess.run(["tar", "-xO", f"./{member}"], stdin=data.stdout, capture_output=True)
    data.wait()
    return done.stdout.decode(errors="replace") if done.returncode == 0 else ""


ALTERNATIVE = re.compile(r"update-alternatives\s+(?:--quiet\s+)?--install\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)")


def alternatives(debs: Iterable[Path], root: Path, triplet: str) -> dict[str, str]:
    """Make the symlinks the packages' postinst would have made with update-alternatives (the
    highest priority wins, as in auto mode); returns link -> target. e.g. libblas.so.3, which
    libtorch needs, exists only as such a link."""
    best: dict[str, tuple[int, str]] = {}
    for deb in debs:
        script = control(deb, "postinst").replace("\\\n", " ")  # continued lines joined
        script = script.replace("${DEB_HOST_MULTIARCH}", triplet).replace("$DEB_HOST_MULTIARCH", triplet)
        for link, _name, target, prio in ALTERNATIVE.findall(script):
            if "$" in link + target or not (root / target.lstrip("/")).exists():
                continue  # a path the script computes some other way, or a file this root lacks
            if link not in best or int(prio) > best[link][0]:
                best[link] = (int(prio), target)
    for link, (_, target) in best.items():
        path = root / link.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
    return {link: target for link, (_, target) in best.items()}


def users(root: Path) -> None:
    """/etc/passwd and /etc/group as base-passwd's preinst writes them on a new system."""
    master = root / "usr/share/base-passwd"
    for name in ("passwd", "group"):
        if not (root / "etc" / name).exists() and (master / f"{name}.master").is_file():
            shutil.copyfile(master / f"{name}.master", root / "etc" / name)


def status(debs: Iterable[Path], root: Path) -> None:
    """A dpkg status file naming every unpacked package as installed: `dpkg -l`, `dpkg-query` and
    preflight read it. (Without the packages' file lists: dpkg -L and removal do not work.)"""
    stanzas = []
    for deb in debs:
        fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True).stdout.strip()
        stanzas.append(re.sub(r"^(Package: .*)$", r"\1\nStatus: install ok installed", fields, count=1, flags=re.M))
    (root / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("\n\n".join(stanzas) + "\n")
