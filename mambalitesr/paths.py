"""Where the package writes its state: a user directory, never the installed package.

Glossary (code name -> meaning):
    user_dir   ``$MAMBALITESR_HOME``, else ``$XDG_CACHE_HOME/mambalitesr``, else ``~/.cache/mambalitesr``, plus
               the sub-folders asked for (``user_dir("study")``): study databases and their reports, caches,
               anything a command writes when the user names no path

Read-only data that ships with the package (weights, the web page) stays beside the code; whatever a command
writes goes here or to the path the user passes.
"""
from __future__ import annotations

import os
from pathlib import Path


def user_dir(*parts: str) -> Path:
    """The user's MambaLiteSR folder (or a sub-folder of it); not created here: writers create what they write."""
    home = os.environ.get("MAMBALITESR_HOME")
    if home:
        base = Path(home)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = Path(cache) / "mambalitesr"
    return base.joinpath(*parts)
