"""Keys screen: per provider, the mode in use (managed / byok), where the key comes from,
and set / rotate / test / delete for the keyring, set / test / clear for a key command.

Every keyring, command or network call runs in a worker: D-Bus, a secret manager's CLI and
health checks can take seconds. Rotation stores the new key, health-checks it with the
keyring value (the environment is ignored for that check), and puts the previous key back
when the check fails. A key command (``apiKeyCommand``) goes to config.toml through the
app's comment-keeping config edit; the key it prints stays in memory and is shown masked.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from voicetui.keys import mask
from voicetui.tui.messages import HealthUpdated
from voicetui.tui.screens.base import VoiceScreen
from voicetui.tui.widgets.key_panel import KeyPanel

if TYPE_CHECKING:
    from voicetui.health import HealthResult


class KeysScreen(VoiceScreen):
    """Bring-your-own-key management."""

    CSS_PATH = Path(__file__).with_name("keys.tcss")
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "refresh", "Refresh"),
    ]

    def __init__(self, *, first_run: bool = False, focus_provider: str | None = None) -> None:
        super().__init__()
        self.first_run = first_run
        self.focus_provider = focus_provider

    def compose(self) -> ComposeResult:
        from voicetui.specs.registry import registry

        reg = registry()
        yield Header(show_clock=False)
        yield Static("API keys", classes="screen-title")
        if self.first_run:
            active = self.focus_provider or self.vapp.config.provider
            title = reg.get(active).meta.title
            yield Static(
                f"Welcome! There is no API key for {title} yet. Paste one below and press "
                "Enter (or Set): it is stored in your OS keyring, never in a file. Or give the "
                "command that prints it from your secret manager in the command field. "
                "The console opens as soon as the key is saved.",
                classes="banner",
                id="first-run",
            )
        with VerticalScroll(id="key-panels"):
            for spec in reg.all():
                key = spec.meta.key
                yield KeyPanel(
                    key,
                    spec.meta.title,
                    env_var=reg.api_key_env(key),
                    setup_instructions=spec.byok_setup.setup_instructions,
                    docs_url=spec.docs_url,
                    input_id=f"key-{key.rsplit('.', 1)[-1]}",
                )
        yield Footer()

    def on_mount(self) -> None:
        # Opened with `k` the field of the active provider takes the typing at once.
        self.focus_provider = self.focus_provider or self.vapp.config.provider
        if self.vapp.frozen:
            for field in self.query("Input"):
                field.cursor_blink = False  # type: ignore[attr-defined]
        self.call_after_refresh(self._focus_provider)
        self.action_refresh()

    def _focus_provider(self) -> None:
        target = self.panel_for(self.focus_provider) if self.focus_provider else None
        if target is not None:
            # the key field: pasting a key is the first thing most people do here (with no
            # keyring that field is hidden, and the command field is the way)
            wanted = ".key-command-input" if target.has_class("-no-keyring") else ".key-input"
            for field in target.query(wanted):
                field.focus()
            target.scroll_visible(animate=False)

    def panel_for(self, spec_key: str | None) -> KeyPanel | None:
        """The panel of ``spec_key`` (None if unknown)."""
        for panel in self.query(KeyPanel):
            if panel.spec_key == spec_key:
                return panel
        return None

    def action_back(self) -> None:
        self.dismiss(None)

    def action_refresh(self) -> None:
        """Re-read every provider's key source."""
        self.run_worker(
            self._refresh_all(), group="keys-refresh", exclusive=True, exit_on_error=False
        )

    async def _refresh_all(self) -> None:
        # side by side: one provider's slow secret manager must not hold up the others
        await asyncio.gather(*(self._refresh(panel) for panel in self.query(KeyPanel)))

    async def _refresh(self, panel: KeyPanel) -> str:
        """Show ``panel``'s key as the app resolves it (environment > command > keyring);
        returns the source, or ``"command-failed"``."""
        from voicetui.keys import KeyCommandFailed, KeyringUnavailable, key_mode
        from voicetui.specs.registry import registry

        keys = self.vapp.keys
        command = self.vapp.config.key_command(panel.spec_key)
        # the spec's modes: a command key is `managed` only where the spec has that mode
        modes = registry().get(panel.spec_key).supported_modes
        try:
            resolved = await asyncio.to_thread(keys.get, panel.spec_key, command)
        except KeyCommandFailed as exc:
            mode = key_mode("command", modes)
            panel.show_source("command", "", mode=mode, command=command, problem=str(exc))
            return "command-failed"
        except KeyringUnavailable as exc:
            env = keys.environ.get(panel.env_var)
            panel.show_source(
                "environment" if env else "none", mask(env) if env else "", command=command
            )
            panel.show_no_keyring(exc.detail or "no Secret Service")
            self._no_keyring_banner(panel)
            return "environment" if env else "none"
        panel.show_source(
            str(resolved.source), resolved.masked, mode=resolved.mode(modes), command=command
        )
        return str(resolved.source)

    def _no_keyring_banner(self, panel: KeyPanel) -> None:
        for banner in self.query("#first-run").results(Static):
            banner.update(
                f"Welcome! There is no API key for {panel.title} yet, and no OS keyring on "
                f"this machine to keep one. Give the command that prints it from your secret "
                f"manager below, or set {panel.env_var} in the environment and start "
                "voicetui again."
            )

    @on(KeyPanel.Action)
    def _on_action(self, message: KeyPanel.Action) -> None:
        work = {
            "set": self._set,
            "rotate": self._rotate,
            "test": self._test,
            "delete": self._delete,
            "command-set": self._set_command,
            "command-test": self._test_command,
            "command-clear": self._clear_command,
        }[message.action]
        self.run_worker(
            work(message.panel, message.value),
            name=f"key {message.action}",
            group=f"key-{message.spec_key}",
            exit_on_error=False,
        )

    async def _set(self, panel: KeyPanel, value: str) -> None:
        from voicetui.keys import InvalidKey, KeyringUnavailable

        try:
            await asyncio.to_thread(self.vapp.keys.set, panel.spec_key, value)
        except InvalidKey as exc:
            panel.restore_input(value)
            panel.show_result(str(exc), ok=False)
            return
        except KeyringUnavailable as exc:
            panel.restore_input(value)
            panel.show_no_keyring(exc.detail or "no Secret Service")
            return
        source = await self._refresh(panel)
        note = ""
        if source == "environment":
            note = f" ({panel.env_var} is set and still takes precedence)"
        elif source.startswith("command"):
            note = " (the key command is set and takes precedence)"
        panel.show_result(f"saved to the OS keyring{note}", ok=True)
        self.app.notify(f"key saved for {panel.title}", timeout=3)
        # the console's health line must not keep saying "no key"
        self.vapp.run_health_checks(panel.spec_key)
        if self.first_run and panel.spec_key == self.vapp.config.provider:
            self.dismiss(None)
            self.vapp.start_session()

    async def _check_stored(self, spec_key: str) -> HealthResult:
        """Health-check the keyring's key, ignoring an environment override."""
        from voicetui.health import check
        from voicetui.keys import KeyStore

        keyring_only = KeyStore(service=self.vapp.keys.service, environ={})
        return await check(spec_key, self.vapp.config, keyring_only)

    async def _rotate(self, panel: KeyPanel, value: str) -> None:
        from voicetui.keys import InvalidKey, KeyringUnavailable

        keys = self.vapp.keys
        try:
            keys.validate(panel.spec_key, value)
            previous = await asyncio.to_thread(keys.get_stored, panel.spec_key)
            await asyncio.to_thread(keys.set, panel.spec_key, value)
        except (InvalidKey, KeyringUnavailable) as exc:
            panel.show_result(str(exc), ok=False)
            return
        panel.show_result("new key stored; checking it with the provider…", ok=True)
        result = await self._check_stored(panel.spec_key)
        self._publish_health(result)
        if str(result.status) == "ok":
            await self._refresh(panel)
            panel.show_result(f"rotated: the new key works ({result.latency_ms:.0f} ms)", ok=True)
            return
        try:
            if previous:
                await asyncio.to_thread(keys.set, panel.spec_key, previous)
            else:
                await asyncio.to_thread(keys.delete, panel.spec_key)
        except (InvalidKey, KeyringUnavailable) as exc:
            panel.show_result(
                f"new key failed and the old one could not be restored: {exc}", ok=False
            )
            return
        await self._refresh(panel)
        panel.show_result(
            f"not rotated: the new key failed ({result.status}: {result.detail}); "
            "the previous key was put back",
            ok=False,
        )

    async def _test(self, panel: KeyPanel, _value: str) -> None:
        from voicetui.health import check

        panel.show_result("testing…", ok=True)
        result = await check(panel.spec_key, self.vapp.config, self.vapp.keys)
        self._publish_health(result)
        ok = str(result.status) == "ok"
        latency = f" in {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
        panel.show_result(f"{result.status}{latency}: {result.detail}", ok=ok)

    async def _delete(self, panel: KeyPanel, _value: str) -> None:
        from voicetui.keys import KeyringUnavailable

        try:
            removed = await asyncio.to_thread(self.vapp.keys.delete, panel.spec_key)
        except KeyringUnavailable as exc:
            panel.show_result(str(exc), ok=False)
            return
        source = await self._refresh(panel)
        text = "deleted from the OS keyring" if removed else "there was no key in the keyring"
        if source == "environment":
            text += f"; {panel.env_var} still provides one"
        elif source.startswith("command"):
            text += "; the key command still provides one"
        panel.show_result(text, ok=removed)
        self.vapp.run_health_checks(panel.spec_key)

    # --- managed keys (apiKeyCommand) ------------------------------------------------------

    def _parse_command(self, panel: KeyPanel, text: str, verb: str) -> list[str] | None:
        """The typed command as argv, or None after saying (one line) why it is refused."""
        from voicetui.keycommand import parse_key_command

        try:
            argv = parse_key_command(text)
        except ValueError as exc:
            panel.show_command_result(f"{verb}: {exc}", ok=False)
            return None
        # One word that is no program: most likely the key itself, pasted in the wrong
        # field. It must not reach config.toml (nor stay on screen); the message does not
        # quote it.
        if len(argv) == 1 and "/" not in argv[0] and shutil.which(argv[0]) is None:
            panel.clear_command_input()
            panel.show_command_result(
                f"{verb}: that is no program on PATH; a key itself goes in the key field above",
                ok=False,
            )
            return None
        return argv

    async def _set_command(self, panel: KeyPanel, text: str) -> None:
        argv = self._parse_command(panel, text, "not set")
        if argv is None:
            return
        # the app's config edit (tomlkit): the user's comments and order stay
        error = self.vapp.save_config(providers={panel.spec_key: {"apiKeyCommand": argv}})
        if error is not None:
            panel.show_command_result(f"not set: {error}", ok=False)
            return
        source = await self._refresh(panel)
        if source == "command-failed":
            # _refresh shows the command's failure; say the command was saved all the same
            self.app.notify(f"key command saved for {panel.title}, but it failed", timeout=5)
        elif source == "environment":
            panel.show_command_result(
                f"key command saved to config.toml; {panel.env_var} is set and still takes "
                "precedence",
                ok=True,
            )
        else:
            panel.show_command_result("key command saved to config.toml (managed key)", ok=True)
            self.app.notify(f"key command saved for {panel.title}", timeout=3)
        self.vapp.run_health_checks(panel.spec_key)
        if source == "command" and self.first_run and panel.spec_key == self.vapp.config.provider:
            self.dismiss(None)
            self.vapp.start_session()

    async def _test_command(self, panel: KeyPanel, text: str) -> None:
        """Run the typed command (else the stored one) afresh, show the masked key or the
        failure, then health-check the provider with that key."""
        from voicetui.health import check
        from voicetui.keycommand import KeyCommandFailed, run_key_command

        if text.strip():
            argv = self._parse_command(panel, text, "not tested")
            if argv is None:
                return
        else:
            stored = self.vapp.config.key_command(panel.spec_key)
            if not stored:
                panel.show_command_result(
                    "no key command to test: type one (e.g. op read op://vault/x/key)", ok=False
                )
                return
            argv = list(stored)
        panel.show_command_result("running the command…", ok=True)
        try:
            # a secret manager may wait for an unlock: up to 10 s, never on the UI thread
            key = await asyncio.to_thread(run_key_command, argv)
        except KeyCommandFailed as exc:
            panel.show_command_result(str(exc), ok=False)
            return
        if panel.has_class("-problem") and tuple(argv) == self.vapp.config.key_command(
            panel.spec_key
        ):
            await self._refresh(panel)  # the stored command works now: drop its old failure
        shown = f"command ok: {mask(key)}"
        panel.show_command_result(f"{shown}; checking it with the provider…", ok=True)
        result = await check(panel.spec_key, self.vapp.config, self.vapp.keys, api_key=key)
        self._publish_health(result)
        latency = f" in {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
        panel.show_command_result(
            f"{shown} · {result.status}{latency}: {result.detail}", ok=result.ok
        )

    async def _clear_command(self, panel: KeyPanel, _value: str) -> None:
        had = self.vapp.config.key_command(panel.spec_key) is not None
        # None removes just that key from the provider's table
        error = self.vapp.save_config(providers={panel.spec_key: {"apiKeyCommand": None}})
        if error is not None:
            panel.show_command_result(f"not cleared: {error}", ok=False)
            return
        panel.clear_command_input()
        source = await self._refresh(panel)
        text = "key command removed from config.toml" if had else "there was no key command"
        if had and source != "none":
            text += (
                f"; the key now comes from the {'OS keyring' if source == 'keyring' else source}"
            )
        panel.show_command_result(text, ok=True)
        if had:
            self.vapp.run_health_checks(panel.spec_key)

    def _publish_health(self, result: HealthResult) -> None:
        self.vapp.health[result.provider] = result
        self.vapp.console_screen.post_message(HealthUpdated([result]))
