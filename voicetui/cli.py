"""``voicetui`` command line: the console by default, headless subcommands otherwise.

Subcommands never import Textual (a test checks ``sys.modules``); the ones owned by other
modules (devices, talk, usage, transcripts) are parsed here and dispatched lazily to their
``cli_main(args)``. Exit codes: 0 ok, 1 failure, 2 usage or config error, 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicetui.keys import KeyStore

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Subcommands implemented elsewhere: command -> module exposing ``cli_main(args) -> int``.
DELEGATED: dict[str, str] = {
    "devices": "voicetui.audio.devices",
    "talk": "voicetui.engine.talk",
    "usage": "voicetui.engine.usage",
    "transcripts": "voicetui.engine.transcript",
    "doctor": "voicetui.doctor",
}


class UsageError(Exception):
    """Bad input from the user (exit 2)."""


def _err(message: str) -> None:
    print(f"voicetui: error: {message}", file=sys.stderr)


def _warn_config(warnings: Sequence[str]) -> None:
    """The config's one-line warnings (a deprecated model still configured)."""
    for line in warnings:
        print(f"voicetui: warning: {line}", file=sys.stderr)


# ---------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands, including delegated ones)."""
    parser = argparse.ArgumentParser(
        prog="voicetui",
        description="A terminal voice console for live conversations with AI voice models "
        "(see `voicetui specs list`), bring-your-own-key. Without a command it opens the console.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config file (default: $VOICETUI_CONFIG or the platform config dir)",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the versions of voicetui, textual, each provider's SDK, sounddevice, PortAudio",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    provider_help = "spec key or alias (voicetui specs list shows them)"

    specs = sub.add_parser("specs", help="the integration specs")
    specs_sub = specs.add_subparsers(dest="specs_command", metavar="ACTION", required=True)
    specs_sub.add_parser("list", help="list the specs")
    show = specs_sub.add_parser("show", help="show one spec")
    show.add_argument("provider", metavar="PROVIDER", help=provider_help)
    show.add_argument("--json", action="store_true", help="the spec as JSON, its own field names")
    docs = specs_sub.add_parser("docs", help="write one Markdown file per spec")
    docs.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the Markdown files"
    )

    config = sub.add_parser("config", help="the config file")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_sub.add_parser("path", help="print the config file path")
    config_sub.add_parser("check", help="validate the config file")
    config_show = config_sub.add_parser("show", help="print the effective config")
    config_show.add_argument("--json", action="store_true", help="as JSON instead of TOML")

    keys = sub.add_parser("keys", help="API keys in the OS keyring")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    for name, text in (
        ("set", "store a key (read from stdin when piped, else a hidden prompt; never argv)"),
        ("delete", "delete the stored key"),
        ("rotate", "replace the key, keep it only if its health check passes"),
    ):
        p = keys_sub.add_parser(name, help=text)
        p.add_argument("provider", metavar="PROVIDER", help=provider_help)
        if name == "rotate":
            p.add_argument("--timeout-ms", type=int, metavar="MS", help=argparse.SUPPRESS)
    keys_sub.add_parser("list", help="source and mask of each provider's key")

    health = sub.add_parser("health", help="check that each provider answers with your key")
    health.add_argument("provider", nargs="?", metavar="PROVIDER", help=provider_help)
    health.add_argument("--json", action="store_true", help="one JSON object per provider")
    health.add_argument(
        "--timeout-ms", type=int, metavar="MS", help="override the spec's healthCheck.timeoutMs"
    )

    doctor = sub.add_parser("doctor", help="check everything a conversation needs (bounded)")
    doctor.add_argument("--json", action="store_true", help="one JSON object per check")
    doctor.add_argument(
        "--echo",
        action="store_true",
        help="also calibrate the echo path (plays a 2 s probe) and save the duplex policy",
    )
    doctor.add_argument(
        "--timeout-s", type=float, default=None, metavar="S", help="per network check (default 6)"
    )

    devices = sub.add_parser("devices", help="list audio devices")
    devices.add_argument("--json", action="store_true", help="as JSON (name, kind, default)")

    talk = sub.add_parser("talk", help="one headless conversation from a WAV file")
    talk.add_argument("provider", nargs="?", metavar="PROVIDER", help=provider_help)
    talk.add_argument(
        "--input", type=Path, required=True, metavar="IN.wav", help="WAV file used as the mic"
    )
    talk.add_argument(
        "--output",
        type=Path,
        metavar="OUT.wav",
        help="write the assistant's audio here (default: play it on the speaker)",
    )
    talk.add_argument(
        "--transcript",
        type=Path,
        metavar="OUT.jsonl",
        help="write every transcript event here, one JSON object per line",
    )

    demo = sub.add_parser(
        "demo",
        help="the full console against the bundled emulators: no key, no network",
        description="Opens the console talking to local emulators of both providers, started "
        "on free loopback ports: press Space, say anything, press Space again to hear a "
        "spoken reply with speaker labels and a web search. Your config, keys and saved "
        "conversations are not touched.",
    )
    demo.add_argument(
        "provider", nargs="?", metavar="PROVIDER", help=provider_help + "; default mistral"
    )

    usage = sub.add_parser("usage", help="today's usage per provider")
    usage.add_argument("provider", nargs="?", metavar="PROVIDER", help=provider_help)
    usage.add_argument("--json", action="store_true", help="as JSON")

    transcripts = sub.add_parser("transcripts", help="saved conversations")
    tr_sub = transcripts.add_subparsers(dest="transcripts_command", metavar="ACTION", required=True)
    tr_sub.add_parser("list", help="list saved sessions")
    export = tr_sub.add_parser("export", help="export a session as Markdown")
    export.add_argument("session", nargs="?", metavar="SESSION_ID", help="default: the latest")
    export.add_argument(
        "--out", type=Path, metavar="FILE", help="write the Markdown here (default: stdout)"
    )
    return parser


