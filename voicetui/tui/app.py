"""The voicetui Textual application: entry point :func:`run` and the App class.

The app owns the live :class:`ConversationEngine` (built by ``voicetui.engine.factory``) and
runs its loop in an async worker on the UI's event loop. The engine's listener turns each
event into a :class:`~voicetui.tui.messages.EngineEvent` message for the console; commands
(talk, interrupt, mute) are plain method calls, awaited in short workers so the UI never
waits on the network. Every failure ends up as a notification or a status line saying what
to do: the app itself never dies on a provider, device or keyring error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from voicetui.engine.events import AssistantAudio, Event
from voicetui.tui.commands import VoiceCommands
from voicetui.tui.messages import EngineEvent, HealthUpdated, SessionStopped
from voicetui.tui.screens.console import ConsoleScreen
from voicetui.tui.themes import DEFAULT_THEME, ThemeLoad, load_themes, user_themes_dir

if TYPE_CHECKING:
    from voicetui.audio.devices import DeviceInfo
    from voicetui.config import AppConfig
    from voicetui.engine.events import SessionEnded
    from voicetui.engine.factory import Voice
    from voicetui.engine.session import ConversationEngine
    from voicetui.health import HealthResult
    from voicetui.keys import KeyStore

log = logging.getLogger("voicetui.tui")

HEALTH_EVERY_S = 240.0  # idle re-check period of the health line
FROZEN_ENV = "VOICETUI_TUI_FROZEN"
"""Set to 1 for deterministic screens (snapshots): fixed timer, no live meters or blink."""


class VoiceTuiApp(App[int]):
    """Full-screen voice console."""

    TITLE = "voicetui"
    SUB_TITLE = "voice console"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    # Other screens have Inputs; focusing one on start would swallow Space (the talk key).
    AUTO_FOCUS = None
    COMMANDS = App.COMMANDS | {VoiceCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        config_path: Path | None = None,
        *,
        config: AppConfig | None = None,
        frozen: bool | None = None,
        autostart: bool = True,
        health_on_start: bool = True,
        keys: KeyStore | None = None,
        input_wav: Path | None = None,
        output_wav: Path | None = None,
        welcome: str | None = None,
    ) -> None:
        super().__init__()
        self.welcome = welcome  # an extra first line for the transcript (the demo's)
        self.config_path = config_path
        self._config = config
        self.frozen = os.environ.get(FROZEN_ENV) == "1" if frozen is None else frozen
        self.autostart = autostart
        self.health_on_start = health_on_start
        self._keys = keys
        self.input_wav = input_wav
        self.output_wav = output_wav
        self.engine: ConversationEngine | None = None
        self.health: dict[str, HealthResult] = {}
        self.theme_load: ThemeLoad = ThemeLoad()
        self.session_error: str | None = None
        self.voices: dict[str, list[Voice]] = {}  # per provider, for pickers and the palette
        self.devices: list[DeviceInfo] = []
        self.session_id: str | None = None
        self._engine_worker: Worker[None] | None = None
        self._engine_task: tuple[ConversationEngine, asyncio.Task[SessionEnded]] | None = None
        self._ending = False
        self._end_reason = "app closed"

    # --- shared services -------------------------------------------------------------------

    @property
    def config(self) -> AppConfig:
        """The current configuration (loaded on first use)."""
        if self._config is None:
            from voicetui.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @property
    def keys(self) -> KeyStore:
        """The key store (keyring + environment)."""
        if self._keys is None:
            from voicetui.keys import KeyStore

            self._keys = KeyStore()
        return self._keys

    def reload_config(self) -> AppConfig:
        """Re-read the config after it was saved."""
        from voicetui.config import load_config

        self._config = load_config(self.config.path)
        return self._config

    def save_config(self, **changes: Any) -> str | None:
        """Write ``changes`` to the TOML config. Returns None, or the one-line reason it was
        refused (also shown as a notification)."""
        from voicetui.config import ConfigError, update_config

        try:
            self._config = update_config(self.config.path, **changes)
        except ConfigError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"cannot write {self.config.path}: {exc.strerror}"
        else:
            return None
        self.notify(error, title="Not saved", severity="error", timeout=8)
        return error

    @property
    def console_screen(self) -> ConsoleScreen:
        """The home screen (always at the bottom of the stack)."""
        screen = self.screen_stack[0]
        assert isinstance(screen, ConsoleScreen)
        return screen

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own palette entries, said so they cannot be mistaken for the app's:
        its "Keys" is the key-bindings help (the API keys are "API keys"), and "Screenshot"
        saves into voicetui's data folder and says where, or why not."""
        for command in super().get_system_commands(screen):
            if command.title == "Keys":
                yield SystemCommand(
                    "Key bindings help",
                    "show or hide the keyboard shortcuts of this screen",
                    command.callback,
                )
            elif command.title == "Screenshot":
                yield SystemCommand(
                    "Screenshot",
                    f"save an SVG of the screen in {screenshots_dir()}",
                    lambda: self.set_timer(0.1, self.save_screen_svg),
                )
            else:
                yield command

    def save_screen_svg(self) -> Path | None:
        """Save an SVG of the screen; notify where it went, or why it could not be saved."""
        import time

        folder = screenshots_dir()
        name = time.strftime("voicetui-%Y%m%d-%H%M%S.svg")
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = Path(self.save_screenshot(filename=name, path=str(folder)))
        except OSError as exc:
            self.notify(
                f"screenshot not saved: cannot write {folder}: {exc.strerror}",
                severity="error",
                timeout=8,
            )
            return None
        self.notify(f"screenshot saved to {path}", title="Screenshot", timeout=6)
        return path

    def get_default_screen(self) -> Screen[Any]:
        """The console is the home screen."""
        return ConsoleScreen()

    # --- start-up --------------------------------------------------------------------------

    def on_mount(self) -> None:
        from voicetui.tui import signals

        self._remove_signal_handlers = signals.install(self._on_signal)
        self.theme_load = load_themes()
        for theme in self.theme_load.themes:
            self.register_theme(theme)
        for error in self.theme_load.errors:
            self.notify(error, title="Theme skipped", severity="warning", timeout=8)
        wanted = self.config.theme or DEFAULT_THEME
        if wanted not in self.available_themes:
            self.notify(
                f"theme {wanted!r} not found (not built in, not in {user_themes_dir()}); "
                f"using {DEFAULT_THEME}",
                severity="warning",
                timeout=8,
            )
            wanted = DEFAULT_THEME
        self.theme = wanted
        # Paint first: key checks, SDK imports and device probes come after the first frame
        # (they hold the GIL in bursts and would delay it by seconds).
        self.call_after_refresh(self._after_first_frame)

    def _after_first_frame(self) -> None:
        if self.autostart:
            self.run_background(self._first_screen(), name="startup")
            self.set_timer(
                2.0,
                lambda: self.run_background(
                    self.refresh_devices(), name="device scan", group="devices"
                ),
            )
        if self.health_on_start and not self.frozen:
            # and every few minutes while idle, so a provider that went away shows
            self.set_interval(HEALTH_EVERY_S, self._idle_health_check)
        if self.health_on_start:
            # after the session's own SDK import, so they do not compete at start-up
            if self.autostart:
                self.set_timer(1.0, self.run_health_checks)
            else:
                self.run_health_checks()

    async def _first_screen(self) -> None:
        """Open the keys screen when the chosen provider has no key, else start talking."""
        provider = self.config.provider
        source = await self.key_source(provider)
        if source == "none":
            from voicetui.tui.screens.keys import KeysScreen

            await self.push_screen(KeysScreen(first_run=True, focus_provider=provider))
            return
        self.start_session()

    async def key_source(self, spec_key: str) -> str:
        """Where the key for ``spec_key`` comes from (environment / command / keyring /
        none), as a session would resolve it."""
        from voicetui.keys import KeyCommandFailed, KeyringUnavailable

        try:
            command = self.config.key_command(spec_key)
            resolved = await asyncio.to_thread(self.keys.get, spec_key, command)
        except KeyringUnavailable:
            return "none"  # the keys screen says so, with the environment way instead
        except KeyCommandFailed:
            # not "no key yet": the session start reports the command's failure in one line
            # and opens the keys screen, which shows it next to the command
            return "command"
        return str(resolved.source) if resolved.value else "none"

    # --- background work -------------------------------------------------------------------

    def run_background(
        self, work: Awaitable[Any], *, name: str, group: str = "default", exclusive: bool = False
    ) -> Worker[Any]:
        """Run ``work`` in an async worker whose failure is reported, never fatal."""
        return self.run_worker(
            work, name=name, group=group, exclusive=exclusive, exit_on_error=False
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            log.error("worker %s failed", worker.name, exc_info=worker.error)
            self.notify(
                f"{worker.name}: {one_line(worker.error)}",
                title="Something went wrong",
                severity="error",
                timeout=10,
            )

    def run_health_checks(self, spec_key: str | None = None) -> None:
        """Check one or all providers in the background; results arrive as HealthUpdated.
        The console's health line says "checking…" meanwhile."""
        self.console_screen.health_checking()
        self.run_background(
            self._health(spec_key), name="health check", group="health", exclusive=True
        )

    def _idle_health_check(self) -> None:
        from voicetui.engine.events import State

        engine = self.engine
        if engine is None or engine.state in (State.LISTENING, State.IDLE, State.ENDED):
            self.run_health_checks()

    async def _health(self, spec_key: str | None) -> None:
        # In a thread with its own event loop: the checks read the keyring (D-Bus) and
        # import SDKs synchronously, which would stall the UI's loop for a moment.
        from voicetui.health import check_all_sync

        keys = [spec_key] if spec_key else None
        results = await asyncio.to_thread(check_all_sync, self.config, self.keys, keys)
        for result in results:
            self.health[result.provider] = result
        message = HealthUpdated(results)
        self.console_screen.post_message(message)
        for screen in self.screen_stack[1:]:
            screen.post_message(HealthUpdated(results))

    async def refresh_devices(self) -> list[DeviceInfo]:
        """Probe audio devices off the UI thread (PortAudio scans can take a while)."""
        from voicetui.audio.devices import list_devices

        try:
            self.devices = await asyncio.to_thread(list_devices)
        except Exception as exc:
            self.notify(f"cannot list audio devices: {one_line(exc)}", severity="warning")
        return self.devices

    async def fetch_voices(self, spec_key: str) -> list[Voice]:
        """The provider's voices (cached); the configured voice alone when unreachable."""
        from voicetui.engine.factory import Voice, list_voices

        settings = self.config.provider_settings(spec_key)
        fallback = [Voice(id=settings.voice, name=settings.voice, description="configured voice")]
        try:
            resolved = await asyncio.to_thread(self.keys.get, spec_key)
            voices = await asyncio.wait_for(list_voices(settings, resolved.value or ""), timeout=10)
        except Exception as exc:
            log.info("voice list for %s unavailable: %s", spec_key, exc)
            return self.voices.get(spec_key) or fallback
        self.voices[spec_key] = list(voices) or fallback
        self.console_screen.voices_loaded(spec_key)
        return self.voices[spec_key]

    # --- the conversation session ----------------------------------------------------------

    @property
    def session_running(self) -> bool:
        """True while an engine exists (connecting, live or ending)."""
        return self.engine is not None

    def start_session(
        self, provider_key: str | None = None, *, reason: str = "new session"
    ) -> None:
        """Build and run a new engine (replacing the current one) in a worker; ``reason``
        is what the ending session's last line says ("new conversation", "settings
        changed", "provider switched")."""
        # The exclusive worker cancels the running one, which ends its engine with this.
        self._end_reason = reason
        self._engine_worker = self.run_background(
            self._engine_main(provider_key, reason), name="session", group="engine", exclusive=True
        )

    async def _engine_main(self, provider_key: str | None, reason: str) -> None:
        await self.end_session(reason)
        key = provider_key or self.config.provider
        console = self.console_screen
        console.session_starting(key)
        try:
            engine = await self._build_engine(key)
        except Exception as exc:  # every build failure is one line for the user
            self.session_error = one_line(exc)
            console.post_message(SessionStopped(self.session_error, error=True))
            if getattr(exc, "code", "") == "no_key":
                self.open_keys(key)  # the fix is one screen away
            return
        self.session_error = None
        self.session_id = engine.session_id
        self.run_background(self.fetch_voices(key), name="voice list", group="voices")

        def listener(event: Event) -> None:
            # Called on this loop's thread, in order; audio chunks are not drawn.
            if not isinstance(event, AssistantAudio):
                console.post_message(EngineEvent(event))

        unsubscribe = engine.subscribe(listener)
        self.engine = engine
        # The loop runs in its own task, shielded from this worker: when the app closes
        # (workers are cancelled first), the engine must still end properly and release the
        # devices and sockets; on_unmount waits for that.
        task = asyncio.create_task(engine.run(), name="engine")
        self._engine_task = (engine, task)
        reason = "session ended"
        try:
            ended = await asyncio.shield(task)
            reason = ended.reason
        except asyncio.CancelledError:
            await self._close_engine()
            raise
        except Exception as exc:  # the engine promises not to raise; be safe anyway
            log.exception("engine run failed")
            reason = one_line(exc)
            console.post_message(SessionStopped(reason, error=True))
            return
        finally:
            unsubscribe()
            if self.engine is engine:
                self.engine = None
        console.post_message(SessionStopped(reason))

    async def _close_engine(self, limit_s: float = 3.0) -> None:
        """End the engine task (if any) and wait for it, bounded."""
        if self._engine_task is None:
            return
        engine, task = self._engine_task
        if task.done():
            return
        try:
            await engine.end(self._end_reason)
            await asyncio.wait_for(asyncio.shield(task), limit_s)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("session did not end within %.0f s of closing", limit_s)
        except Exception as exc:
            log.warning("ending the session failed: %s", exc)

    async def _build_engine(self, provider_key: str) -> ConversationEngine:
        # SDK imports, keyring reads and device checks can take a while: build the engine
        # (which starts nothing) in a thread; it runs on this loop afterwards.
        from voicetui.engine.factory import build_engine, preload_provider

        await asyncio.to_thread(preload_provider, provider_key)
        return await asyncio.to_thread(
            build_engine,
            self.config,
            self.keys,
            provider_key=provider_key,
            input_wav=self.input_wav,
            output_wav=self.output_wav,
        )

    async def end_session(self, reason: str = "ended by user") -> None:
        """End the running session (if any) and wait for its loop to finish."""
        engine = self.engine
        if engine is None:
            return
        try:
            await engine.end(reason)
        except Exception as exc:
            log.warning("engine.end failed: %s", exc)
        for _ in range(100):  # the run loop returns shortly after end()
            if self.engine is not engine:
                break
            await asyncio.sleep(0.02)

    def engine_command(self, name: str, command: Callable[[], Awaitable[Any]]) -> None:
        """Run an engine command without blocking the UI."""
        self.run_background(command(), name=name, group="commands")

    async def action_quit(self) -> None:
        """Quit cleanly: end the session (closing devices and sockets) first."""
        if self._ending:
            self.exit(0)
            return
        self._ending = True
        try:
            await asyncio.wait_for(self.end_session("quit"), timeout=3.0)
        except TimeoutError:
            log.warning("session did not end within 3 s; quitting anyway")
        self.exit(0)

    def _on_signal(self, reason: str, code: int) -> None:
        """SIGTERM/SIGHUP/SIGINT (see :mod:`voicetui.tui.signals`): end, then exit ``code``."""
        self.run_background(self._quit_on_signal(reason, code), name="signal")

    async def _quit_on_signal(self, reason: str, code: int) -> None:
        if not self._ending:
            self._ending = True
            try:
                await asyncio.wait_for(self.end_session(reason), timeout=3.0)
            except TimeoutError:
                log.warning("session did not end within 3 s of %s", reason)
        self.exit(return_code=code)

    async def on_unmount(self) -> None:
        """Closing by any path (tests, signals) still ends the session and frees devices."""
        remove = getattr(self, "_remove_signal_handlers", None)
        if remove is not None:
            remove()
        self._end_reason = "app closed"
        await self._close_engine()

    # --- screens ---------------------------------------------------------------------------

    def open_keys(self, provider: str | None = None) -> None:
        """Show the keys screen."""
        from voicetui.tui.screens.keys import KeysScreen

        self.push_screen(KeysScreen(focus_provider=provider))

    def open_settings(self) -> None:
        """Show the settings screen."""
        from voicetui.tui.screens.settings import SettingsScreen

        self.push_screen(SettingsScreen())

    def open_health(self) -> None:
        """Show the health screen."""
        from voicetui.tui.screens.health import HealthScreen

        self.push_screen(HealthScreen())

    def open_doctor(self) -> None:
        """Show the doctor screen (every check of ``voicetui doctor``, live)."""
        from voicetui.tui.screens.doctor import DoctorScreen

        self.push_screen(DoctorScreen())

    def open_theme_picker(self) -> None:
        """Show the theme picker (live preview)."""
        from voicetui.tui.screens.theme_picker import ThemePickerScreen

        self.push_screen(ThemePickerScreen())

    def action_change_theme(self) -> None:
        """Textual's own "Theme" command opens our picker (preview, then saved)."""
        self.open_theme_picker()

    def set_theme_and_save(self, name: str) -> None:
        """Apply a theme and remember it in the config."""
        self.theme = name
        self.save_config(theme=name)

    def new_conversation(self) -> None:
        """End the session and start a fresh one (empty transcript)."""
        self.console_screen.action_new_conversation()

    def set_device(self, which: str, name: str) -> None:
        """Choose the input or output device by name; restarts a live session."""
        if self.save_config(audio={which: name}) is None:
            self.notify(f"{which.replace('_', ' ')}: {name}", timeout=3)
            if self.engine is not None:
                self.start_session(reason="settings changed")

    def export_transcript(self) -> None:
        """Write the current (or last) session's transcript as Markdown."""
        self.run_background(self._export(), name="export transcript")

    async def _export(self) -> None:
        from voicetui import paths
        from voicetui.engine.transcript import TranscriptStore

        session_id = self.session_id
        if session_id is None:
            self.notify("no conversation to export yet", severity="warning")
            return
        store = TranscriptStore()
        markdown = await asyncio.to_thread(store.export_markdown, session_id)
        out = paths.data_dir() / "exports" / f"{session_id}.md"
        await asyncio.to_thread(_write_private, out, markdown)
        self.notify(f"transcript saved to {out}", title="Exported", timeout=8)

    def switch_provider(self, spec_key: str) -> None:
        """Make ``spec_key`` the active provider, save it, and restart the session."""
        if self.save_config(provider=spec_key) is not None:
            return
        self.notify(f"provider: {spec_key}", timeout=3)
        self.start_session(spec_key, reason="provider switched")

    def update_provider_settings(self, spec_key: str, changes: Mapping[str, Any]) -> bool:
        """Save provider fields (voice, turn mode…) and restart the session if it is live."""
        if self.save_config(providers={spec_key: dict(changes)}) is not None:
            return False
        if self.engine is not None and spec_key == self.config.provider:
            self.start_session(spec_key, reason="settings changed")
        return True


def screenshots_dir() -> Path:
    """Where the palette's Screenshot goes (in voicetui's own data folder, which exists
    or can be made on any system; a Downloads folder may not)."""
    from voicetui import paths

    return paths.data_dir() / "screenshots"


def one_line(exc: BaseException) -> str:
    """An exception as one line for the user (its message, else its type)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _write_private(path: Path, text: str) -> None:
    from voicetui import fileio

    fileio.atomic_write(path, text.encode("utf-8"), 0o600)


def run(config_path: Path | None) -> int:
    """Launch the full-screen console; returns the process exit code."""
    from voicetui.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"voicetui: {exc}", file=sys.stderr)
        return 2
    from voicetui.stderr_guard import stderr_to_log

    # Native audio libraries write to fd 2; inside the guard that goes to the log file. The
    # App is created inside the guard so its driver renders to the real terminal.
    with stderr_to_log():
        app = VoiceTuiApp(config_path, config=config)
        result = app.run()
    return int(result or app.return_code or 0)


DEMO_WELCOME = (
    "demo: local emulators of both providers, no key, no network — press Space, say anything, "
    "press Space again; Ctrl+P switches the provider"
)


def run_demo(provider: str | None = None) -> int:
    """``voicetui demo``: the full console against the bundled emulators, started in this
    process on free loopback ports. The user's config, keys and saved conversations are not
    touched: the demo's live in a temporary folder, removed at exit."""
    import tempfile

    from voicetui.config import default_provider, load_config, update_config
    from voicetui.keys import KeyStore
    from voicetui.specs.registry import registry
    from voicetui.stderr_guard import stderr_to_log

    try:
        from voicetui.testing.demo import DEMO_KEY, start_demo_servers
    except ModuleNotFoundError as exc:  # an install without the emulators' aiohttp
        print(
            f"voicetui: error: the demo needs {exc.name}: pip install {exc.name}", file=sys.stderr
        )
        return 1
    reg = registry()
    with tempfile.TemporaryDirectory(prefix="voicetui-demo-") as tmp:
        root = Path(tmp)
        # transcripts and usage of the demo stay out of the user's own (XDG on Linux)
        for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache")):
            os.environ[var] = str(root / sub)
        servers = start_demo_servers()
        try:
            path = root / "config.toml"
            update_config(
                path,
                provider=provider or default_provider(),
                providers={key: servers.options(key) for key in servers.servers},
            )
            config = load_config(path)
            keys = KeyStore(environ={reg.api_key_env(s.key): DEMO_KEY for s in reg.all()})
            with stderr_to_log():
                app = VoiceTuiApp(path, config=config, keys=keys, welcome=DEMO_WELCOME)
                result = app.run()
        finally:
            servers.stop()
    return int(result or app.return_code or 0)
