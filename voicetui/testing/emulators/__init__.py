"""Loopback emulators of the Mistral and OpenAI voice APIs (tests and benchmarks only).

They need the ``test`` extra (aiohttp). Run one by hand with
``python -m voicetui.testing.emulators.openai --port 8765`` (or ``.mistral``).
"""