# ---------------------------------------------------------------------------------- --version


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence fd 2 while PortAudio initialises (ALSA prints probe noise there)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def version_lines() -> list[str]:
    """voicetui's version and its key dependencies', without importing Textual."""

    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    from voicetui import __version__

    lines = [f"voicetui {__version__}"]
    from voicetui.providers.registry import providers

    sdks = dict.fromkeys(name for p in providers() for name in p.distributions)
    lines += [f"{name}: {dist(name)}" for name in ("textual", *sdks, "sounddevice")]
    try:
        with _quiet_fd2():
            import sounddevice

            portaudio = str(sounddevice.get_portaudio_version()[1])
    except (OSError, ImportError):  # the wheel has no PortAudio on Linux
        portaudio = "not found (install libportaudio2)"
    lines.append(f"PortAudio: {portaudio}")
    return lines


# ---------------------------------------------------------------------------------- commands


def _resolve(name: str | None) -> str | None:
    from voicetui.specs.registry import UnknownProvider, registry

    if name is None:
        return None
    try:
        return registry().resolve(name)
    except UnknownProvider as err:
        raise UsageError(str(err)) from None


def _cmd_specs(args: argparse.Namespace) -> int:
    from voicetui.specs.registry import registry

    reg = registry()
    if args.specs_command == "list":
        for spec in reg.all():
            print(
                f"{spec.key:<24} {reg.alias(spec.key):<8} {spec.meta.version:<7} "
                f"{spec.meta.stability.value:<13} {', '.join(spec.supported_modes):<15} "
                f"{spec.title}"
            )
        return EXIT_OK
    if args.specs_command == "docs":
        from voicetui.specs.docs import write_docs

        try:
            written = write_docs(args.out, reg)
        except OSError as err:
            _err(f"cannot write the docs into {args.out}: {_os_reason(err)}")
            return EXIT_FAIL
        for path in written:
            print(path)
        return EXIT_OK
    spec = reg.get(args.provider)
    if args.json:
        print(json.dumps(spec.to_json(), indent=2, ensure_ascii=False))
        return EXIT_OK
    _print_spec_text(spec.key)
    return EXIT_OK


def _print_spec_text(key: str) -> None:
    from voicetui.specs.registry import registry

    reg = registry()
    spec = reg.get(key)
    meta = spec.meta
    out = [
        f"{meta.title} ({meta.key}, alias {reg.alias(key)})",
        f"  {meta.description}",
        f"  version {meta.version} · {meta.stability.value} · category {meta.category} · "
        f"domain {meta.domain}",
        f"  owners: {', '.join(meta.owners)} · tags: {', '.join(meta.tags)}",
        f"  modes: {', '.join(spec.supported_modes)}",
        "  transports: "
        + ", ".join(
            t.type
            + (f" {t.base_url}" if t.base_url else "")
            + (f" (package {t.package_name})" if t.package_name else "")
            for t in spec.transports
        )
        + f" (preferred: {spec.preferred_transport})",
        "  auth: "
        + ", ".join(
            f"{a.type} in {a.header_name} ({a.prefix.strip()})" for a in spec.supported_auth_methods
        ),
        "  provides: " + ", ".join(f"{c.key}@{c.version}" for c in spec.capabilities.provides),
        "  config:",
    ]
    example = spec.config_schema.example
    for name, prop in spec.config_schema.properties.items():
        allowed = f" one of {', '.join(prop['enum'])};" if "enum" in prop else ""
        out.append(
            f"    {name} ({prop.get('type', 'any')};{allowed} example {example.get(name)!r}): "
            f"{prop.get('description', '')}"
        )
    out.append("  secret:")
    required = set(spec.secret_schema.schema.get("required", []))
    for name, prop in spec.secret_schema.properties.items():
        req = "required" if name in required else "optional"
        out.append(f"    {name} ({prop.get('type', 'any')}, {req}): {prop.get('description', '')}")
    out += [
        f"  health check: {spec.health_check.method}, timeout {spec.health_check.timeout_ms} ms",
        f"  docs: {spec.docs_url}",
        f"  BYOK setup: {spec.byok_setup.setup_instructions}",
        f"    key rotation supported: {_yes(spec.byok_setup.key_rotation_supported)} · "
        f"quota tracking supported: {_yes(spec.byok_setup.quota_tracking_supported)}",
        f"    key from: voicetui keys set {reg.alias(key)}, or ${reg.api_key_env(key)}, or "
        f"apiKeyCommand in the provider table (managed)",
    ]
    print("\n".join(out))


