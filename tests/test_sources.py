"""Sources for air-gapped builders: reproducible source archives, taken from a local directory, then
the index, then upstream, always checked against the recipe's sha256."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import Server
from invoke.program import Program
from shared_sources import SHARED

from jetwheel.cli import namespace
from jetwheel.errors import SourceError
from jetwheel.index.server.web import _source
from jetwheel.model.stepsource import StepSource
from jetwheel.sources.archives import ARCHIVE_MTIME, archive_name, pack
from jetwheel.sources.fetch import Lookup, Upstream, fetch_source, locate, make_archive

# shared/ lies beside the checkout (CI lays a copy of it beside its clone)
XGRAMMAR = SHARED / "xgrammar-0.1.16.tar.gz"
# shared/sources/README.md: mlc-ai/xgrammar v0.1.16 with its dlpack submodule
XGRAMMAR_SHA = "4742d1a7e5fbdb05baefa3353a901effab99c92b93dcf8745546733806908973"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always"]


def cli(*argv: str) -> int:
    """Run the CLI in-process as `jetwheel ARGV`; return its exit code."""
    try:
        Program(namespace=namespace, name="jetwheel", binary="jetwheel").run(["jetwheel", *argv])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A tagged git repository with a submodule and an executable, as a recipe's upstream (file://)."""
    # git refuses file:// submodules unless told (CVE-2022-39253); a real upstream is https://
    allow = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow", "GIT_CONFIG_VALUE_0": "always"}
    for k, v in allow.items():
        monkeypatch.setenv(k, v)
    sub = tmp_path / "dlpack"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    (sub / "include").mkdir()
    (sub / "include" / "dlpack.h").write_text("#define DLPACK 1\n")
    git(sub, "add", ".")
    git(sub, "commit", "-q", "-m", "dlpack")
    repo = tmp_path / "proj"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.cc").write_text("int a() { return 1; }\n")
    (repo / "build.sh").write_text("#!/bin/sh\n")
    (repo / "build.sh").chmod(0o755)
    git(repo, "submodule", "-q", "add", f"file://{sub}", "3rdparty/dlpack")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "tag", "v1.0")
    return {"url": f"file://{repo}", "ref": "v1.0", "commit": git(repo, "rev-parse", "HEAD"), "path": str(repo)}


def spec(upstream: dict[str, str], sha256: str = "", commit: str = "") -> StepSource:
    return StepSource("git", upstream["url"], ref=upstream["ref"], submodules=True, sha256=sha256, commit=commit)


