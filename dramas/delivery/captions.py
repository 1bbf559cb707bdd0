"""Captions: the episode's subtitle files (SRT, WebVTT) and the layer burned into the picture.

The writers are our own (a few lines each, no dependency): timestamps in milliseconds, cues in
time order, numbered from 1, UTF-8 without a byte-order mark; empty and zero-length cues are
dropped. The burned layer sits inside the vertical safe area (research 2d: no text in the top
250 px, the bottom 460 px or the right 180 px of 1080x1920; scaled for other sizes), white text
with a dark outline on a translucent box, wrapped to at most three lines. Django-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from studio.providers.frames import ACCENT, font

MAX_LINES = 3
# Research 2d, for 1080x1920; left: the "centre 80 % width" rule's 10 %.
SAFE_MARGINS_1080X1920 = {"top": 250, "bottom": 460, "right": 180, "left": 108}
# Never shrink the text below this share of its normal size to fit MAX_LINES.
SMALLEST_SCALE = 0.7


@dataclass(frozen=True)
class Caption:
    """A line on screen (also `dramas.delivery.master.Caption`, where the master takes it)."""

    start_s: float  # on the episode's timeline
    end_s: float
    text: str
    speaker: str = ""


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str
    speaker: str


def cues_of(captions: Iterable[Caption]) -> list[Cue]:
    """The captions worth writing, in time order, timed in whole milliseconds."""
    cues = []
    for caption in captions:
        text = "\n".join(line.strip() for line in caption.text.strip().splitlines() if line.strip())
        start_ms, end_ms = round(caption.start_s * 1000), round(caption.end_s * 1000)
        start_ms = max(start_ms, 0)
        if text and end_ms > start_ms:
            cues.append(Cue(start_ms, end_ms, text, caption.speaker.strip()))
    return sorted(cues, key=lambda cue: (cue.start_ms, cue.end_ms))


def timestamp(ms: int, *, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def write_srt(captions: list[Caption], path: str) -> None:
    blocks = [
        f"{number}\n{timestamp(cue.start_ms, separator=',')} --> "
        f"{timestamp(cue.end_ms, separator=',')}\n{cue.text}\n"
        for number, cue in enumerate(cues_of(captions), start=1)
    ]
    _write_text(path, "\n".join(blocks))


def vtt_escape(text: str) -> str:
    # WebVTT cue text: "&" and "<" start markup, and ">" would let "-->" end the timing line.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_vtt(captions: list[Caption], path: str) -> None:
    blocks = ["WEBVTT\n"]
    for number, cue in enumerate(cues_of(captions), start=1):
        text = vtt_escape(cue.text)
        if cue.speaker:
            # A voice span: players show the line; the speaker stays machine-readable.
            text = f"<v {vtt_escape(cue.speaker)}>{text}</v>"
        timing = (
            f"{timestamp(cue.start_ms, separator='.')} --> {timestamp(cue.end_ms, separator='.')}"
        )
        blocks.append(f"{number}\n{timing}\n{text}\n")
    _write_text(path, "\n".join(blocks))


def _write_text(path: str, text: str) -> None:
    part = f"{path}.part"
    with open(part, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    os.replace(part, path)


# --- the burned layer ------------------------------------------------------------------------


def safe_area(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the area text may use, scaled from the 1080x1920 margins."""
    margins = SAFE_MARGINS_1080X1920
    return (
        round(margins["left"] * width / 1080),
        round(margins["top"] * height / 1920),
        width - round(margins["right"] * width / 1080),
        height - round(margins["bottom"] * height / 1920),
    )


