"""Settings screen: provider, model, voice, turn mode, session limit, devices, duplex policy.

Choices come from the spec registry (providers, the turn-detection enum), the provider's
voice list (when reachable) and the audio device list. Saving goes through
``voicetui.config.update_config``, whose one-line validation message (from the spec's
schema) is shown when a value is refused. "Calibrate echo" runs the ``doctor --echo``
measurement (:mod:`voicetui.audio.calibrate`) on the chosen devices and saves the duplex
policy it implies the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from voicetui.audio.ports import DuplexPolicy
from voicetui.config import usable_models
from voicetui.engine.events import State
from voicetui.tui.screens.base import VoiceScreen
from voicetui.tui.widgets.meters import LevelMeter

if TYPE_CHECKING:
    from voicetui.audio.calibrate import EchoCalibration

DEFAULT_DEVICE = "(system default)"
TONE_HZ = 440.0
TONE_S = 0.6
CALIBRATION_SLACK_S = 6.0  # over the probe: opening both devices, the tail, closing them
# a turn in flight: the session's speaker is (or is about to be) playing a reply
TURN_STATES = frozenset({State.USER_SPEAKING, State.THINKING, State.ASSISTANT_SPEAKING})


def tone_pcm(rate: int = 24_000) -> np.ndarray[Any, np.dtype[np.int16]]:
    """A short 440 Hz test tone with 20 ms fades (no clicks), int16 mono."""
    t = np.arange(int(rate * TONE_S)) / rate
    wave = 0.3 * np.sin(2 * np.pi * TONE_HZ * t)
    fade = int(rate * 0.02)
    ramp = np.linspace(0.0, 1.0, fade)
    wave[:fade] *= ramp
    wave[-fade:] *= ramp[::-1]
    pcm: np.ndarray[Any, np.dtype[np.int16]] = (wave * 32767).astype(np.int16)
    return pcm


class SettingsScreen(VoiceScreen):
    """Edit and save the TOML config."""

    CSS_PATH = Path(__file__).with_name("settings.tcss")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._loading = False
        self._calibrating = False

    def compose(self) -> ComposeResult:
        from voicetui.specs.registry import registry

        cfg = self.vapp.config
        providers = [(f"{s.meta.title} ({s.meta.key})", s.meta.key) for s in registry().all()]
        yield Header(show_clock=False)
        yield Static("Settings", classes="screen-title")
        where = (
            f"config file: {cfg.path}"
            if cfg.from_file
            else f"config file: {cfg.path} (not written yet: defaults in use)"
        )
        yield Static(
            f"{where} — Ctrl+S writes only what you change", classes="hint", id="config-path"
        )
        with VerticalScroll(id="settings-form"):
            with Horizontal(classes="field"):
                yield Label("Provider", classes="field-label")
                yield Select(providers, value=cfg.provider, allow_blank=False, id="provider")
            with Horizontal(classes="field"):
                yield Label("Model", classes="field-label")
                yield Input(id="model")
            with Horizontal(classes="field"):
                yield Label("Voice", classes="field-label")
                # the configured voice until the provider's list arrives (no stale placeholder)
                voice = str(cfg.provider_options(cfg.provider).get("defaultVoice", ""))
                yield Select[str](
                    [(self._voice_label(cfg.provider, voice), voice)],
                    value=voice,
                    id="voice",
                    allow_blank=False,
                )
            with Horizontal(classes="field"):
                yield Label("Turn mode", classes="field-label")
                yield Select(turn_modes(cfg.provider), id="turn-mode", allow_blank=False)
            with Horizontal(classes="field"):
                yield Label("Max session (s)", classes="field-label")
                yield Input(id="max-duration", type="number")
            with Horizontal(classes="field"):
                yield Label("Microphone", classes="field-label")
                yield Select([(DEFAULT_DEVICE, "")], id="input-device", allow_blank=False)
                yield Button("Test mic", id="test-mic")
                yield Button("Calibrate echo", id="calibrate-echo")
            yield LevelMeter("mic", id="settings-mic-meter")
            yield Static("", id="echo-result")
            with Horizontal(classes="field"):
                yield Label("Speaker", classes="field-label")
                yield Select([(DEFAULT_DEVICE, "")], id="output-device", allow_blank=False)
                yield Button("Test tone", id="test-tone")
            with Horizontal(classes="field"):
                yield Label("Duplex policy", classes="field-label")
                yield Select(
                    [
                        ("aec — echo cancellation (speakers)", DuplexPolicy.AEC.value),
                        (
                            "gated — barge-in must beat the echo (speakers)",
                            DuplexPolicy.GATED.value,
                        ),
                        ("half — mic closed while the assistant talks", DuplexPolicy.HALF.value),
                        ("full — headphones or hardware echo cancel", DuplexPolicy.FULL.value),
                    ],
                    value=DuplexPolicy(cfg.audio.duplex).value,
                    allow_blank=False,
                    id="duplex",
                )
            yield Static("", id="settings-error", classes="error-line")
            with Horizontal(id="settings-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        if self.vapp.frozen:
            for field in self.query(Input):
                field.cursor_blink = False
        self._load_provider(self.vapp.config.provider)
        self._fill_devices()
        if not self.vapp.frozen:
            self.run_worker(self._scan_devices(), group="devices", exit_on_error=False)

    # --- filling the form ------------------------------------------------------------------

    def _load_provider(self, spec_key: str) -> None:
        from voicetui.specs.registry import registry

        spec = registry().get(spec_key)
        opts = self.vapp.config.provider_options(spec_key)
        model_input = self.query_one("#model", Input)
        model_input.value = str(opts.get("model", ""))
        # completion offers the catalogue's usable models (retired ones never)
        models = [model for model, _label in usable_models(spec_key)]
        model_input.suggester = SuggestFromList(models, case_sensitive=False)
        self.query_one("#max-duration", Input).value = _number(
            opts.get("maxSessionDurationSeconds")
        )
        options = turn_modes(spec_key)
        turn = self.query_one("#turn-mode", Select)
        turn.set_options(options)
        if opts.get("turnDetection") in {value for _, value in options}:
            turn.value = opts["turnDetection"]
        current = str(opts.get("defaultVoice", ""))
        example = str(spec.config_schema.example.get("defaultVoice", ""))
        self._set_voices(
            spec_key,
            [(self._voice_label(spec_key, current), current)]
            + ([(self._voice_label(spec_key, example), example)] if example != current else []),
            current,
        )
        if not self.vapp.frozen:
            self.run_worker(
                self._load_voices(spec_key), group="voices", exclusive=True, exit_on_error=False
            )

    def _voice_label(self, spec_key: str, voice_id: str) -> str:
        """``Name (id)`` when the provider's voice list knows the id, else the id."""
        for voice in self.vapp.voices.get(spec_key, []):
            if voice.id == voice_id and voice.name and voice.name != voice_id:
                return f"{voice.name} ({voice_id})"
        return voice_id

    def _set_voices(self, spec_key: str, options: list[tuple[str, str]], value: str) -> None:
        voice = self.query_one("#voice", Select)
        seen: dict[str, str] = {}
        for label, vid in options:
            if vid and vid not in seen:
                seen[vid] = label
        voice.set_options([(label, vid) for vid, label in seen.items()])
        if value in seen:
            voice.value = value

    async def _load_voices(self, spec_key: str) -> None:
        voices = await self.vapp.fetch_voices(spec_key)
        if self.query_one("#provider", Select).value != spec_key:
            return
        current = self.query_one("#voice", Select).value
        keep = current if isinstance(current, str) else ""
        options = [(f"{v.name} ({v.id})" if v.name != v.id else v.id, v.id) for v in voices]
        if keep and keep not in {v.id for v in voices}:
            options.insert(0, (keep, keep))
        self._set_voices(spec_key, options, keep)

    def _fill_devices(self) -> None:
        audio = self.vapp.config.audio
        inputs = [d.name for d in self.vapp.devices if d.is_input]
        outputs = [d.name for d in self.vapp.devices if d.is_output]
        for select_id, names, current in (
            ("#input-device", inputs, audio.input_device),
            ("#output-device", outputs, audio.output_device),
        ):
            select = self.query_one(select_id, Select)
            options = [(DEFAULT_DEVICE, "")]
            if current and current not in names:
                options.append((f"{current} (not found)", current))
            options += [(name, name) for name in names]
            select.set_options(options)
            select.value = current or ""

    async def _scan_devices(self) -> None:
        await self.vapp.refresh_devices()
        self._fill_devices()

    @on(Select.Changed, "#provider")
    def _provider_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self._load_provider(event.value)

    # --- device tests ----------------------------------------------------------------------

    def _device(self, select_id: str) -> str | None:
        value = self.query_one(select_id, Select).value
        return value if isinstance(value, str) and value else None

    def _stop_mic_test(self) -> bool:
        """Stop a running mic test; True if one was running."""
        running = [w for w in self.workers if w.group == "mic-test" and w.is_running]
        for worker in running:
            worker.cancel()
        if running:
            self.query_one("#test-mic", Button).label = "Test mic"
            self.query_one("#settings-mic-meter", LevelMeter).set_level(-120)
        return bool(running)

    @on(Button.Pressed, "#test-mic")
    def _toggle_mic(self) -> None:
        if self._stop_mic_test():
            return
        if self._calibrating:  # (see _calibrate_pressed)
            self._echo_line("wait for the echo calibration to finish, then test the mic")
            return
        button = self.query_one("#test-mic", Button)
        button.label = "Stop mic"
        self.run_worker(
            self._mic_test(self._device("#input-device")),
            group="mic-test",
            exclusive=True,
            exit_on_error=False,
        )

    async def _mic_test(self, device: str | None) -> None:
        from voicetui.audio.errors import AudioError
        from voicetui.audio.factory import AudioOptions, open_audio

        meter = self.query_one("#settings-mic-meter", LevelMeter)
        # The test has its own stream; the live conversation must not hear it (with server
        # VAD it would start a real turn), so its microphone is muted meanwhile.
        engine = self.vapp.engine
        paused = engine is not None and not engine.muted
        if engine is not None and paused:
            engine.set_muted(True)
            self.app.notify("conversation microphone paused while the mic test runs", timeout=3)
        rig = open_audio(AudioOptions(input_device=device))
        try:
            try:
                await rig.input.start()
            except AudioError as exc:
                self._error(str(exc))
                self.query_one("#test-mic", Button).label = "Test mic"
                return
            try:
                async for frame in rig.input.frames():
                    meter.set_level(frame.rms_dbfs)
            finally:
                await rig.input.stop()
        finally:
            if engine is not None and paused and self.vapp.engine is engine:
                engine.set_muted(False)

    @on(Button.Pressed, "#test-tone")
    def _tone(self) -> None:
        if self._calibrating:  # a tone in the middle of the probe would be measured as echo
            self._echo_line("wait for the echo calibration to finish, then test the tone")
            return
        self.run_worker(
            self._play_tone(self._device("#output-device")),
            group="tone",
            exclusive=True,
            exit_on_error=False,
        )

    async def _play_tone(self, device: str | None) -> None:
        from voicetui.audio.errors import AudioError
        from voicetui.audio.factory import AudioOptions, open_audio

        rig = open_audio(AudioOptions(output_device=device))
        try:
            await rig.output.start()
        except AudioError as exc:
            self._error(str(exc))
            return
        try:
            rig.output.enqueue("test-tone", tone_pcm())
            await asyncio.wait_for(rig.output.wait_idle(), timeout=TONE_S + 3)
            self.app.notify(
                f"played a {TONE_HZ:.0f} Hz tone on {device or 'the default speaker'}", timeout=3
            )
        finally:
            await rig.output.stop()

    # --- echo calibration ------------------------------------------------------------------

    def _echo_line(self, text: str, *, error: bool = False) -> None:
        line = self.query_one("#echo-result", Static)
        line.update(text)
        line.set_class(bool(text), "-shown")
        line.set_class(error, "-error")
        if text:  # below the fold on a small terminal: bring it (and the button) into view
            self.call_after_refresh(line.scroll_visible, animate=False)

    @on(Button.Pressed, "#calibrate-echo")
    def _calibrate_pressed(self) -> None:
        from voicetui.audio.calibrate import PROBE_S

        if self._calibrating:
            return
        engine = self.vapp.engine
        # While a turn is in flight the session's speaker plays (or is about to play) the
        # reply: it would sound over the probe and spoil the measurement, and cutting the
        # assistant off mid-sentence for a setting is not what anyone pressing this expects.
        if engine is not None and (engine.talking or engine.state in TURN_STATES):
            self._echo_line(
                "a turn is under way (you or the assistant speaking): calibrate once the "
                "conversation is listening again",
                error=True,
            )
            return
        # one device test at a time: a mic test left running would go on beside the session
        # started afterwards, which it has not paused
        self._stop_mic_test()
        self._calibrating = True
        self.query_one("#calibrate-echo", Button).label = "Calibrating…"
        self._echo_line(f"echo calibration: playing a {PROBE_S:.0f} s probe and listening…")
        self.run_worker(
            self._calibrate(self._device("#input-device"), self._device("#output-device")),
            name="echo calibration",
            group="echo-calibration",
            exclusive=True,
            exit_on_error=False,
        )

    async def _calibrate(self, input_device: str | None, output_device: str | None) -> None:
        from voicetui.audio.aec import aec_available
        from voicetui.audio.calibrate import PROBE_S, calibrate_echo, config_changes
        from voicetui.audio.errors import AudioError, AudioErrorCode
        from voicetui.audio.factory import AudioOptions
        from voicetui.tui.app import one_line

        audio = self.vapp.config.audio
        options = AudioOptions(
            input_device=input_device,
            output_device=output_device,
            block_ms=audio.block_ms,
            prebuffer_ms=audio.prebuffer_ms,
        )
        # The probe gets the devices to itself, as the mic test has its own streams: an idle
        # live session is ended rather than muted, because its open speaker could still play
        # a late reply over the probe, its mic would send the probe noise to the provider (a
        # turn, with server VAD), and a device opened exclusively would be busy. The new
        # policy only applies to a new session anyway, so one is started afterwards.
        resume = self.vapp.engine is not None
        if resume:
            await self.vapp.end_session("calibrating echo")
        try:
            # WebRTC's first import takes a moment: in a thread, not on the UI's loop
            await asyncio.to_thread(aec_available)
            async with asyncio.timeout(PROBE_S + CALIBRATION_SLACK_S):
                result = await calibrate_echo(options)
        except TimeoutError:
            self._calibration_failed(
                "the devices did not play and record the probe in time: close other programs "
                "using them (or pick other devices) and calibrate again"
            )
        except AudioError as exc:
            hint = (
                ": close the program using it or pick another device, then calibrate again"
                if exc.code is AudioErrorCode.STREAM_ERROR
                else ""
            )
            self._calibration_failed(f"{exc.message}{hint}")
        except Exception as exc:  # a driver's own failure: one line, not a traceback
            self._calibration_failed(f"{type(exc).__name__}: {one_line(exc)}")
        else:
            # The measurement holds for the devices it ran on: the ones chosen in the form are
            # saved with it (nothing is written for those already saved).
            changes = config_changes(result) | {
                "input_device": input_device,
                "output_device": output_device,
            }
            self._calibration_done(result, changes)
        finally:
            self._calibrating = False
            if resume and self.app.is_running:  # not while the app shuts down
                self.vapp.start_session(reason="echo calibrated")
        self.query_one("#calibrate-echo", Button).label = "Calibrate echo"

    def _calibration_failed(self, text: str) -> None:
        self._echo_line(f"echo calibration failed: {text}", error=True)

    def _calibration_done(self, result: EchoCalibration, changes: dict[str, object]) -> None:
        report = calibration_report(result)
        # the app's own comment-keeping writer (tomlkit), as Save uses
        error = self.vapp.save_config(audio=changes)
        if error is not None:
            self._echo_line(f"{report} Not saved: {error}", error=True)
            return
        self.query_one("#duplex", Select).value = result.policy.value
        self._echo_line(f"{report} Saved.")

    # --- saving ----------------------------------------------------------------------------

    def _error(self, text: str) -> None:
        self.query_one("#settings-error", Static).update(text)

    def _changes(self) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        provider = self.query_one("#provider", Select).value
        if not isinstance(provider, str):
            self._error("choose a provider")
            return None
        fields: dict[str, Any] = {}
        model = self.query_one("#model", Input).value.strip()
        if model:
            fields["model"] = model
        voice = self.query_one("#voice", Select).value
        if isinstance(voice, str) and voice:
            fields["defaultVoice"] = voice
        turn = self.query_one("#turn-mode", Select).value
        if isinstance(turn, str):
            fields["turnDetection"] = turn
        raw = self.query_one("#max-duration", Input).value.strip()
        if raw:
            try:
                number = float(raw)
            except ValueError:
                self._error(f"max session duration: {raw!r} is not a number of seconds")
                return None
            fields["maxSessionDurationSeconds"] = int(number) if number.is_integer() else number
        duplex = self.query_one("#duplex", Select).value
        audio: dict[str, Any] = {
            "input_device": self._device("#input-device"),
            "output_device": self._device("#output-device"),
            "duplex": duplex if isinstance(duplex, str) else None,
        }
        return provider, fields, audio

    def action_save(self) -> None:
        """Validate and write the config; restart a live session to apply it."""
        changes = self._changes()
        if changes is None:
            return
        provider, fields, audio = changes
        before = self.vapp.config
        error = self.vapp.save_config(provider=provider, providers={provider: fields}, audio=audio)
        if error is not None:
            self._error(error)
            return
        self._error("")
        self.app.notify("settings saved", timeout=3)
        after = self.vapp.config
        if self.vapp.engine is not None and (
            after.provider != before.provider
            or after.provider_options(after.provider) != before.provider_options(after.provider)
            or after.audio != before.audio
        ):
            self.vapp.start_session(reason="settings changed")
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_back()

    def action_back(self) -> None:
        self.dismiss(None)


