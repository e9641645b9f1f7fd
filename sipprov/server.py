"""`sipprov serve`: the database, the applier and the HTTP API in one process.

Start order follows the data flow: database (migrated, extension pool in sync) ->
applier (applies whatever is pending) -> HTTP. SIGTERM stops accepting, drains the
requests in flight, lets the applier finish the apply in progress, then exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from sipprov.agents import extensions
from sipprov.apply.applier import Applier
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.phones import PhoneTracker
from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.http.app import create_app

log = logging.getLogger(__name__)


async def start_services(cfg: Config) -> Services:
    _, pool = await database.connect_and_upgrade(cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    applier = Applier(pool, cfg)
    phones = PhoneTracker(cfg)
    for backend in applier.backends():
        if isinstance(backend, FilesBackend):  # RealtimeBackend is one too
            backend.on_registrations_ended = phones.forget
    await applier.start()
    await phones.start()
    return Services(cfg=cfg, pool=pool, applier=applier, phones=phones)


async def stop_services(services: Services) -> None:
    if services.phones is not None:
        await services.phones.stop()
    if services.applier is not None:
        await services.applier.stop()
    await services.pool.close()


async def serve(cfg: Config) -> None:
    services = await start_services(cfg)
    app = create_app(services)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=30.0)
    await runner.setup()
    site = web.TCPSite(runner, cfg.http.host, cfg.http.port)
    try:
        await site.start()
    except OSError:  # e.g. the port is taken: stop cleanly, nothing pending is lost
        await runner.cleanup()
        await stop_services(services)
        raise
    log.info("sipprov listening on http://%s:%d", cfg.http.host, cfg.http.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining requests and the applier")
    await runner.cleanup()  # stops accepting, waits for in-flight requests
    await stop_services(services)
    log.info("stopped")