def _yes(flag: bool | None) -> str:
    return "unspecified" if flag is None else ("yes" if flag else "no")


def _cmd_config(args: argparse.Namespace) -> int:
    from voicetui import paths
    from voicetui.config import load_config

    if args.config_command == "path":
        print(paths.config_file(args.config))
        return EXIT_OK
    cfg = load_config(args.config)
    _warn_config(cfg.warnings)
    if args.config_command == "check":
        state = "valid" if cfg.from_file else "absent: defaults in use"
        print(f"{cfg.path}: {state}")
        return EXIT_OK
    doc = cfg.to_toml()
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        import tomli_w

        print(f"# {cfg.path}" + ("" if cfg.from_file else " (absent: defaults)"))
        print(tomli_w.dumps(doc), end="")
    return EXIT_OK


def _cmd_keys(args: argparse.Namespace) -> int:
    from voicetui.keys import KeyringUnavailable, KeyStore, mask, read_key, unavailable_message
    from voicetui.specs.registry import registry

    reg = registry()
    store = KeyStore()
    if args.keys_command == "list":
        from voicetui.config import load_config
        from voicetui.keys import PRECEDENCE, KeyCommandFailed, key_mode

        cfg = load_config(args.config)
        failure: KeyringUnavailable | None = None
        command_failures: list[str] = []
        for key in reg:
            source: str
            command = cfg.key_command(key)
            modes = reg.get(key).supported_modes
            mode = key_mode("command" if command else "keyring", modes)
            try:
                resolved = store.get(key, command)
                source, shown, mode = resolved.source, resolved.masked, resolved.mode(modes)
                if command and resolved.source == "environment":
                    shown += "  (overrides apiKeyCommand)"
            except KeyringUnavailable as err:
                failure = failure or err
                source, shown = "unavailable", ""
            except KeyCommandFailed as err:
                command_failures.append(f"{key}: {err}")
                source, shown = "command", "failed"
            print(f"{key:<24} {source:<12} {mode:<8} {shown}".rstrip())
        if any(cfg.key_command(k) for k in reg):
            print(f"precedence: {PRECEDENCE}", file=sys.stderr)
        for line in command_failures:
            _err(line)
        if failure is not None:
            envs = " / ".join(reg.api_key_env(k) for k in reg)
            _err(unavailable_message(failure.detail, envs))
        return EXIT_FAIL if failure is not None or command_failures else EXIT_OK

    spec_key = args.provider
    env_var = reg.api_key_env(spec_key)
    env_note = (
        f"note: {env_var} is set in the environment and overrides the keyring"
        if os.environ.get(env_var, "").strip()
        else ""
    )
    if args.keys_command == "delete":
        if store.delete(spec_key):
            print(f"deleted the {spec_key} key from the OS keyring")
        else:
            print(f"no {spec_key} key was stored in the OS keyring")
        if env_note:
            print(env_note, file=sys.stderr)
        return EXIT_OK

    if args.keys_command == "set":
        store.get_stored(spec_key)  # fail on an unusable keyring before asking for the key
        value = store.validate(spec_key, read_key(f"{reg.get(spec_key).title} API key: "))
        store.set(spec_key, value)
        print(f"stored the {spec_key} key in the OS keyring ({mask(value)})")
        if env_note:
            print(env_note, file=sys.stderr)
        return EXIT_OK

    return _rotate(args, spec_key, store, env_note)