def test_archive_is_reproducible_from_checkout_or_archive_with_submodules(
    upstream: dict[str, str], tmp_path: Path
) -> None:
    from_checkout = make_archive("proj", "1.0", spec(upstream), tmp_path / "a", Path(upstream["path"]))
    assert from_checkout.commit == upstream["commit"]
    git(Path(upstream["path"]), "submodule", "-q", "update", "--init")
    from_checkout = make_archive("proj", "1.0", spec(upstream), tmp_path / "a", Path(upstream["path"]))
    again = pack(from_checkout.path, "proj-1.0", tmp_path / "b" / "proj-1.0-src.tar.gz")
    assert from_checkout.path.name == archive_name("proj", "1.0") == "proj-1.0-src.tar.gz"
    assert again.sha256 == from_checkout.sha256 == hashlib.sha256(again.path.read_bytes()).hexdigest()
    assert again.path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header without a timestamp
    with tarfile.open(from_checkout.path) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert "proj-1.0/3rdparty/dlpack/include/dlpack.h" in names  # the submodule's files are in
    assert not any("/.git/" in n or n.endswith("/.git") for n in names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(ARCHIVE_MTIME, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["proj-1.0/build.sh"] == 0o775 and modes["proj-1.0/a.cc"] == 0o664


@pytest.mark.real
def test_shared_xgrammar_archive_repacks_to_the_same_bytes(tmp_path: Path) -> None:
    """The project's shared archive of xgrammar v0.1.16 is already in this format: packing it again
    gives its own sha256, which the recipe pins."""
    archive = pack(XGRAMMAR, "xgrammar-0.1.16", tmp_path / "xgrammar-0.1.16-src.tar.gz")
    assert archive.sha256 == XGRAMMAR_SHA == hashlib.sha256(XGRAMMAR.read_bytes()).hexdigest()


def test_a_source_is_taken_from_local_dir_then_index_then_upstream(
    upstream: dict[str, str], server: Server, tmp_path: Path
) -> None:
    made = make_archive("proj", "1.0", spec(upstream), tmp_path / "made", Path(upstream["path"]))
    pinned = spec(upstream, made.sha256, upstream["commit"])
    # upstream: cloned, packed, checked against both pins
    nowhere = Lookup(tmp_path / "empty", server.client())
    assert locate("proj", "1.0", pinned, nowhere) == Upstream(upstream["url"])
    got = fetch_source("proj", "1.0", pinned, tmp_path / "s1", nowhere)
    assert (got.origin, got.sha256, got.commit) == (upstream["url"], made.sha256, upstream["commit"])
    assert (tmp_path / "s1" / "a.cc").is_file()
    # the index, once the archive is uploaded; upstream gone
    server.client().upload(made.path, artifact=True)
    shutil.rmtree(upstream["path"])
    got = fetch_source("proj", "1.0", pinned, tmp_path / "s2", nowhere)
    assert got.origin == f"{server.url}/packages/proj-1.0-src.tar.gz"
    assert (found := locate("proj", "1.0", pinned, nowhere)) is not None and found.origin == got.origin
    assert (tmp_path / "s2" / "build.sh").read_text() == "#!/bin/sh\n"
    # a local source directory first
    local = Lookup(made.path.parent, server.client())
    got = fetch_source("proj", "1.0", pinned, tmp_path / "s3", local)
    assert (found := locate("proj", "1.0", pinned, local)) is not None and got.origin == str(made.path) == found.origin


def test_a_mismatching_archive_is_one_line_naming_file_and_both_hashes(
    upstream: dict[str, str], server: Server, tmp_path: Path
) -> None:
    made = make_archive("proj", "1.0", spec(upstream), tmp_path / "made", Path(upstream["path"]))
    wrong = "0" * 64
    with pytest.raises(SourceError) as e:
        fetch_source("proj", "1.0", spec(upstream, wrong), tmp_path / "s", Lookup(made.path.parent, server.client()))
    assert str(e.value) == f"proj: {made.path} has sha256 {made.sha256}, the recipe pins {wrong}"
    # an unpinned recipe never takes a file it cannot check: the error gives the sha256 to pin
    with pytest.raises(SourceError, match=f'pins no sha256 .* add source.sha256 = "{made.sha256}"'):
        fetch_source("proj", "1.0", spec(upstream), tmp_path / "s", Lookup(made.path.parent, server.client()))
    # a file on the index is checked the same way, and a pinned commit against the checkout
    server.client().upload(made.path, artifact=True)
    with pytest.raises(SourceError, match=f"has sha256 {made.sha256}, the recipe pins {wrong}"):
        fetch_source("proj", "1.0", spec(upstream, wrong), tmp_path / "s", Lookup(None, server.client()))
    with pytest.raises(SourceError, match=f"at commit {upstream['commit']}, the recipe pins {'1' * 40}"):
        make_archive("proj", "1.0", spec(upstream, commit="1" * 40), tmp_path / "x", Path(upstream["path"]))


@pytest.mark.real
def test_cli_fetch_from_a_local_archive_prints_the_pinned_sha_and_upload_serves_it(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = cli("sources.fetch", "xgrammar", "--profile", "host-cp312", "--from", str(XGRAMMAR), "--out", str(tmp_path))
    out = capsys.readouterr().out.split("\n")
    assert code == 0 and out[:2] == [str(tmp_path / "xgrammar-0.1.16-src.tar.gz"), f"sha256 {XGRAMMAR_SHA}"]
    monkeypatch.setenv("JETWHEEL_INDEX_USER", "ci")
    monkeypatch.setenv("JETWHEEL_INDEX_PASSWORD", "s3cret-pass")
    assert cli("sources.upload", str(tmp_path / "xgrammar-0.1.16-src.tar.gz"), "--index", server.url) == 0
    assert (server.root / "xgrammar-0.1.16-src.tar.gz").read_bytes() == XGRAMMAR.read_bytes()
    # a tree that is not the pinned one: one clean line with both hashes, exit 3 (a source error)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.cc").write_text("int x;\n")
    other = ("--from", str(tmp_path / "other"), "--out", str(tmp_path / "other-out"))
    code = cli("sources.fetch", "xgrammar", "--profile", "host-cp312", *other)
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1
    assert err.startswith("jetwheel: error: xgrammar: ") and f"the recipe pins {XGRAMMAR_SHA}" in err


def test_web_page_names_the_source_origin() -> None:
    src = {
        "kind": "git",
        "url": "https://github.com/mlc-ai/xgrammar",
        "ref": "v0.1.16",
        "commit": "989222175c2a30fb7987d8bcce35bec1bf6817f2",
        "sha256": XGRAMMAR_SHA,
        "from": "http://index.lan:8080/packages/xgrammar-0.1.16-src.tar.gz",
    }
    assert _source(src) == (
        "git https://github.com/mlc-ai/xgrammar @ v0.1.16 (commit 989222175c2a), sha256 4742d1a7e5fb…, "
        "taken from http://index.lan:8080/packages/xgrammar-0.1.16-src.tar.gz"
    )


def test_web_page_names_each_sub_source_and_where_it_came_from() -> None:
    sub = {
        "name": "flash-attention",
        "repo": "https://github.com/vllm-project/flash-attention",
        "commit": "9bfa9869829d8c593527eb34c5271d0090f7ccc9",
        "sha256": "864dd153d77e944c30825fec7805be948bcff87de78ca6cf7ac8332d1e1cea2d",
        "patches": ["flash-attention-sm87.patch"],
        "from": "/srv/sources/flash-attention-9bfa9869.tar.gz",
    }
    src = {
        "kind": "url",
        "url": "https://files.pythonhosted.org/vllm-0.8.1.tar.gz",
        "sha256": "03d641f10d01" + "0" * 52,
    }
    assert _source({**src, "subs": [sub]}) == (
        "https://files.pythonhosted.org/vllm-0.8.1.tar.gz, sha256 03d641f10d01…; with flash-attention "
        "https://github.com/vllm-project/flash-attention (commit 9bfa9869829d), sha256 864dd153d77e… patched "
        "(flash-attention-sm87.patch), taken from /srv/sources/flash-attention-9bfa9869.tar.gz"
    )
