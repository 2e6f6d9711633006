"""Keys against the REAL Secret Service (gnome-keyring on a private D-Bus session bus).

Run inside ``tools/keyring-sandbox.sh`` (``make test`` wraps the whole suite in it). Without
it these tests FAIL (not skip): a skipped keyring test would hide a broken key store.
"""

from __future__ import annotations

import io
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voicetui import paths
from voicetui.cli import main
from voicetui.config import update_config
from voicetui.keys import InvalidKey, KeyringUnavailable, KeyStore, mask
from voicetui.specs.registry import registry

pytestmark = pytest.mark.keyring

OLD = "sk-old-key-AAAA1111bbbb"
NEW = "sk-new-key-CCCC2222dddd"
MISTRAL_KEY = "mistral-test-key-EEEE3333ffff"


@pytest.fixture
def secret_service() -> Iterator[KeyStore]:
    """A clean real Secret Service, or a clear failure."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        pytest.fail(
            "no D-Bus session bus: run the keyring tests inside the real Secret Service, "
            "e.g. `bash tools/keyring-sandbox.sh -- .venv/bin/pytest -q tests/test_keys.py` "
            "(`make test` does this)"
        )
    import keyring
    from keyring.backends import SecretService

    backend = keyring.get_keyring()
    candidates = getattr(backend, "backends", [backend])
    assert any(isinstance(b, SecretService.Keyring) for b in candidates), backend
    store = KeyStore()
    for key in registry():
        store.delete(key)
    yield store
    for key in registry():
        store.delete(key)


def _cli(
    args: list[str], stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "voicetui", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=timeout,
        check=False,
    )
    _outputs.extend([proc.stdout, proc.stderr])
    for value in (OLD, NEW, MISTRAL_KEY):
        assert value not in " ".join(args)  # never in argv: keys go through stdin
    return proc


_outputs: list[str] = []


@pytest.fixture
def run_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``voicetui ARGS`` in this process (much cheaper than a subprocess on a busy CI box),
    stdin a pipe-like non-TTY stream, outputs captured and kept for the leak grep."""

    def run(
        args: list[str], stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        with monkeypatch.context() as m:
            for name, value in (env or {}).items():
                m.setenv(name, value)
            m.setattr(sys, "stdin", io.StringIO(stdin))
            code = main(args)
        out, err = capsys.readouterr()
        _outputs.extend([out, err])
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def _secret_tool(spec_key: str) -> str:
    """What the Secret Service itself holds, through libsecret's CLI (a second client)."""
    tool = shutil.which("secret-tool")
    assert tool, "secret-tool missing (apt-get install libsecret-tools)"
    proc = subprocess.run(
        [tool, "lookup", "service", "voicetui", "username", spec_key],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout


def test_set_list_delete_through_the_cli(secret_service: KeyStore) -> None:
    proc = _cli(["keys", "set", "openai"], stdin=OLD + "\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"stored the ai-voice-conv.openai key in the OS keyring ({mask(OLD)})"
    )
    assert mask(OLD) == "****bbbb"
    # the real Secret Service holds it, seen by a second client
    assert _secret_tool("ai-voice-conv.openai") == OLD
    assert secret_service.get("openai").value == OLD
    assert secret_service.get("openai").source == "keyring"

    proc = _cli(["keys", "set", "mistral"], stdin=MISTRAL_KEY)
    assert proc.returncode == 0, proc.stderr
    proc = _cli(["keys", "list"])
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows == [
        ["ai-voice-conv.mistral", "keyring", "byok", mask(MISTRAL_KEY)],
        ["ai-voice-conv.openai", "keyring", "byok", "****bbbb"],
    ]

    proc = _cli(["keys", "delete", "ai-voice-conv.openai"])
    assert proc.returncode == 0 and "deleted" in proc.stdout
    assert _secret_tool("ai-voice-conv.openai") == ""
    proc = _cli(["keys", "delete", "openai"])
    assert proc.returncode == 0 and "no ai-voice-conv.openai key was stored" in proc.stdout
    proc = _cli(["keys", "list"])
    assert proc.stdout.splitlines()[1].split() == ["ai-voice-conv.openai", "none", "byok"]


def test_environment_overrides_the_keyring(secret_service: KeyStore, run_main: Any) -> None:
    secret_service.set("openai", OLD)
    env = dict(os.environ, OPENAI_API_KEY=NEW)
    assert KeyStore(environ=env).get("openai").value == NEW
    assert KeyStore(environ=env).get("openai").source == "environment"
    proc = run_main(["keys", "list"], env={"OPENAI_API_KEY": NEW})
    assert proc.stdout.splitlines()[1].split() == [
        "ai-voice-conv.openai",
        "environment",
        "byok",
        mask(NEW),
    ]
    # setting while the env var is set works, with a note that the env var still wins
    proc = run_main(["keys", "set", "openai"], stdin=OLD, env={"OPENAI_API_KEY": NEW})
    assert proc.returncode == 0 and "OPENAI_API_KEY is set" in proc.stderr


def test_keys_are_validated_against_the_secret_schema(
    secret_service: KeyStore, run_main: Any
) -> None:
    secret_service.set("openai", OLD)
    for bad in ("", "   \n", "two words", "tab\there"):
        proc = run_main(["keys", "set", "openai"], stdin=bad)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert proc.stderr.count("\n") == 1
    assert secret_service.get_stored("openai") == OLD  # unchanged
    with pytest.raises(InvalidKey) as info:
        secret_service.set("openai", "sk-with space-SECRETPART")
    assert "SECRETPART" not in str(info.value)
    # a key on the command line is refused without echoing it
    proc = subprocess.run(
        [sys.executable, "-m", "voicetui", "keys", "set", "openai", "sk-argv-SECRET-9999"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "never from argv" in proc.stderr
    assert "SECRET" not in proc.stderr + proc.stdout


def test_hidden_prompt_when_stdin_is_a_terminal(secret_service: KeyStore) -> None:
    # A real pseudo-terminal as the controlling TTY: getpass prompts and does not echo.
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execv(sys.executable, [sys.executable, "-m", "voicetui", "keys", "set", "openai"])
    seen = b""
    deadline = time.monotonic() + 30
    sent = False
    status = None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                chunk = b""
            seen += chunk
        if not sent and b"API key:" in seen:
            os.write(fd, NEW.encode() + b"\n")
            sent = True
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    os.close(fd)
    assert sent, seen
    assert status is not None and os.waitstatus_to_exitcode(status) == 0, seen
    text = seen.decode(errors="replace")
    _outputs.append(text)
    assert "OpenAI Realtime Voice API key:" in text
    assert NEW not in text  # not echoed
    assert secret_service.get_stored("openai") == NEW


def test_rotate_keeps_a_healthy_key(
    secret_service: KeyStore, openai_emulator_thread: Any, tmp_path: Path, run_main: Any
) -> None:
    openai_emulator_thread.accepted_keys = {NEW}
    path = tmp_path / "c.toml"
    update_config(path, providers={"openai": {"baseUrl": openai_emulator_thread.base_url}})
    secret_service.set("openai", OLD)
    proc = run_main(["--config", str(path), "keys", "rotate", "openai"], stdin=NEW)
    assert proc.returncode == 0, proc.stderr
    assert "rotated the ai-voice-conv.openai key (****dddd): health check ok" in proc.stdout
    assert secret_service.get_stored("openai") == NEW
    assert _secret_tool("ai-voice-conv.openai") == NEW


def test_rotate_restores_the_previous_key_when_the_new_one_fails(
    secret_service: KeyStore, openai_emulator_thread: Any, tmp_path: Path, run_main: Any
) -> None:
    openai_emulator_thread.accepted_keys = {OLD}  # the new key will be rejected (401)
    path = tmp_path / "c.toml"
    update_config(path, providers={"openai": {"baseUrl": openai_emulator_thread.base_url}})
    secret_service.set("openai", OLD)
    proc = run_main(["--config", str(path), "keys", "rotate", "openai"], stdin=NEW)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "failed its health check (unauthorized" in proc.stderr
    assert "kept the previous key (****bbbb)" in proc.stderr
    assert secret_service.get_stored("openai") == OLD
    assert _secret_tool("ai-voice-conv.openai") == OLD


def test_rotate_without_previous_key_leaves_none_on_failure(
    secret_service: KeyStore, mistral_emulator_thread: Any, tmp_path: Path, run_main: Any
) -> None:
    path = tmp_path / "c.toml"
    update_config(path, providers={"mistral": {"baseUrl": mistral_emulator_thread.base_url}})
    mistral_emulator_thread.faults.http_status = 429
    mistral_emulator_thread.faults.http_status_count = 1
    proc = run_main(["--config", str(path), "keys", "rotate", "mistral"], stdin=MISTRAL_KEY)
    assert proc.returncode == 1 and "(rate_limited" in proc.stderr
    assert secret_service.get_stored("mistral") is None
    # and a healthy one is kept
    proc = run_main(["--config", str(path), "keys", "rotate", "mistral"], stdin=MISTRAL_KEY)
    assert proc.returncode == 0, proc.stderr
    assert secret_service.get_stored("mistral") == MISTRAL_KEY


@pytest.mark.parametrize(
    "backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"]
)
def test_no_usable_backend_says_what_to_do(backend: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON_KEYRING_BACKEND=backend)
    for args in (
        ["keys", "set", "openai"],
        ["keys", "list"],
        ["keys", "delete", "mistral"],
        ["--config", str(tmp_path / "c.toml"), "keys", "rotate", "openai"],
    ):
        proc = _cli(args, stdin=OLD, env=env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        err = proc.stderr.strip()
        assert "\n" not in err, err
        assert "the OS keyring is not usable" in err
        assert "start and unlock a Secret Service" in err and "_API_KEY" in err
    # nothing was written anywhere as a fallback
    for directory in paths.all_app_dirs():
        for file in directory.rglob("*") if directory.exists() else []:
            if file.is_file():
                assert OLD.encode() not in file.read_bytes()


def test_no_backend_in_process() -> None:
    env_backend = os.environ.get("PYTHON_KEYRING_BACKEND")
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(KeyringUnavailable) as info:
            KeyStore(environ={}).get("openai")
        assert "set OPENAI_API_KEY" in str(info.value)
        # the environment still works without any keyring
        assert KeyStore(environ={"OPENAI_API_KEY": NEW}).get("openai").source == "environment"
    finally:
        keyring.set_keyring(previous)
    assert os.environ.get("PYTHON_KEYRING_BACKEND") == env_backend


def test_locked_collection_is_reported(tmp_path: Path) -> None:
    # A fresh session bus with no unlocked keyring: D-Bus starts gnome-keyring, which wants
    # a GUI prompt, and every call fails with InitError although the backend is SecretService.
    runner = shutil.which("dbus-run-session")
    assert runner, "dbus-run-session missing (apt-get install dbus)"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(tmp_path / "run"), XDG_DATA_HOME=str(home))
    (tmp_path / "run").mkdir(mode=0o700)
    proc = subprocess.run(
        [runner, "--", sys.executable, "-m", "voicetui", "keys", "set", "openai"],
        input=OLD,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    _outputs.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 1
    ours = [line for line in proc.stderr.splitlines() if line.startswith("voicetui:")]
    assert len(ours) == 1, proc.stderr
    assert "the OS keyring is not usable (InitError" in ours[0]
    assert "start and unlock a Secret Service" in ours[0]


def test_the_key_leaks_nowhere(
    secret_service: KeyStore,
    openai_emulator_thread: Any,
    mistral_emulator_thread: Any,
    tmp_path: Path,
    run_main: Any,
) -> None:
    """Every command that touches keys, with DEBUG logging; then grep every file under the
    app's config, state, data and cache dirs, and every captured output, for the keys."""
    openai_emulator_thread.accepted_keys = {NEW}
    update_config(  # the default config path, inside the app's config dir
        providers={
            "openai": {"baseUrl": openai_emulator_thread.base_url},
            "mistral": {"baseUrl": mistral_emulator_thread.base_url},
        }
    )
    env = {"VOICETUI_LOG_LEVEL": "DEBUG"}
    steps = [
        (["keys", "set", "openai"], OLD, 0),
        (["keys", "set", "mistral"], MISTRAL_KEY, 0),
        (["keys", "list"], "", 0),
        (["health", "--json"], "", 1),  # openai rejects OLD -> unauthorized
        (["keys", "rotate", "openai"], NEW, 0),
        (["keys", "rotate", "openai"], OLD, 1),  # rejected, NEW restored
        (["health"], "", 0),
        (["specs", "show", "openai", "--json"], "", 0),
        (["config", "show"], "", 0),
    ]
    for args, stdin, code in steps:
        proc = run_main(args, stdin=stdin, env=env)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    assert secret_service.get_stored("openai") == NEW
    log = paths.log_file()
    assert log.exists() and log.stat().st_size > 0  # the grep below has something to read
    assert "DEBUG" in log.read_text(encoding="utf-8")

    secrets = [OLD, NEW, MISTRAL_KEY]
    scanned = 0
    for directory in paths.all_app_dirs():
        if not directory.exists():
            continue
        for file in directory.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                scanned += 1
                for secret in secrets:
                    assert secret.encode() not in data, f"{secret[:6]}… leaked into {file}"
    assert scanned >= 2  # at least the config and the log
    for text in _outputs:
        for secret in secrets:
            assert secret not in text


def test_ctrl_c_during_rotation_restores_the_previous_key(
    secret_service: KeyStore, run_main: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicetui import health

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        # the new key is in the keyring at this point
        assert secret_service.get_stored("openai") == NEW
        raise KeyboardInterrupt

    monkeypatch.setattr(health, "check_sync", interrupted)
    secret_service.set("openai", OLD)
    proc = run_main(["--config", str(tmp_path / "c.toml"), "keys", "rotate", "openai"], NEW)
    assert proc.returncode == 130
    assert secret_service.get_stored("openai") == OLD
