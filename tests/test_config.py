"""The configuration file: every key documented in config.example.toml, env overrides
for secrets, clear errors for wrong keys."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from sipprov import config as config_mod

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


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
