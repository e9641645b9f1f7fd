"""Admin pages for CSV: import (upload, dry-run preview, apply with progress, the
generated passwords once) and export."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aiohttp import web

from sipprov.bulk import importer
from sipprov.web import imports, pages
from sipprov.web.pages import admin_only

JOBS = web.AppKey("console_import_jobs", imports.Jobs)


def _job(request: web.Request) -> imports.Job:
    job = request.app[JOBS].get(request.match_info["job"], pages.current_user(request).user_id)
    if job is None:
        raise web.HTTPNotFound()
    return job


@admin_only
async def upload_form(request: web.Request) -> web.StreamResponse:
    return pages.render(request, "web/import/upload.html", {"errors": {}})


@admin_only
async def upload(request: web.Request) -> web.StreamResponse:
    _ = pages.gettext(request)
    form = pages.form(request)
    upload = form.get("file")
    file = getattr(upload, "file", None)
    data = file.read() if file is not None else b""
    if not data.strip():
        return pages.render(request, "web/import/upload.html",
                            {"errors": {"file": _("Choose a CSV file.")}}, status=422)
    services = pages.services(request)
    job = request.app[JOBS].new(pages.current_user(request).user_id,
                                getattr(upload, "filename", "") or "upload.csv", data,
                                form.get("continue_on_error") is not None)
    await imports.dry_run(services.pool, services.cfg, job, pages.actor(request))
    if job.error is not None:
        request.app[JOBS].forget(job)
        return pages.render(request, "web/import/upload.html",
                            {"errors": {"file": job.error}}, status=422)
    return pages.redirect(f"/import/{job.id}")


@admin_only
async def job_page(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    return pages.render(request, "web/import/job.html", {"job": job})


@admin_only
async def apply(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    if job.task is None:
        services = pages.services(request)
        imports.start(services.pool, services.cfg, job, pages.actor(request))
    return pages.redirect(f"/import/{job.id}")


@admin_only
async def progress(request: web.Request) -> web.StreamResponse:
    return web.json_response(_job(request).progress())


@admin_only
async def credentials(request: web.Request) -> web.StreamResponse:
    job = _job(request)
    data = imports.take_credentials(job)
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": 'attachment; filename="credentials.csv"'})


@admin_only
async def export(request: web.Request) -> web.StreamResponse:
    with tempfile.TemporaryDirectory(prefix="sipprov-export-") as folder:
        path = Path(folder) / "agents.csv"
        await importer.export_file(pages.services(request).pool, path, progress=False)
        data = path.read_bytes()
    return web.Response(body=data, content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": 'attachment; filename="agents.csv"'})
