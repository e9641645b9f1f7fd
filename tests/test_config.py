"""The configuration file: every key documented in config.example.toml, env overrides
for secrets, clear errors for wrong keys."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sipprov import config as config_mod

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def test_example_parses_and_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    cfg = config_mod.from_dict(data)
    cfg.validate()
    for section in dataclasses.fields(config_mod.Config):
        keys = {f.name for f in dataclasses.fields(getattr(cfg, section.name))}
        # A key is documented when it is set, or shown commented out, in its section.
        body = text.split(f"[{section.name}]", 1)[1].split("\n[", 1)[0]
        shown = set(re.findall(r"^#?\s*([a-z_]+)\s*=", body, re.M))
        assert keys <= shown, f"[{section.name}] undocumented: {keys - shown}"


def test_env_overrides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[asterisk]\nami_secret = "from-file"\n')
    cfg = config_mod.load(path, env={"SIPPROV_AMI_SECRET": "from-env", "SIPPROV_DSN": "postgresql://x/y"})
    assert cfg.asterisk.ami_secret == "from-env"
    assert cfg.database.dsn == "postgresql://x/y"


@pytest.mark.parametrize(
    "text, word",
    [
        ("[nope]\na = 1\n", "nope"),
        ("[http]\nprot = 1\n", "http.prot"),
        ("[http]\nport = \"80\"\n", "http.port"),
        ("[extensions]\nfirst = 500\nlast = 100\n", "extensions.first"),
        ("[security]\nfile_mode = \"rw\"\n", "security.file_mode"),
        ("[http\n", "c.toml"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, word: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(config_mod.ConfigError, match=re.escape(word)):
        config_mod.load(path, env={})


def test_file_mode_is_octal(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[security]\nfile_mode = "0600"\n')
    assert config_mod.load(path, env={}).security.file_mode == 0o600


def test_generated_dir_defaults_to_the_pbx_instance() -> None:
    cfg = config_mod.Config()
    assert cfg.generated_dir == cfg.pbx.instance_dir / "etc/asterisk/sipprov"


@pytest.mark.parametrize(
    "text, word",
    [
        ('[asterisk]\ncodecs = ["ulaw", "mp3"]\n', "asterisk.codecs"),
        ("[asterisk]\ncodecs = []\n", "asterisk.codecs"),
        ('[asterisk]\ninternal_context = "sipprov internal"\n', "asterisk.internal_context"),
        ('[asterisk]\noutbound_context = "general"\n', "asterisk.outbound_context"),
        ('[asterisk]\noutbound_context = "sipprov-internal"\n', "asterisk.outbound_context"),
        ('[asterisk]\ntransport = "udp]\\n[evil"\n', "asterisk.transport"),
        ('[asterisk]\nsip_realm = "realm;x"\n', "asterisk.sip_realm"),
        ('[asterisk]\nsip_realm = ""\n', "asterisk.sip_realm"),
        ('[asterisk]\nsip_server = "pbx.example.com:70000"\n', "asterisk.sip_server"),
        ('[asterisk]\nsip_server = "bad host"\n', "asterisk.sip_server"),
        ('[asterisk]\nami_host = "-x"\n', "asterisk.ami_host"),
        ("[asterisk]\nami_port = 0\n", "asterisk.ami_port"),
        ("[asterisk]\nami_timeout_s = 0\n", "asterisk.ami_timeout_s"),
        ('[asterisk]\nami_secret = "a\\nAction: Logoff"\n', "asterisk.ami_secret"),
        ('[asterisk]\nconfig_dir = "relative/dir"\n', "asterisk.config_dir"),
        ('[asterisk]\noutbound_dial = "PJSIP/${EXTEN}@trunk;x"\n', "asterisk.outbound_dial"),
        ("[asterisk]\nring_timeout_s = 0\n", "asterisk.ring_timeout_s"),
        ("[asterisk]\ndirect_media = 1\n", "asterisk.direct_media"),
        ("[asterisk]\nmax_contacts = true\n", "asterisk.max_contacts"),
        ('[pbx]\nroot = "srv/pbx"\n', "pbx.root"),
        ('[pbx]\ninstance = "../x"\n', "pbx.instance"),
        ("[database]\npool_min = 5\npool_max = 2\n", "database.pool_max"),
        ('[database]\ndsn = "mysql://x"\n', "database.dsn"),
        ('[security]\nfile_mode = "0644"\n', "security.file_mode"),
        ('[security]\nweb_hash_scheme = "md5"\n', "security.web_hash_scheme"),
        ("[smtp]\nport = 70000\n", "smtp.port"),
        ("http = 1\n", "[http]"),
    ],
)
def test_bad_asterisk_and_other_settings_name_the_key(tmp_path: Path, text: str, word: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(config_mod.ConfigError, match=re.escape(word)):
        config_mod.load(path, env={})


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[http]\nport = 0\n[asterisk]\ncodecs = ["mp3"]\nrealm = "x"\n')
    with pytest.raises(config_mod.ConfigError) as exc:
        config_mod.load(path, env={})
    for word in ("http.port", "asterisk.codecs", "asterisk.realm: unknown key"):
        assert word in str(exc.value)


def test_env_override_is_validated_too(tmp_path: Path) -> None:
    with pytest.raises(config_mod.ConfigError, match=re.escape("database.dsn")):
        config_mod.load(None, env={"SIPPROV_DSN": "not-a-url"})


def test_replace_validates() -> None:
    """`dataclasses.replace(cfg.section, ...)` (used by tests and `serve --port`) checks too."""
    cfg = config_mod.Config()
    assert dataclasses.replace(cfg.asterisk, codecs=["opus"]).codecs == ["opus"]
    with pytest.raises(ValueError, match="codecs"):
        dataclasses.replace(cfg.asterisk, codecs=["mp3"])


@pytest.mark.parametrize("command", [["serve"], ["render", "--out", "OUT"], ["agents", "list"]])
def test_commands_refuse_to_start_on_a_bad_key(tmp_path: Path, command: list[str]) -> None:
    """A real `sipprov` process: exit 2, the key named, no traceback, nothing started
    (no listener, no embedded PostgreSQL, nothing written)."""
    path = tmp_path / "c.toml"
    out = tmp_path / "out"
    path.write_text(
        f'[database]\nembedded_dir = "{tmp_path / "pg"}"\n'
        '[asterisk]\ncodecs = ["ulaw", "g729a"]\n'
    )
    argv = [a.replace("OUT", str(out)) for a in command]
    proc = subprocess.run(
        [sys.executable, "-m", "sipprov.cli.main", "-c", str(path), *argv],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "asterisk.codecs" in proc.stderr and "'g729a'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "pg").exists() and not out.exists()


def test_serve_refuses_a_bad_port_option(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nembedded_dir = "{tmp_path / "pg"}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "sipprov.cli.main", "-c", str(path), "serve", "--port", "70000"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "--port" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "pg").exists()


NODES = """
[asterisk]
ami_secret = "common"
ami_port = 5038
[[asterisk.nodes]]
name = "ast1"
site = "waw"
config_dir = "/srv/ast1"
[[asterisk.nodes]]
name = "ast-2"
ami_host = "10.0.0.2"
sip_server = "10.0.0.2:5060"
"""


def test_nodes_inherit_the_asterisk_keys_and_take_their_secret_from_env(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(NODES)
    cfg = config_mod.load(path, env={"SIPPROV_NODE_AST_2_AMI_SECRET": "from-env"})
    one, two = cfg.nodes
    assert (one.name, one.site, one.asterisk.ami_host, one.asterisk.ami_port,
            one.asterisk.ami_secret, one.config_dir) == (
        "ast1", "waw", "127.0.0.1", 5038, "common", Path("/srv/ast1"))
    assert (two.name, two.site, two.asterisk.ami_host, two.asterisk.ami_secret,
            two.asterisk.sip_server) == ("ast-2", None, "10.0.0.2", "from-env", "10.0.0.2:5060")
    # no config_dir: the development PBX instance named like the node
    assert two.config_dir == cfg.pbx.root / "srv/sipprov/ast-2/etc/asterisk/sipprov"
    assert config_mod.node_secret_env("ast-2") == "SIPPROV_NODE_AST_2_AMI_SECRET"


def test_without_nodes_the_asterisk_keys_are_one_node() -> None:
    cfg = config_mod.Config()
    (node,) = cfg.nodes
    assert node.name == config_mod.DEFAULT_NODE and node.site is None
    assert node.asterisk == cfg.asterisk and node.config_dir == cfg.generated_dir


@pytest.mark.parametrize(
    "nodes, word",
    [
        ('[[asterisk.nodes]]\nname = "a"\n[[asterisk.nodes]]\nname = "A"\nami_port = 1\n',
         "two nodes are named"),
        ('[[asterisk.nodes]]\nname = "a"\n[[asterisk.nodes]]\nname = "b"\n',
         "same AMI address 127.0.0.1:5038"),
        ('[[asterisk.nodes]]\nname = "a"\nconfig_dir = "/x"\n'
         '[[asterisk.nodes]]\nname = "b"\nami_port = 2\nconfig_dir = "/x"\n', "same config_dir"),
        ('[[asterisk.nodes]]\nname = "a"\nsite = "waw\\n[x]"\n', "asterisk.nodes: node[0] (a).site"),
        ('[[asterisk.nodes]]\nname = "a"\nsite = "a;b"\n', "node[0] (a).site"),
        ('[[asterisk.nodes]]\nname = "a b"\n', "node[0] (a b).name"),
        ('[[asterisk.nodes]]\nname = "a"\namiport = 1\n', "node[0] (a).amiport: unknown key"),
        ('[[asterisk.nodes]]\nname = "a"\nami_port = "1"\n', "node[0] (a).ami_port"),
        ('[[asterisk.nodes]]\nname = "a"\nami_secret = "x\\ny"\n', "node[0] (a).ami_secret"),
        ('[[asterisk.nodes]]\nname = "a"\nconfig_dir = "rel"\n', "node[0] (a).config_dir"),
        ('[[asterisk.nodes]]\nami_port = 1\n', "node[0].name"),
    ],
)
def test_bad_nodes_name_the_node_and_key(tmp_path: Path, nodes: str, word: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(nodes)
    with pytest.raises(config_mod.ConfigError, match=re.escape(word)):
        config_mod.load(path, env={})
