"""One resolved context per run: the environment read once (the one module of jetwheel that reads
it), the recipes' root, the profile and the index client resolved once, and passed down as one
frozen value. A task makes its context at its start; nothing it calls reads the environment again."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from jetwheel.index.client.client import IndexClient
from jetwheel.model.profile import Profile, load_profile
from jetwheel.model.recipe import Recipe, load_recipes
from jetwheel.model.schema import recipes_root
from jetwheel.settings import Settings

if TYPE_CHECKING:
    from jetwheel.build.engine import Options


def settings() -> Settings:
    """This process's settings, from its environment and home directory."""
    return Settings.read(os.environ, Path.home())


@dataclass(frozen=True)
class Context:
    """A run's settings and what follows from them. The recipes, the profile and the index client are
    each resolved once, on first use (a task that never talks to the index makes no client)."""

    settings: Settings
    recipes_dir: str = ""  # --recipes; else $JETWHEEL_RECIPES, ./recipes, the bundled ones
    profile_name: str = ""  # --profile
    index: str = ""  # --index; else the index config's URL

    @cached_property
    def root(self) -> Path:
        """Where recipes and profiles are read from."""
        return recipes_root(self.recipes_dir or self.settings.recipes or "")

    @cached_property
    def recipes(self) -> dict[str, Recipe]:
        return load_recipes(self.root)

    @cached_property
    def profile(self) -> Profile:
        """The profile named by --profile (RecipeError naming it when there is none such)."""
        return load_profile(self.profile_name, self.root)

    @cached_property
    def client(self) -> IndexClient:
        """A client of the index (default: the index config's URL). It logs in as
        $JETWHEEL_INDEX_USER ($JETWHEEL_INDEX_PASSWORD); failing that, on the config's own index, as
        the user `inv demo` wrote."""
        from jetwheel.index.server.config import load_config

        cfg = load_config(self.config_path)
        user = password = ""
        if not self.settings.index_user:
            cred = cfg.home / ".state" / "credentials"
            if cred.is_file() and not self.index:
                user, _, password = cred.read_text().strip().partition(":")
        return IndexClient(
            self.index or cfg.url, user or self.settings.index_user, password or self.settings.index_password
        )

    @property
    def config_path(self) -> Path:
        """The index config of this host: ./index/config.toml in a checkout, else under $XDG_DATA_HOME."""
        from jetwheel.index.server.config import CONFIG, default_home

        return default_home(self.settings.share) / CONFIG

    def options(self, sources: str = "") -> Options:
        """The engine's options as the settings have them: work and logs under ~/.cache/jetwheel, the
        local source archives (`sources`: --sources; else $JETWHEEL_SOURCES), the fact cache."""
        from jetwheel.build.engine import Options

        s = self.settings
        local = Path(sources) if sources else s.sources
        return Options(work_root=s.cache / "work", log_root=s.cache / "logs", sources=local, facts=s.facts)


def context(recipes: str = "", profile: str = "", index: str = "") -> Context:
    """The context of a run: this process's settings, and the run's --recipes, --profile, --index."""
    return Context(settings(), recipes, profile, index)
