"""pytest plugin: the real Asterisk (the "test" instance of the development PBX) and SIPp.

Loaded with `pytest_plugins = ["tests.pbx_fixtures"]` in tests/conftest.py.

The test instance runs from the same root as the developer's "dev" instance but on its
own ports and folders, so a developer's PBX is never touched: in CI the instance "test"
on AMI 15038 / SIP 15070, elsewhere one instance per pytest process ("test-<pid>", free
ports) so that parallel test runs on one machine do not stop each other's Asterisk.
It is started clean for each test session: empty generated files, empty astdb.
Without root, SIPp or a buildable PBX root the PBX tests are skipped, except in CI
(CI=true), where that is a failure.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sipprov import pbx as pbx_mod
from sipprov.apply import files as files_mod
from sipprov.apply import render as render_mod
from sipprov.apply.ami import AmiClient
from sipprov.config import Config

TEST_AMI_PORT = 15038
TEST_SIP_PORT = 15070
IN_CI = os.environ.get("CI") == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the PBX is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PBX unavailable: {reason}")


def write_generated(cfg: Config, name: str, text: str) -> Path:
    """Write one generated Asterisk file (pjsip.conf, extensions.conf, queues.conf) the
    way the applier does: atomically, mode 0640."""
    path = Path(cfg.generated_dir) / name
    pbx_mod.write_atomic(path, text, cfg.security.file_mode)
    return path


async def clean_asterisk(cfg: Config) -> None:
    """Leave the shared PBX as we found it: no generated objects, nothing to restore."""
    directory = Path(cfg.generated_dir)
    files_mod.write_changed(directory, {n: b"" for n in render_mod.FILES},
                            cfg.security.file_mode)
    for name in render_mod.FILES:
        (directory / (name + files_mod.PREV_SUFFIX)).unlink(missing_ok=True)
    if pbx_mod.status(cfg).running:
        client = AmiClient(cfg.asterisk)
        await client.connect()
        try:
            for module in render_mod.MODULE_FOR_FILE.values():
                await client.reload(module)
        finally:
            await client.close()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pbx_config() -> Config:
    """A Config for this test session's own PBX instance.

    CI uses the instance "test" on AMI 15038 / SIP 15070. Elsewhere each pytest process
    gets its own instance and free ports, so several test runs on one machine (two
    developers' sessions, a CI run beside a dev PBX) never stop each other's Asterisk.
    """
    cfg = Config()
    if IN_CI:
        instance, ami_port, sip_port = "test", TEST_AMI_PORT, TEST_SIP_PORT
    else:
        instance = f"test-{os.getpid()}"
        ami_port, sip_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    cfg.pbx = dataclasses.replace(cfg.pbx, instance=instance, sip_port=sip_port)
    cfg.asterisk = dataclasses.replace(
        cfg.asterisk, ami_port=ami_port, sip_server=f"127.0.0.1:{sip_port}",
        ami_timeout_s=15.0)
    return cfg


def _reap_stale_instances(cfg: Config) -> None:
    """Stop and delete the instances of test sessions that died without cleaning up
    (test-<pid> whose pytest process is gone), so they do not pile up."""
    base = cfg.pbx.instance_dir.parent
    if not base.is_dir():
        return
    for folder in base.glob("test-*"):
        pid = folder.name.removeprefix("test-")
        if not pid.isdigit() or int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        stale = copy.deepcopy(cfg)
        stale.pbx = dataclasses.replace(cfg.pbx, instance=folder.name)
        with contextlib.suppress(pbx_mod.PbxError, OSError):
            pbx_mod.stop(stale)
            shutil.rmtree(folder)


@pytest.fixture(scope="session")
def pbx(pbx_config: Config) -> Iterator[pbx_mod.PbxStatus]:
    """The running test instance (started clean once per session, stopped at the end)."""
    if os.geteuid() != 0:
        _unavailable("needs root (chroot, mount)")
    if not shutil.which("sipp"):
        _unavailable("sipp is not installed (apt-get install sip-tester)")
    _reap_stale_instances(pbx_config)
    try:
        pbx_mod.stop(pbx_config)
        # a clean instance: no generated config or registrations from earlier sessions
        for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
            path = Path(pbx_config.generated_dir) / name
            if path.exists():
                write_generated(pbx_config, name, "")
        astdb = pbx_config.pbx.instance_dir / "lib/astdb.sqlite3"
        astdb.unlink(missing_ok=True)
        pbx_mod.start(pbx_config)
    except pbx_mod.PbxError as exc:
        _unavailable(str(exc))
    try:
        yield pbx_mod.status(pbx_config)
    finally:
        pbx_mod.stop(pbx_config)
        if pbx_config.pbx.instance != "test":
            shutil.rmtree(pbx_config.pbx.instance_dir, ignore_errors=True)


@pytest.fixture
async def ami(pbx: pbx_mod.PbxStatus, pbx_config: Config) -> AsyncIterator[AmiClient]:
    """A logged-in AMI client on the test instance, closed after the test."""
    client = AmiClient(pbx_config.asterisk)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()