def _rotate(args: argparse.Namespace, spec_key: str, store: KeyStore, env_note: str) -> int:
    from voicetui.config import load_config
    from voicetui.health import check_sync
    from voicetui.keys import mask, read_key

    cfg = load_config(args.config)  # before anything changes: a bad config aborts cleanly
    previous = store.get_stored(spec_key)
    new = store.validate(spec_key, read_key("New API key: "))
    store.set(spec_key, new)
    restored = False
    try:
        result = check_sync(
            spec_key, cfg, store, api_key=store.get_stored(spec_key), timeout_ms=args.timeout_ms
        )
        if result.ok:
            print(
                f"rotated the {spec_key} key ({mask(new)}): health check ok in "
                f"{result.latency_ms} ms"
            )
            if env_note:
                print(env_note, file=sys.stderr)
            return EXIT_OK
        _restore(store, spec_key, previous)
        restored = True
        kept = f"kept the previous key ({mask(previous)})" if previous else "no key stored"
        _err(
            f"the new {spec_key} key failed its health check ({result.status}: {result.detail}); "
            f"{kept}"
        )
        return EXIT_FAIL
    finally:
        if not restored and sys.exc_info()[0] is not None:
            _restore(store, spec_key, previous)  # interrupted or crashed mid-check


def _restore(store: KeyStore, spec_key: str, previous: str | None) -> None:
    if previous:
        store.set(spec_key, previous)
    else:
        store.delete(spec_key)


def _cmd_health(args: argparse.Namespace) -> int:
    from voicetui.config import load_config
    from voicetui.health import check_all_sync

    cfg = load_config(args.config)
    _warn_config(cfg.warnings)
    if args.timeout_ms is not None and args.timeout_ms <= 0:
        raise UsageError("--timeout-ms must be a positive number of milliseconds")
    results = check_all_sync(
        cfg, None, [args.provider] if args.provider else None, timeout_ms=args.timeout_ms
    )
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            latency = "-" if r.latency_ms is None else f"{r.latency_ms} ms"
            print(f"{r.provider:<24} {r.status:<13} {latency:>8}  {r.detail}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAIL


def _cmd_delegated(args: argparse.Namespace) -> int:
    module_name = DELEGATED[args.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            _err(f"`voicetui {args.command}` is not available in this build ({module_name})")
            return EXIT_FAIL
        raise
    code: int = module.cli_main(args)
    return code


def _cmd_app(args: argparse.Namespace) -> int:
    from voicetui.config import load_config

    load_config(args.config)  # refuse a broken config before the screen takes over
    from voicetui.tui import app  # the only path that imports Textual

    code: int = app.run(args.config)
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    from voicetui.tui import app  # Textual, like the console itself

    code: int = app.run_demo(args.provider)
    return code


COMMANDS = {
    "demo": _cmd_demo,
    "specs": _cmd_specs,
    "config": _cmd_config,
    "keys": _cmd_keys,
    "health": _cmd_health,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voicetui`` console script. Returns the exit code."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command == "keys":
            # Do not echo them: someone just typed their key on the command line.
            parser.error(
                f"`keys {args.keys_command}` takes no key argument ({len(extra)} extra argument(s)"
                " not shown): the key is read from stdin or a hidden prompt, never from argv"
            )
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.version:
            print("\n".join(version_lines()))
            return EXIT_OK
        from voicetui import logs

        logs.setup_logging(os.environ.get("VOICETUI_LOG_LEVEL", "INFO").upper())
        if hasattr(args, "provider"):
            args.provider = _resolve(args.provider)
        if args.command is None:
            return _cmd_app(args)
        if args.command in DELEGATED:
            return _cmd_delegated(args)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAIL
    except Exception as err:
        code = _known_error_code(err)
        if code is None:
            raise
        _err(str(err))
        return code


def _os_reason(err: OSError) -> str:
    """One line for a refused file operation ("not a directory", "disk full", ...)."""
    from voicetui import fileio

    if isinstance(err, fileio.UnsafePath):
        return str(err.strerror)
    return fileio.reason(err)


def _known_error_code(err: BaseException) -> int | None:
    """Exit code for the errors that are the user's to fix (one-line messages), else None.

    Looked up in ``sys.modules`` so that commands which never load the config (``specs``,
    ``keys set``) do not pay for importing it: an error class not imported was not raised.
    """
    if isinstance(err, UsageError):
        return EXIT_USAGE
    config = sys.modules.get("voicetui.config")
    keys = sys.modules.get("voicetui.keys")
    if config is not None and isinstance(err, config.ConfigError):
        return EXIT_USAGE
    if keys is not None and isinstance(err, keys.InvalidKey):
        return EXIT_USAGE
    if keys is not None and isinstance(err, keys.KeyringUnavailable):
        return EXIT_FAIL
    specs = sys.modules.get("voicetui.specs.registry")
    if specs is not None and isinstance(err, specs.SpecInvalid):
        return EXIT_FAIL  # a built-in spec refused at load: a bug, but say it in one line
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
