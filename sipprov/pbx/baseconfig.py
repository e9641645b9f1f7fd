"""The instance's own Asterisk configuration: asterisk.conf, modules.conf, manager.conf,
pjsip.conf, ... (rewritten on every start), and the empty generated files the
applier's includes point at."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sipprov.apply import realtimeconf
from sipprov.config import Config
from sipprov.pbx.errors import PbxError
from sipprov.pbx.paths import DIR_MODE, _etc, _root, write_atomic
from sipprov.pbx.realtime import write_realtime_config

# The modules an instance loads (modules.conf has autoload=no so it boots in about a
# second). Found by testing: this is what digest registration, calls between two
# endpoints, queues with static members, AMI and the security log need.
MODULES = (
    # sorcery back ends (pjsip objects from files, contacts in astdb)
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    # PJSIP core, registrar, digest auth, calls
    "res_pjproject.so",
    "res_pjsip.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_registrar.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_nat.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_logger.so",
    # Path headers from a SIP front (Kamailio; AORs with support_path=yes)
    "res_pjsip_path.so",
    "chan_pjsip.so",
    "func_pjsip_endpoint.so",
    # media
    "res_rtp_asterisk.so",
    "res_timing_timerfd.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "format_pcm.so",
    "format_wav.so",
    "format_gsm.so",
    "codec_gsm.so",
    "format_sln.so",
    # bridging (Dial and Queue connect two channels through a bridge)
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "bridge_holding.so",
    # dialplan and applications
    "pbx_config.so",
    "app_dial.so",
    "app_queue.so",
    "app_playback.so",
    "app_echo.so",
    "res_musiconhold.so",
    "func_callerid.so",
    "func_channel.so",
    "func_strings.so",
    "func_logic.so",
    # failed registrations land in the security log
    "res_security_log.so",
    # the realtime backend: agents read from PostgreSQL (sipprov/pbx/realtime.py)
    *realtimeconf.MODULES,
    # custom device states (the realtime backend's queue member state)
    "func_devstate.so",
)

# Asterisk core reads these at boot; missing ones only log warnings, but writing
# small versions keeps the log clean and the behaviour explicit.
_CORE_FILES = {
    "cdr.conf": "[general]\nenable = no\n",
    "cel.conf": "[general]\nenable = no\n",
    "features.conf": "[general]\n",
    "ccss.conf": "[general]\n",
    "udptl.conf": "[general]\n",
    "acl.conf": "",
    "dnsmgr.conf": "[general]\nenable = no\n",
    "http.conf": "[general]\nenabled = no\n",
    "stasis.conf": "",
    "pjproject.conf": "[startup]\nlog_level = 1\n",
    "rtp.conf": "[general]\nrtpstart = 20000\nrtpend = 30000\n",
    "indications.conf": (
        "[general]\ncountry = us\n\n"
        "[us]\ndescription = United States / North America\n"
        "ringcadence = 2000,4000\n"
        "dial = 350+440\n"
        "busy = 480+620/500,0/500\n"
        "ring = 440+480/2000,0/4000\n"
        "congestion = 480+620/250,0/250\n"
        "callwaiting = 440/300,0/10000\n"
        "dialrecall = !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440\n"
        "record = 1400/500,0/15000\n"
        "info = !950/330,!1400/330,!1800/330,0\n"
    ),
    "queuerules.conf": "",
}

# Characters that must never reach a config file through a configured value.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f;\[\]#\"\s]")


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def _checked(name: str, value: str) -> str:
    """A configured value that goes into a config file: reject what could become config."""
    if not value or _UNSAFE.search(value):
        raise PbxError(f"{name} may not be empty or contain whitespace, control "
                       f"characters, ';', '#', '\"', '[' or ']'")
    return value


def _module_dir(root: Path) -> str:
    for cand in sorted((root / "usr/lib").glob("*/asterisk/modules")):
        return "/" + str(cand.relative_to(root))
    if (root / "usr/lib/asterisk/modules").is_dir():
        return "/usr/lib/asterisk/modules"
    raise PbxError(f"no asterisk modules folder in {root}; rebuild the root")


def _generated_include_dir(cfg: Config) -> str:
    """How Asterisk (inside the chroot) names the generated-files folder."""
    gen = Path(cfg.generated_dir).absolute()
    if gen == _etc(cfg.pbx).absolute() / "sipprov":
        return "sipprov"
    root = _root(cfg.pbx)
    try:
        return "/" + str(gen.relative_to(root))
    except ValueError:
        raise PbxError(f"asterisk.config_dir {gen} is outside the PBX root {root}: the "
                       "chrooted Asterisk could not read it") from None


def write_base_config(cfg: Config) -> None:
    """Write the instance's own Asterisk files (rewritten every `up`: they are ours).

    The generated files in sipprov/ (cfg.generated_dir) are the applier's: they are
    created empty when missing and never overwritten here.
    """
    pbx, ast = cfg.pbx, cfg.asterisk
    root = _root(pbx)
    inst = pbx.instance_dir
    in_root = pbx.instance_dir_in_root
    user = _checked("asterisk.ami_user", ast.ami_user)
    secret = _checked("asterisk.ami_secret", ast.ami_secret)
    transport = _checked("asterisk.transport", ast.transport)
    realm = _checked("asterisk.sip_realm", ast.sip_realm)
    include = _generated_include_dir(cfg)
    module_dir = _module_dir(root)
    for sub in ("", "etc", "etc/asterisk", "run", "log", "spool", "lib", "lib/keys",
                "cache", "spool/outgoing", "spool/tmp"):
        _mkdir(inst / sub)
    etc = _etc(pbx)

    write_atomic(etc / "asterisk.conf", (
        "; Written by sipprov for the development PBX instance "
        f"'{pbx.instance}'; rewritten on every start.\n"
        "[directories]\n"
        f"astetcdir => {in_root}/etc/asterisk\n"
        f"astmoddir => {module_dir}\n"
        f"astvarlibdir => {in_root}/lib\n"
        f"astdbdir => {in_root}/lib\n"
        f"astkeydir => {in_root}/lib/keys\n"
        "astdatadir => /usr/share/asterisk\n"
        "astagidir => /usr/share/asterisk/agi-bin\n"
        f"astspooldir => {in_root}/spool\n"
        f"astrundir => {in_root}/run\n"
        f"astlogdir => {in_root}/log\n"
        f"astcachedir => {in_root}/cache\n"
        "astsbindir => /usr/sbin\n"
        "\n[options]\n"
        f"systemname = sipprov-{pbx.instance}\n"
        "verbose = 0\n"
        "debug = 0\n"
        "hideconnect = yes\n"
        "maxfiles = 65536\n"
        "documentation_language = en_US\n"
        "\n[files]\n"
        "astctlpermissions = 0600\n"
        "astctl = asterisk.ctl\n"
    ))
    write_atomic(etc / "modules.conf", (
        "; Only what sipprov needs, so the instance boots in about a second.\n"
        "[modules]\nautoload = no\n" + "".join(f"load => {m}\n" for m in MODULES)
    ))
    write_atomic(etc / "logger.conf", (
        "[general]\n"
        "dateformat = %F %T.%3q\n"
        "\n[logfiles]\n"
        "messages.log => notice,warning,error\n"
        "security.log => security\n"
    ))
    write_atomic(etc / "manager.conf", (
        "[general]\n"
        "enabled = yes\n"
        "webenabled = no\n"
        f"port = {int(ast.ami_port)}\n"
        "bindaddr = 127.0.0.1\n"
        "displayconnects = no\n"
        "timestampevents = no\n"
        "\n"
        f"[{user}]\n"
        f"secret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\n"
        "read = system,call,command,reporting,config,agent,user,originate,security\n"
        "write = system,call,command,reporting,config,agent,user,originate\n"
        "; big event lists (10,000 endpoints) to a busy client must not be cut off\n"
        "writetimeout = 10000\n"
    ))
    write_atomic(etc / "pjsip.conf", (
        "; The transport is the operator's; sipprov's endpoints are included below.\n"
        "[global]\n"
        "type = global\n"
        "; unknown users are challenged with the same realm as real ones, so the realm\n"
        "; does not tell which accounts exist\n"
        f"default_realm = {realm}\n"
        "; Only PJSIP's own backlog makes PJSIP drop new requests. With the default\n"
        "; (global) any overloaded taskprocessor does, and adding thousands of static\n"
        "; queue members floods app_queue's device-state subscriber: REGISTERs went\n"
        "; unanswered for about a minute (docs/apply.md, \"Asterisk settings\").\n"
        "taskprocessor_overload_trigger = pjsip_only\n"
        "; endpoints are named by extension only: without this every REGISTER first\n"
        "; looks up <ext>@<domain> in the database too (a miss, never cached)\n"
        "disable_multi_domain = yes\n"
        "\n"
        f"[{transport}]\n"
        "type = transport\n"
        "protocol = udp\n"
        f"bind = 127.0.0.1:{int(pbx.sip_port)}\n"
        "\n"
        f"#tryinclude {include}/pjsip.conf\n"
    ))
    write_atomic(etc / "extensions.conf", (
        "[general]\nstatic = yes\nwriteprotect = yes\n\n[globals]\n\n"
        f"#tryinclude {include}/extensions.conf\n"
    ))
    write_atomic(etc / "queues.conf", f"[general]\n\n#tryinclude {include}/queues.conf\n")
    for name, text in _CORE_FILES.items():
        write_atomic(etc / name, text)
    write_realtime_config(cfg)
    # Queue callers hear music on hold; the package ships no music, so the default
    # class plays one second of silence (signed linear, 8 kHz) from the instance.
    _mkdir(inst / "lib/moh")
    silence = inst / "lib/moh/silence.sln"
    if not silence.exists():
        write_atomic(silence, "\0" * 16000)
    write_atomic(etc / "musiconhold.conf", (
        f"[general]\n\n[default]\nmode = files\ndirectory = {in_root}/lib/moh\n"
    ))

    gen = Path(cfg.generated_dir)
    _mkdir(gen)
    for name in ("pjsip.conf", "extensions.conf", "queues.conf"):
        path = gen / name
        if not path.exists():
            write_atomic(path, "", cfg.security.file_mode)
