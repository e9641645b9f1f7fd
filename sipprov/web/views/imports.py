"""Admin pages for CSV: import (upload, dry-run preview, apply with progress, the
generated passwords once) and export.

Any instance behind the load balancer serves any step (sipprov/web/imports.py): the job
is a row; its key is the cookie KEY_COOKIE, scoped to the job's path, set on upload."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aiohttp import web

from sipprov.bulk import importer
from sipprov.errors import SipprovError
from sipprov.web import imports, pages, security
from sipprov.web.pages import admin_only

RUNS = web.AppKey("console_import_runs", imports.Runs)


def _key(request: web.Request) -> str | None:
    return request.cookies.get(imports.KEY_COOKIE)


async def _job(request: web.Request) -> imports.Job:
    try:
        job = await imports.load(pages.services(request).pool, request.match_info["job"],
                                 pages.current_user(request).user_id, _key(request))
    except imports.KeyMissing:
        job = None
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
    try:
        job_id, key = await imports.upload(
            services.pool, services.cfg, pages.current_user(request).user_id,
            getattr(upload, "filename", "") or "upload.csv", data,
            form.get("continue_on_error") is not None, pages.actor(request))
    except SipprovError as exc:
        return pages.render(request, "web/import/upload.html",
                            {"errors": {"file": exc.message}}, status=422)
    response = pages.redirect(f"/import/{job_id}")
    # Only this browser can open the job, on whichever instance; the path keeps the key
    # of one job away from the requests of another.
    response.set_cookie(imports.KEY_COOKIE, key, max_age=imports.MAX_AGE_S,
                        path=f"/import/{job_id}", httponly=True, samesite="Strict",
                        secure=security.is_tls(request))
    return response


@admin_only
async def job_page(request: web.Request) -> web.StreamResponse:
    job = await _job(request)
    gettext = pages.gettext(request)
    report = job.result or job.preview
    reasons = {r.line: imports.reason_text(r, gettext) for r in report.rows if r.action == "error"}
    return pages.render(request, "web/import/job.html",
                        {"job": job, "report": report, "reasons": reasons})


@admin_only
async def apply(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["job"]
    services = pages.services(request)
    try:
        await request.app[RUNS].start(services.pool, services.cfg, job_id,
                                      pages.current_user(request).user_id, _key(request),
                                      pages.actor(request), services.instance)
    except imports.KeyMissing:
        raise web.HTTPNotFound() from None
    return pages.redirect(f"/import/{job_id}")


@admin_only
async def progress(request: web.Request) -> web.StreamResponse:
    return web.json_response((await _job(request)).progress())


@admin_only
async def credentials(request: web.Request) -> web.StreamResponse:
    try:
        data = await imports.take_credentials(
            pages.services(request).pool, request.match_info["job"],
            pages.current_user(request).user_id, _key(request))
    except imports.KeyMissing:
        data = None
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
