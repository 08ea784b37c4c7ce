"""Where eedge's shipped data lives: the target YAMLs and the C firmware templates.

Both are edited at the top of the checkout (``targets/``, ``firmware_templates/``),
where an editable install reads them. A wheel cannot carry files outside the
package, so ``setup.py`` copies them into ``eedge/_data/`` at build time. Looking
in the package first and the checkout second lets one code path serve both.
"""

from __future__ import annotations

from pathlib import Path

from eedge.errors import TargetError

PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
CHECKOUT = Path(__file__).resolve().parents[1]


def data_dir(name: str) -> Path:
    """``name``'s directory: the wheel's copy, else the checkout's; never raises.

    The checkout counts only when it is one (a ``pyproject.toml`` beside the
    package), so an installed eedge never picks up an unrelated
    ``site-packages/targets``. When neither exists the package path is returned
    so that :func:`require_dir` can name where the data should have been.
    """
    packaged = PACKAGE_DATA / name
    if packaged.is_dir():
        return packaged
    checkout = CHECKOUT / name
    if checkout.is_dir() and (CHECKOUT / "pyproject.toml").is_file():
        return checkout
    return packaged


def require_dir(path: Path) -> Path:
    """``path`` if it exists; else an error saying the installation is incomplete."""
    if not path.is_dir():
        raise TargetError(f"{path} is missing: this eedge installation is incomplete; "
                          "reinstall it (pip install --force-reinstall eedge)")
    return path