def turn_modes(spec_key: str) -> list[tuple[str, str]]:
    """The spec's turnDetection enum as Select options."""
    from voicetui.specs.registry import registry

    schema = registry().get(spec_key).config_schema.schema
    modes = schema.get("properties", {}).get("turnDetection", {}).get("enum", [])
    # the label is the config value itself, so what the UI says is what the TOML needs
    return [(str(m), str(m)) for m in modes]


def calibration_report(result: EchoCalibration) -> str:
    """An echo calibration in plain words: what came back, and the duplex policy chosen and
    why (headphones -> full; an echo and AEC -> aec; an echo and no AEC -> gated)."""
    from voicetui.audio.duplex import NO_ECHO_PATH_DB

    if result.delay_ms is None:
        loss = max(result.echo_return_loss_db, -NO_ECHO_PATH_DB)
        return (
            f"No echo came back (the speaker is {loss:.0f} dB or more under in the "
            "microphone: headphones?). Duplex policy: full — the microphone stays open while "
            "the assistant talks."
        )
    heard = (
        f"Echo {result.delay_ms:.0f} ms late, {result.echo_return_loss_db:.0f} dB under the "
        "speaker (echo return loss)"
    )
    if result.erle_db is not None:
        heard += f"; echo cancellation took off {result.erle_db:.0f} dB more (ERLE)"
    if result.policy is DuplexPolicy.AEC:
        why = "the microphone hears the speaker, and echo cancellation works here"
    else:
        why = (
            "echo cancellation is not available here, so your voice interrupts the assistant "
            f"only when it is clearly above an echo expected {result.echo_return_loss_db:.0f} "
            "dB under the speaker (the measured level)"
        )
    return f"{heard}. Duplex policy: {result.policy.value} — {why}."


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)
