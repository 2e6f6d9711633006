"""The sound path: devices, capture, jitter-buffered playback, resampling, levels, VAD, echo
gating and WAV endpoints. Headless (no Textual) and lazy: nothing here imports sounddevice
until a device is listed or opened.

Map: ``ports`` (the contracts), ``factory.open_audio`` (build a rig from the settings),
``devices`` (list/choose/probe; ``voicetui devices``), ``stream`` (what both device streams
share: open, close, device-lost watchdog), ``capture`` (device mic), ``playback``
(device speaker) over ``jitter`` (the buffer), ``wav`` (file mic/speaker), ``resample``,
``level``, ``vad`` (webrtcvad + ``LocalTurnDetector``), ``framing`` (frames, pre-roll),
``duplex`` (the barge-in gate), ``errors``, ``sd_loader`` (guarded import, rescan),
``analysis`` (measurements for self-tests and benchmarks), ``stats``.
"""
