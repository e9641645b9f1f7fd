"""Mounts the web console on the API's aiohttp application: Jinja2 templates
(templates/web, autoescaped, jinja2.ext.i18n), static files, the console middleware
and the routes. Served at / on the API's port by `sipprov serve`."""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

from sipprov._resources import template_root
from sipprov.i18n.jinja import prepare_environment
from sipprov.web import imports
from sipprov.web.middleware import console_middleware
from sipprov.web.views import agents, asterisk, auth, directory, me, roles
from sipprov.web.views import imports as import_views

ROOT = template_root()  # the wheel's copy of templates/, or the checkout's
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "templates" / "web" / "static"

ROUTES: list[tuple[str, str, object]] = [
    ("GET", "/", auth.index),
    ("GET", "/login", auth.login_form),
    ("POST", "/login", auth.login),
    ("POST", "/logout", auth.logout),
    ("GET", "/password", auth.password_form),
    ("POST", "/password", auth.change_password),
    ("POST", "/language", auth.switch_language),
    ("GET", "/me", me.profile),
    ("POST", "/me/sip-password", me.rotate_sip),
    ("GET", "/provisioning/{token}", me.provisioning_xml),
    ("GET", "/agents", agents.list_agents),
    ("GET", "/agents/new", agents.new_form),
    ("POST", "/agents/new", agents.create),
    ("GET", "/agents/preview", agents.preview),
    ("GET", "/agents/{id}", agents.show),
    ("GET", "/agents/{id}/edit", agents.edit_form),
    ("POST", "/agents/{id}/edit", agents.update),
    ("GET", "/agents/{id}/delete", agents.delete_form),
    ("POST", "/agents/{id}/delete", agents.delete),
    ("POST", "/agents/{id}/active", agents.set_active),
    ("POST", "/agents/{id}/sip-password", agents.rotate_sip),
    ("POST", "/agents/{id}/password", agents.reset_web_password),
    ("GET", "/queues", directory.queues),
    ("POST", "/queues", directory.create_queue),
    ("GET", "/queues/{name}", directory.queue),
    ("POST", "/queues/{name}/members/{agent_id}", directory.set_penalty),
    ("GET", "/directory", directory.directory),
    ("GET", "/directory/roles", roles.list_roles),
    ("POST", "/directory/roles", roles.create),
    ("GET", "/directory/roles/{name}", roles.edit_form),
    ("POST", "/directory/roles/{name}", roles.update),
    ("POST", "/directory/roles/{name}/delete", roles.delete),
    ("POST", "/directory/{kind}", directory.create_entry),
    ("POST", "/directory/account_types/{name}/limit", directory.set_licence_limit),
    ("POST", "/directory/departments/{name}/delete", directory.delete_department),
    ("GET", "/import", import_views.upload_form),
    ("POST", "/import", import_views.upload),
    ("GET", "/import/{job}", import_views.job_page),
    ("POST", "/import/{job}/apply", import_views.apply),
    ("GET", "/import/{job}/progress", import_views.progress),
    ("GET", "/import/{job}/credentials.csv", import_views.credentials),
    ("GET", "/export.csv", import_views.export),
    ("GET", "/asterisk", asterisk.asterisk),
]


def setup(app: web.Application) -> None:
    """Add the console to `app` (before it starts)."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    # Each page passes its language's gettext and formatters (sipprov.i18n).
    prepare_environment(aiohttp_jinja2.get_env(app))
    app.middlewares.append(console_middleware)
    app[import_views.RUNS] = imports.Runs()

    async def remove_import_orphans(app: web.Application) -> None:
        imports.remove_orphans()

    app.on_startup.append(remove_import_orphans)

    async def stop_imports(app: web.Application) -> None:
        await app[import_views.RUNS].close()

    app.on_shutdown.append(stop_imports)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)  # type: ignore[arg-type]
    app.router.add_static("/static/", STATIC, append_version=True)
