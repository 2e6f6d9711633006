"""One provider's key management block on the keys screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Static

from voicetui.keys import MAX_KEY_LENGTH
from voicetui.specs.registry import registry


class KeyPanel(Vertical):
    """Source, masked key, a masked input and set / rotate / test / delete for a provider."""

    class Action(Message):
        """A button (or Enter in the input) asked for ``action`` on ``spec_key``."""

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

    def compose(self) -> ComposeResult:
        yield Static("source: checking…", classes="key-source")
        with Horizontal(classes="key-row"):
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
        yield Static("", classes="key-result")
        yield Static("", classes="key-no-keyring")
        # Written for this screen (the spec's setup sentence is about the whole integration).
        yield Static(
            "Paste the key and press Enter: it goes to your OS keyring, never to a file. "
            f"Or set {self.env_var} in the environment (it overrides the keyring).",
            classes="key-help key-help-keyring",
        )
        yield Static(f"Docs: {self.docs_url}", classes="key-help")
        source = registry().source(self.spec_key)
        if source.key_steps:
            steps = "\n".join(f"  {i}. {step}" for i, step in enumerate(source.key_steps, 1))
            vendor = source.alias.capitalize()
            yield Static(f"How to get a {vendor} API key:\n{steps}", classes="key-steps")

    def show_source(self, source: str, masked: str) -> None:
        """Show where the key comes from and its mask."""
        where = {
            "keyring": "OS keyring",
            "environment": f"environment ({self.env_var})",
            "none": "none — no key yet",
        }.get(source, source)
        key = f"   key: {masked}" if masked else ""
        self.query_one(".key-source", Static).update(f"source: {where}{key}")
        self.set_class(source == "none", "-missing")

    def show_no_keyring(self, reason: str) -> None:
        """No OS keyring: no dead field — say how to give the key through the environment."""
        self.add_class("-no-keyring")
        self.query_one(".key-no-keyring", Static).update(
            f"No OS keyring on this machine ({reason}), so voicetui cannot store a key here.\n"
            f"Set {self.env_var} in the environment instead, e.g. in your shell profile:\n"
            f"  export {self.env_var}=…   then start voicetui again."
        )

    def restore_input(self, value: str) -> None:
        """Put a typed key back after a refused save, so it need not be pasted again."""
        field = self.query_one(Input)
        if not field.value:
            field.value = value

    def show_result(self, text: str, *, ok: bool) -> None:
        """Show the outcome of the last action."""
        result = self.query_one(".key-result", Static)
        result.update(text)
        result.set_class(ok, "-ok")
        result.set_class(not ok, "-bad")

    def take_input(self) -> str:
        """The typed key (and clear the field: it never lingers on screen)."""
        field = self.query_one(Input)
        value = field.value
        field.value = ""
        return value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        for action in ("set", "rotate", "test", "delete"):
            if event.button.has_class(f"key-{action}"):
                value = self.take_input() if action in ("set", "rotate") else ""
                self.post_message(self.Action(self, action, value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Action(self, "set", self.take_input()))
