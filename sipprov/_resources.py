"""Where the Asterisk templates are: in the installed package, or in the checkout.

The templates stay at the top of the repository (templates/, dialplan/) so operators
read and adapt them next to config.example.toml. A wheel carries copies inside the
package (pyproject.toml: hatch `force-include` maps them to sipprov/templates and
sipprov/dialplan); running from a checkout (or an editable install) finds the
originals one level above the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def template_root() -> Path:
    """The folder holding `templates/` and `dialplan/`."""
    package = Path(str(resources.files("sipprov")))
    if (package / "templates").is_dir() and (package / "dialplan").is_dir():
        return package  # installed from a wheel
    checkout = package.parent
    if (checkout / "templates").is_dir() and (checkout / "dialplan").is_dir():
        return checkout
    raise FileNotFoundError(
        f"sipprov's templates are neither in {package} (a wheel) nor in {checkout} (a checkout)")
