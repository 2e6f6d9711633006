"""Cut the agent's streaming text into pieces worth sending to TTS.

The first piece is cut as early as it still sounds natural — at the first clause boundary
(after a couple of words) or after ~10 words — so speech can start while the agent is still
writing. Later pieces are whole sentences (long ones are split at a clause), which gives TTS
enough context for good prosody. A cut needs a punctuation mark followed by whitespace — or,
at the very end of what has arrived so far, a mark right after a letter (so the first clause
goes out with the token that completes it, not one token later); "3.5", "1,000", "e.g." and
initials are never cut.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s|$)")
_CLAUSE_END = re.compile("(?:[,;:]|\\s[\u2014\u2013-])(?=\\s|$)")  # , ; : and dashes
_WORD = re.compile(r"\S+(?=\s)")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no.", "approx.", "jr."}
)


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _final_mark_ok(buf: str, match: re.Match[str]) -> bool:
    """A mark at the very end of the buffer counts only right after a letter (the next
    token might turn "1," into "1,000"); a dash there never does."""
    if match.end() < len(buf):
        return True
    before = buf[match.start() - 1] if match.start() > 0 else ""
    return (before.isalpha() or before in "\"')") and not match.group().lstrip().startswith(
        ("\u2014", "\u2013", "-")
    )


class TextChunker:
    """Incremental splitter. ``feed`` returns the pieces completed so far; ``flush`` the rest.

    Pieces are returned stripped; joined with single spaces they give the text back.
    """

    def __init__(
        self,
        *,
        first_min_words: int = 2,
        first_max_words: int = 10,
        max_words: int = 40,
    ) -> None:
        self._buf = ""
        self._first_done = False
        self.first_min_words = first_min_words
        self.first_max_words = first_max_words
        self.max_words = max_words

    @property
    def pending(self) -> str:
        """Text received but not yet cut into a piece."""
        return self._buf

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the pieces that became complete."""
        self._buf += text
        pieces: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                pieces.append(piece)
                self._first_done = True
        return pieces

    def flush(self) -> str | None:
        """The remaining text (end of the reply), or None if nothing is left."""
        piece, self._buf = self._buf.strip(), ""
        if piece:
            self._first_done = True
            return piece
        return None

    def _find_cut(self) -> int | None:
        buf = self._buf
        sentence = self._sentence_end(buf)
        if not self._first_done:
            clause = self._clause_end(buf, self.first_min_words)
            candidates = [c for c in (sentence, clause) if c is not None]
            if candidates:
                return min(candidates)
            return self._word_limit(buf, self.first_max_words)
        if sentence is not None:
            return sentence
        if _words(buf) >= self.max_words:
            # a run-on sentence: cut at its last clause boundary, else at the word limit
            last_clause = None
            for match in _CLAUSE_END.finditer(buf):
                if (
                    _final_mark_ok(buf, match)
                    and _words(buf[: match.end()]) >= self.first_min_words
                ):
                    last_clause = match.end()
            return last_clause or self._word_limit(buf, self.max_words)
        return None

    @staticmethod
    def _sentence_end(buf: str) -> int | None:
        for match in _SENTENCE_END.finditer(buf):
            if not _final_mark_ok(buf, match):
                continue
            head = buf[: match.end()].rsplit(maxsplit=1)
            token = head[-1].lower() if head else ""
            if token in _ABBREVIATIONS:
                continue
            # initials and dotted abbreviations ("J. Smith", "U.S.") are not sentence ends
            if re.fullmatch(r"(?:[a-z]\.)+[a-z]?\.?", token):
                continue
            return match.end()
        newline = buf.find("\n")
        if newline > 0 and buf[:newline].strip():
            return newline + 1
        return None

    @staticmethod
    def _clause_end(buf: str, min_words: int) -> int | None:
        for match in _CLAUSE_END.finditer(buf):
            if _final_mark_ok(buf, match) and _words(buf[: match.end()] + " ") >= min_words:
                return match.end()
        return None

    @staticmethod
    def _word_limit(buf: str, limit: int) -> int | None:
        matches = list(_WORD.finditer(buf))
        if len(matches) >= limit:
            return matches[limit - 1].end()
        return None