# Characters a line may break before or after without a space: CJK ideographs, kana, CJK and
# fullwidth punctuation. Closing punctuation stays on the line it ends.
_CJK = "\u2e80-\u2fff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_TOKENS = re.compile(rf"\s+|[{_CJK}]|[^\s{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_CLOSING = set("，。、！？；：）」』】》〉,.!?;:)]}…")


def wrap_caption(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy wrap to `width` pixels, breaking at spaces and between CJK characters (Mandarin
    has no spaces); a word wider than the line is split where it must be. Closing punctuation
    never starts a line: the character before it goes down with it. No text is lost."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        current, space = "", False
        for token in _pieces(paragraph, face, width):
            if token.isspace():
                space = bool(current)
                continue
            spaced, space = space, False
            candidate = current + (" " if spaced else "") + token
            if not current or face.getlength(candidate) <= width:
                current = candidate
            elif token[0] in _CLOSING and not spaced and _CJK_CHAR.fullmatch(current[-1]):
                lines.append(current[:-1])
                current = current[-1] + token
            else:
                lines.append(current)
                current = token
        if current:
            lines.append(current)
    return lines


def _pieces(paragraph: str, face: ImageFont.FreeTypeFont, width: int) -> Iterator[str]:
    """The paragraph's tokens; a word wider than the line comes in pieces that fit."""
    for token in _TOKENS.findall(paragraph):
        while not token.isspace() and len(token) > 1 and face.getlength(token) > width:
            cut = _fitting_prefix(token, face, width)
            yield token[:cut]
            token = token[cut:]
        yield token


def _fitting_prefix(text: str, face: ImageFont.FreeTypeFont, width: int) -> int:
    cut = 1
    while cut < len(text) and face.getlength(text[: cut + 1]) <= width:
        cut += 1
    return cut


def caption_layer(text: str, *, width: int, height: int, speaker: str = "") -> Image.Image:
    """A transparent RGBA layer of the frame's size: the caption's box at the bottom of the safe
    area, centred in it; the speaker's name above the text when given."""
    return captions_layer([(speaker, text)], width=width, height=height)


def captions_layer(lines: list[tuple[str, str]], *, width: int, height: int) -> Image.Image:
    """Several (speaker, text) captions on screen at once, stacked in one box, first on top."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    lines = [(speaker, text) for speaker, text in lines if text.strip()]
    if not lines:
        return layer
    left, top, right, bottom = safe_area(width, height)
    base = max(round(width * 0.046), 12)
    padding = max(base // 2, 4)
    text_width = right - left - 2 * padding
    size, blocks = _fitted_blocks(lines, base=base, text_width=text_width)
    body, name_font = font(size, bold=True), font(max(round(size * 0.75), 10), bold=True)
    line_h, name_h = round(size * 1.25), round(size * 0.95)
    stroke = max(size // 16, 1)
    rows: list[tuple[str, ImageFont.FreeTypeFont, tuple, int]] = []
    for speaker, wrapped in blocks:
        if speaker:
            rows.append((speaker, name_font, (*ACCENT, 255), name_h))
        rows.extend((line, body, (255, 255, 255, 255), line_h) for line in wrapped)
    content_w = max(round(face.getlength(row)) for row, face, _, _ in rows)
    box_w = min(content_w + 2 * padding + 2 * stroke, right - left)
    box_h = sum(row_h for *_, row_h in rows) + padding + stroke
    box_left = left + (right - left - box_w) // 2
    box_top = max(bottom - box_h, top)
    draw = ImageDraw.Draw(layer)
    draw.rounded_rectangle(
        (box_left, box_top, box_left + box_w - 1, box_top + box_h - 1),  # inclusive corners
        radius=max(size // 3, 2),
        fill=(0, 0, 0, 150),
    )
    y = box_top + padding // 2
    centre = box_left + box_w // 2
    for row, face, colour, row_h in rows:
        if y + row_h > bottom:
            break  # never out of the safe area (only when the text cannot fit at all)
        draw.text(
            (centre, y),
            row,
            font=face,
            fill=colour,
            anchor="ma",
            stroke_width=stroke,
            stroke_fill=(0, 0, 0, 255),
        )
        y += row_h
    return layer


def _fitted_blocks(
    lines: list[tuple[str, str]], *, base: int, text_width: int
) -> tuple[int, list[tuple[str, list[str]]]]:
    """The largest size (down to SMALLEST_SCALE of `base`) at which each caption wraps to at most
    MAX_LINES lines; past that, the last kept line ends with an ellipsis."""
    size = base
    while True:
        face = font(size, bold=True)
        blocks = [(speaker, wrap_caption(text, face, text_width)) for speaker, text in lines]
        if all(len(wrapped) <= MAX_LINES for _, wrapped in blocks) or size <= base * SMALLEST_SCALE:
            break
        size -= max(base // 20, 1)
    trimmed = []
    for speaker, wrapped in blocks:
        if len(wrapped) > MAX_LINES:
            wrapped = wrapped[:MAX_LINES]
            last = wrapped[-1]
            while last and face.getlength(last + "…") > text_width:
                last = last[:-1]
            wrapped[-1] = last.rstrip(" ,.;:，。") + "…"
        trimmed.append((speaker, wrapped))
    return size, trimmed
