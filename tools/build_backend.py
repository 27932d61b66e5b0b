"""The package's build backend: setuptools' own (``setuptools.build_meta``), minus one notice.

The spec's layout installs three top-level folders as subpackages (``envs/`` as
``reciprocity.envs``, ``agents/`` as ``reciprocity.agents``, ``baselines/`` as
``reciprocity.baselines``; see ``[tool.setuptools.package-dir]`` in pyproject.toml). An editable
install of that layout cannot be a plain ``sys.path`` entry (the project root on the path would
make ``envs``, ``agents`` and ``baselines`` importable as top-level modules, names taken on
PyPI), so setuptools installs an import hook that maps exactly the listed packages to their
folders, and then always prints a notice ("Editable installation ... Please be careful with
folders in your working directory with the same name as your package as they may take
precedence during imports"). Here the only such folder is ``reciprocity/`` itself, the very
folder the hook maps, so the notice cannot apply: it is filtered out of ``build_editable``.
Every other hook, every other warning and what is built are setuptools' own: the wheel and the
editable install hold the same packages as before (``tests/test_packaging.py`` checks both).
"""

from __future__ import annotations

import warnings

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook, as setuptools defines it)
from setuptools.warnings import InformationOnly


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Editable installation",
                                category=InformationOnly)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
