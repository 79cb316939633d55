"""A run's settings: what the environment and the user's home say, read once at the workflow
(`workflow.context`) into this frozen value and passed down. Nothing below the workflow reads the
environment itself (tests/test_settings.py): a part that needs a setting takes it as an argument.

`read` is pure: it takes the environment and the home directory it is given, so a test builds the
settings of any environment without touching its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

OFF = ("0", "false", "no", "off")  # JETWHEEL_CCACHE values that turn the compiler cache off


@dataclass(frozen=True)
class Settings:
    """Every setting a run takes from its environment. A field's comment names its variable."""

    home: Path  # the user's home: the caches below default under ~/.cache/jetwheel
    recipes: Path | None = None  # JETWHEEL_RECIPES: recipes and profiles, before ./recipes and the bundled ones
    sources: Path | None = None  # JETWHEEL_SOURCES: local source archives, tried before the index
    facts_dir: Path | None = None  # JETWHEEL_FACTS: the fact cache (default ~/.cache/jetwheel/facts)
    ccache_dir: Path | None = None  # JETWHEEL_CCACHE_DIR (default ~/.cache/jetwheel/ccache)
    ccache_volume: str = "jetwheel-ccache"  # JETWHEEL_CCACHE_VOLUME: the docker runner's named volume
    ccache_size: str = "20G"  # JETWHEEL_CCACHE_SIZE
    ccache_enabled: bool = True  # JETWHEEL_CCACHE (0, false, no, off turn it off)
    engine: str = ""  # JETWHEEL_ENGINE: podman or docker (default: the one installed)
    ca_bundle: str = ""  # JETWHEEL_CA_BUNDLE: the CA a build container must trust (a TLS-inspecting proxy)
    index_user: str = ""  # JETWHEEL_INDEX_USER
    index_password: str = field(default="", repr=False)  # JETWHEEL_INDEX_PASSWORD
    data_home: Path | None = None  # XDG_DATA_HOME (default ~/.local/share): the index's default home
    # the environment as the run found it: what a child process (a local build, pip) starts from
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @classmethod
    def read(cls, environ: Mapping[str, str], home: Path) -> Settings:
        """The settings `environ` gives, with `home` for the defaults that live under it."""

        def path(name: str) -> Path | None:
            return Path(environ[name]) if environ.get(name) else None

        return cls(
            home=home,
            recipes=path("JETWHEEL_RECIPES"),
            sources=path("JETWHEEL_SOURCES"),
            facts_dir=path("JETWHEEL_FACTS"),
            ccache_dir=Path(environ["JETWHEEL_CCACHE_DIR"]) if "JETWHEEL_CCACHE_DIR" in environ else None,
            ccache_volume=environ.get("JETWHEEL_CCACHE_VOLUME", "jetwheel-ccache"),
            ccache_size=environ.get("JETWHEEL_CCACHE_SIZE", "20G"),
            ccache_enabled=environ.get("JETWHEEL_CCACHE", "1") not in OFF,
            engine=environ.get("JETWHEEL_ENGINE", ""),
            ca_bundle=environ.get("JETWHEEL_CA_BUNDLE", ""),
            index_user=environ.get("JETWHEEL_INDEX_USER", ""),
            index_password=environ.get("JETWHEEL_INDEX_PASSWORD", ""),
            data_home=path("XDG_DATA_HOME"),
            environ=MappingProxyType(dict(environ)),
        )

    @property
    def cache(self) -> Path:
        """~/.cache/jetwheel: work and log directories, downloaded sources, the default caches."""
        return self.home / ".cache" / "jetwheel"

    @property
    def facts(self) -> Path:
        return self.facts_dir or self.cache / "facts"

    @property
    def ccache(self) -> Path:
        return self.ccache_dir or self.cache / "ccache"

    @property
    def share(self) -> Path:
        return self.data_home or self.home / ".local" / "share"
