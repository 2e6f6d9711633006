"""One provider's key management block on the keys screen."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Static

from voicetui.keycommand import format_key_command
from voicetui.keys import MAX_KEY_LENGTH
from voicetui.specs.registry import registry

MAX_COMMAND_LENGTH = 4096  # an argv line; bounds a paste of a whole file
# button class -> action; the key field's Enter is "set", the command field's "command-set"
_BUTTONS = {
    "key-set": "set",
    "key-rotate": "rotate",
    "key-test": "test",
    "key-delete": "delete",
    "key-command-set": "command-set",
    "key-command-test": "command-test",
    "key-command-clear": "command-clear",
}


class KeyPanel(Vertical):
    """Mode, source and masked key of a provider; a masked input with set / rotate / test /
    delete for the keyring, and a command field with set / test / clear for a managed key."""

    class Action(Message):
        """A button (or Enter in a field) asked for ``action`` on ``spec_key``; ``value`` is
        the typed key (set, rotate) or the typed command (command-set, command-test)."""

        def __init__(self, panel: KeyPanel, action: str, value: str) -> None:
            super().__init__()
            self.panel = panel
            self.action = action
            self.value = value

        @property
        def spec_key(self) -> str:
            return self.panel.spec_key

    def __init__(
        self,
        spec_key: str,
        title: str,
        *,
        env_var: str,
        setup_instructions: str,
        docs_url: str,
        input_id: str,
    ) -> None:
        super().__init__(classes="key-panel")
        self.spec_key = spec_key
        self.title = title
        self.env_var = env_var
        self.setup_instructions = setup_instructions
        self.docs_url = docs_url
        self.input_id = input_id
        self.border_title = f"{title} · {spec_key}"
        self._shown_command: str | None = None  # the stored command last put in the field

    def compose(self) -> ComposeResult:
        yield Static("source: checking…", classes="key-source")
        with Horizontal(classes="key-row key-keyring-row"):
            yield Input(
                placeholder="paste a new API key (hidden)",
                password=True,
                max_length=MAX_KEY_LENGTH,  # bounds a pasted file: keystrokes past it are dropped
                id=self.input_id,
                classes="key-input",
            )
            yield Button("Set", id=f"{self.input_id}-set", variant="primary", classes="key-set")
            yield Button("Rotate", id=f"{self.input_id}-rotate", classes="key-rotate")
            yield Button("Test", id=f"{self.input_id}-test", classes="key-test")
            yield Button(
                "Delete", id=f"{self.input_id}-delete", variant="error", classes="key-delete"
            )
        yield Static("", classes="key-result -empty")
        yield Static("", classes="key-no-keyring")
        # Written for this screen (the spec's setup sentence is about the whole integration).
        yield Static(
            "Paste the key and press Enter: it goes to your OS keyring, never to a file. "
            f"{self.env_var} in the environment overrides it.",
            classes="key-help key-help-keyring",
        )
        alias = self.spec_key.rsplit(".", 1)[-1]
        with Horizontal(classes="key-row key-command-row"):
            yield Input(
                placeholder=f"key command, e.g. op read op://vault/{alias}/key",
                max_length=MAX_COMMAND_LENGTH,
                id=f"{self.input_id}-command",
                classes="key-command-input",
            )
            yield Button(
                "Set command", id=f"{self.input_id}-command-set", classes="key-command-set"
            )
            yield Button(
                "Test command", id=f"{self.input_id}-command-test", classes="key-command-test"
            )
            yield Button(
                "Clear command", id=f"{self.input_id}-command-clear", classes="key-command-clear"
            )
        yield Static("", classes="key-command-result -empty")
        yield Static(
            "Managed key: a command printing the key (a password manager's CLI), run without "
            "a shell when the key is needed; the key stays in memory. It is saved as "
            "apiKeyCommand in config.toml. Precedence: environment > command > keyring.",
            classes="key-help",
        )
        yield Static(f"Docs: {self.docs_url}", classes="key-help")
        source = registry().source(self.spec_key)
        if source.key_steps:
            steps = "\n".join(f"  {i}. {step}" for i, step in enumerate(source.key_steps, 1))
            vendor = source.alias.capitalize()
            yield Static(f"How to get a {vendor} API key:\n{steps}", classes="key-steps")

    def show_source(
        self,
        source: str,
        masked: str,
        *,
        mode: str = "byok",
        command: Sequence[str] | None = None,
        problem: str | None = None,
    ) -> None:
        """Show the mode in use, where the key comes from and its mask. ``command`` is the
        configured ``apiKeyCommand`` (its line says whether it is in use); ``problem`` is
        the one-line failure of that command."""
        where = {
            "keyring": "OS keyring",
            "environment": f"environment ({self.env_var})",
            "none": "none — no key yet",
        }.get(source, source)
        if problem is not None:
            key = "   key: none (the command failed)"
        else:
            key = f"   key: {masked}" if masked else ""
        self.query_one(".key-source", Static).update(f"mode: {mode}   source: {where}{key}")
        was_problem = self.has_class("-problem")
        self.set_class(source == "none", "-missing")
        self.set_class(problem is not None, "-problem")
        if was_problem and problem is None:
            self.show_command_result("", ok=True)  # the old failure no longer holds
        self.show_command(command, overridden=source == "environment")
        if problem is not None:
            self.show_command_result(problem, ok=False)

    def show_command(self, command: Sequence[str] | None, *, overridden: bool = False) -> None:
        """Put the stored ``apiKeyCommand`` (shell-quoted) in the command field, and say
        when the environment overrides it."""
        field = self.query_one(".key-command-input", Input)
        shown = format_key_command(command) if command else ""
        # only when the stored command changed: a refresh must not undo the user's typing
        if shown != self._shown_command:
            field.value = shown
            self._shown_command = shown
        if overridden and command:
            self.show_command_result(
                f"the key command is not used: {self.env_var} is set and takes precedence",
                ok=False,
            )

    def show_command_result(self, text: str, *, ok: bool) -> None:
        """Show the outcome of the last command action (one line)."""
        self._show(".key-command-result", text, ok=ok)

    def show_no_keyring(self, reason: str) -> None:
        """No OS keyring: no dead field — say how to give the key through the environment."""
        self.add_class("-no-keyring")
        if self.query_one(".key-input", Input).has_focus:
            # the key field is hidden now: the command field is what works here
            self.query_one(".key-command-input", Input).focus()
        self.query_one(".key-no-keyring", Static).update(
            f"No OS keyring on this machine ({reason}), so voicetui cannot store a key here.\n"
            f"Set {self.env_var} in the environment instead, e.g. in your shell profile:\n"
            f"  export {self.env_var}=…   then start voicetui again.\n"
            "Or give a key command below (a password manager's CLI printing the key)."
        )

    def restore_input(self, value: str) -> None:
        """Put a typed key back after a refused save, so it need not be pasted again."""
        field = self.query_one(".key-input", Input)
        if not field.value:
            field.value = value

    def show_result(self, text: str, *, ok: bool) -> None:
        """Show the outcome of the last action."""
        self._show(".key-result", text, ok=ok)

    def _show(self, selector: str, text: str, *, ok: bool) -> None:
        result = self.query_one(selector, Static)
        result.update(text)
        result.set_class(not text, "-empty")
        result.set_class(ok, "-ok")
        result.set_class(not ok, "-bad")

    def take_input(self) -> str:
        """The typed key (and clear the field: it never lingers on screen)."""
        field = self.query_one(".key-input", Input)
        value = field.value
        field.value = ""
        return value

    def command_text(self) -> str:
        """What is typed in the command field (it stays: a command is no secret)."""
        return self.query_one(".key-command-input", Input).value

    def clear_command_input(self) -> None:
        """Empty the command field (after a refused entry that may have been a pasted key)."""
        self.query_one(".key-command-input", Input).value = ""

    def _request(self, action: str) -> None:
        if action in ("set", "rotate"):
            value = self.take_input()
        elif action in ("command-set", "command-test"):
            value = self.command_text()
        else:
            value = ""
        self.post_message(self.Action(self, action, value))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        for css_class, action in _BUTTONS.items():
            if event.button.has_class(css_class):
                self._request(action)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._request("command-set" if event.input.has_class("key-command-input") else "set")
