"""`sipprov serve` refuses clearly when it cannot listen, and leaves nothing running."""

from __future__ import annotations

import socket
from pathlib import Path

from sipprov.cli.main import main

from .cli_helpers import toml_config


def test_port_taken_is_a_clear_error(db_dsn: str, tmp_path: Path, capsys) -> None:
    conf = tmp_path / "sipprov.toml"
    conf.write_text(toml_config(db_dsn, tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["-c", str(conf), "serve", "--port", str(port)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
