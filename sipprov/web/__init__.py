"""The web console (issue 14): server-rendered pages for admins and agents on the API's
port, in English, Polish and Vietnamese. `setup(app)` mounts it (sipprov.web.app)."""

from sipprov.web.app import setup

__all__ = ["setup"]
