"""`sipprov serve`: the database, the applier and the HTTP API in one process.

Start order follows the data flow: database (migrated, extension pool in sync) ->
leadership (docs/scale-out.md: of several instances on one database, the one holding
the lease runs the applier and the phone tracker; the others serve the API only) ->
HTTP. SIGTERM stops accepting, drains the requests in flight, lets the applier finish
the apply in progress, steps down, then exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from sipprov.agents import extensions
from sipprov.apply.appliedwatch import AppliedWatcher
from sipprov.apply.applier import Applier
from sipprov.apply.backends.files import FilesBackend
from sipprov.apply.leadership import Leadership, instance_id
from sipprov.apply.phones import PhoneTracker
from sipprov.config import Config
from sipprov.context import Services
from sipprov.db import database
from sipprov.http.app import create_app

log = logging.getLogger(__name__)

# How long the applier's clean-up may take when stepping down (within the leadership's
# STEP_DOWN_S): the apply in flight is cancelled, not drained.
ABORT_S = 1.5


async def _start_applying(services: Services) -> None:
    """Elected: a fresh applier (it reads what the previous leader recorded and applies
    whatever is pending) and phone tracker."""
    cfg = services.cfg
    applier = Applier(services.pool, cfg)
    phones = PhoneTracker(cfg)
    for backend in applier.backends():
        if isinstance(backend, FilesBackend):  # RealtimeBackend is one too
            backend.on_registrations_ended = phones.forget
    if services.metrics is not None:
        services.metrics.watch_applier(applier)
    await applier.start()
    await phones.start()
    services.applier, services.phones = applier, phones


async def _stop_applying(services: Services, *, drain: bool) -> None:
    """Stop the applier and the phone tracker: drained at shutdown; on losing the lease,
    both are cancelled at once (their tasks end before any clean-up awaits)."""
    applier, phones = services.applier, services.phones
    services.applier = services.phones = None
    if drain:
        if phones is not None:
            await phones.stop()
        if applier is not None:
            await applier.stop()
        return
    stops: list[asyncio.Future[None]] = []
    if phones is not None:
        stops.append(asyncio.ensure_future(phones.stop()))
    if applier is not None:
        stops.append(asyncio.ensure_future(applier.abort(ABORT_S)))
    if stops:
        await asyncio.wait(stops, timeout=ABORT_S)


async def start_services(cfg: Config) -> Services:
    dsn, pool = await database.connect_and_upgrade(cfg.database)
    async with pool.acquire() as conn:
        await extensions.sync_pool(conn, cfg.extensions)
    services = Services(cfg=cfg, pool=pool, watcher=AppliedWatcher(pool),
                        instance=instance_id(cfg.applier.instance_name))

    async def elected() -> None:
        await _start_applying(services)

    async def deposed() -> None:
        await _stop_applying(services, drain=False)

    services.leadership = Leadership(dsn, cfg.applier, services.instance,
                                     on_elected=elected, on_deposed=deposed)
    await services.leadership.start()
    return services


async def stop_services(services: Services) -> None:
    await _stop_applying(services, drain=True)
    if services.leadership is not None:
        await services.leadership.stop()
    if services.watcher is not None:
        await services.watcher.close()
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
    log.info("sipprov listening on http://%s:%d (instance %s, %s)", cfg.http.host,
             cfg.http.port, services.instance,
             "applier leader" if services.is_leader else "follower")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining requests and the applier")
    await runner.cleanup()  # stops accepting, waits for in-flight requests
    await stop_services(services)
    log.info("stopped")
