"""The storyboard sheet: one PNG page with a chapter's keyframes, to share with a director.

A header (the drama, the chapter, how many scenes, the runtime, the date) over a grid of
panels in scene order. Each panel is the scene's chosen keyframe cover-cropped to the
chapter's aspect, a badge with its consistency score, and under it the scene number, duration
and camera, where and when, and the start of its dialog. The page is A4 portrait at the
default width and grows downwards when the scenes need more rows: a chapter is always one page.

Django-free and CPU-bound: it runs in the process pool (`studio.cpu.run_cpu`), so it takes
plain frozen dataclasses and paths, and returns the PNG's bytes. Keyframes are decoded one at
a time, shrunk while decoding where the format allows it, and pasted; one that is missing or
unreadable becomes a placeholder rather than an error.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageOps

from studio.providers.frames import ACCENT, font, wrap

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL import ImageFont

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)

# Geometry at the reference width (A4 at 300 dpi), scaled to the width asked for.
REFERENCE_WIDTH = 2480
A4_PORTRAIT = 297 / 210
SIZES = {
    "margin": 120,
    "column_gap": 60,
    "row_gap": 70,
    "kicker": 30,
    "title": 76,
    "chapter": 48,
    "stats": 36,
    "header_gap": 70,
    "rule": 6,
    "scene": 34,
    "body": 30,
    "note": 28,
    "caption_pad": 22,
    "badge": 38,
    "badge_inset": 16,
    "footer": 28,
}
# Panels per row by the shape of the frame: tall frames fit four across, wide ones two.
COLUMNS = {"9:16": 4, "1:1": 3, "16:9": 2}
DIALOG_LINES = 3

PAPER = (255, 255, 255)
INK = (28, 28, 32)
MUTED = (98, 100, 108)
FRAME_EDGE = (205, 206, 212)
PLACEHOLDER = (233, 234, 238)
PLACEHOLDER_TEXT = (128, 130, 138)
NOTE = (168, 98, 0)  # a dark amber that reads on white
BADGE = {"pass": (34, 139, 58), "fail": (200, 38, 38), "": (118, 120, 128)}
BADGE_TEXT = (255, 255, 255)
NO_KEYFRAME = "No keyframe yet"


@dataclass(frozen=True)
class SheetPanel:
    number: int  # scene number in the chapter (1-based)
    duration_s: float
    camera: str  # e.g. "slow push in", may be ""
    location: str
    time_of_day: str
    dialog: str  # an excerpt: the first line(s), "Speaker: line", may be ""
    image_path: str | None  # the chosen keyframe on disk, None when the scene has none yet
    score: float | None  # 0-100 consistency score of that keyframe, None when not scored
    verdict: str  # "pass" | "fail" | "" (no faces to check)
    note: str = ""  # e.g. "no keyframe yet", "override: rendered despite the gate"


@dataclass(frozen=True)
class SheetHeader:
    drama_title: str
    chapter_number: int
    chapter_title: str
    aspect: str  # "9:16" | "16:9" | "1:1": the panels' shape
    generated_on: str  # e.g. "2026-12-03"


@dataclass(frozen=True)
class PanelBox:
    """Where one panel's parts sit on the page."""

    thumb: Box
    badge: Box
    caption: Box


@dataclass(frozen=True)
class SheetLayout:
    width: int
    height: int
    columns: int
    rule_top: int  # the rule under the header
    footer_top: int
    panels: tuple[PanelBox, ...]


def storyboard_sheet(
    header: SheetHeader, panels: Sequence[SheetPanel], *, width: int = REFERENCE_WIDTH
) -> bytes:
    """One PNG page for the chapter: the header, then every panel in scene order (thumbnail
    at the chapter's aspect with a score badge; scene, duration and camera; location and time
    of day; the dialog excerpt in at most three lines), and a footer reading the badges."""
    layout = sheet_layout(header, len(panels), width=width)
    sheet = Image.new("RGB", (layout.width, layout.height), PAPER)
    draw = ImageDraw.Draw(sheet)
    _draw_header(draw, header, panels, layout)
    if not panels:
        top = layout.rule_top + _size("rule", width) + _size("header_gap", width)
        draw.text(
            (_size("margin", width), top), "No scenes in this chapter yet.", INK, _body(width)
        )
    for panel, box in zip(panels, layout.panels, strict=True):
        _draw_panel(sheet, draw, panel, box, width)
    _draw_footer(draw, layout)
    out = io.BytesIO()
    # A fast zlib level: the page is mostly photographs, which barely compress anyway.
    sheet.save(out, format="PNG", optimize=False, compress_level=3)
    return out.getvalue()


def sheet_layout(header: SheetHeader, count: int, *, width: int = REFERENCE_WIDTH) -> SheetLayout:
    """The page's geometry for `count` panels: their thumbnail, badge and caption boxes in
    scene order, and the page's height (A4 portrait, or taller when the rows need it)."""
    margin, column_gap, row_gap = (
        _size(name, width) for name in ("margin", "column_gap", "row_gap")
    )
    columns = columns_for(header.aspect)
    ratio_w, ratio_h = aspect_ratio(header.aspect)
    panel_w = (width - 2 * margin - (columns - 1) * column_gap) // columns
    thumb_h = round(panel_w * ratio_h / ratio_w)
    caption_h = _caption_height(width)
    badge_h = round(_size("badge", width) * 1.6)
    badge_w = round(_badge_font(width).getlength("100")) + badge_h  # room for "100"
    inset = _size("badge_inset", width)

    top = _header_height(width)
    boxes = []
    for index in range(count):
        row, column = divmod(index, columns)
        left = margin + column * (panel_w + column_gap)
        thumb_top = top + row * (thumb_h + caption_h + row_gap)
        thumb = (left, thumb_top, left + panel_w, thumb_top + thumb_h)
        badge = (
            thumb[2] - inset - badge_w,
            thumb_top + inset,
            thumb[2] - inset,
            thumb_top + inset + badge_h,
        )
        caption = (left, thumb[3], left + panel_w, thumb[3] + caption_h)
        boxes.append(PanelBox(thumb=thumb, badge=badge, caption=caption))

    rows = math.ceil(count / columns)
    grid_h = rows * (thumb_h + caption_h) + max(rows - 1, 0) * row_gap if rows else _line(width)
    footer_h = round(_size("footer", width) * 1.4)
    needed = top + grid_h + row_gap + footer_h + margin
    height = max(needed, round(width * A4_PORTRAIT))
    return SheetLayout(
        width=width,
        height=height,
        columns=columns,
        rule_top=top - _size("header_gap", width) - _size("rule", width),
        footer_top=height - margin - footer_h,
        panels=tuple(boxes),
    )


def aspect_ratio(aspect: str) -> tuple[int, int]:
    """ "9:16" as (9, 16); anything unreadable as the studio's default, vertical 9:16."""
    try:
        width, height = (int(part) for part in aspect.split(":"))
    except ValueError:
        return (9, 16)
    return (width, height) if width > 0 and height > 0 else (9, 16)


def columns_for(aspect: str) -> int:
    if aspect in COLUMNS:
        return COLUMNS[aspect]
    width, height = aspect_ratio(aspect)
    return 4 if width / height < 0.8 else 3 if width / height < 1.3 else 2


def runtime(seconds: float) -> str:
    """m:ss, rounded to the second."""
    minutes, rest = divmod(round(max(seconds, 0)), 60)
    return f"{minutes}:{rest:02d}"


def duration(seconds: float) -> str:
    return f"{round(seconds, 1):g} s"


# --- Drawing ------------------------------------------------------------------------------------


def _draw_header(
    draw: ImageDraw.ImageDraw,
    header: SheetHeader,
    panels: Sequence[SheetPanel],
    layout: SheetLayout,
) -> None:
    width = layout.width
    margin = _size("margin", width)
    right = width - margin
    kicker, title_font = (
        font(_size("kicker", width), bold=True),
        font(_size("title", width), bold=True),
    )
    chapter_font, stats_font = font(_size("chapter", width)), font(_size("stats", width), bold=True)
    date_font = font(_size("stats", width))

    count = len(panels)
    stats = (
        f"{count} scene{'' if count == 1 else 's'} · {runtime(sum(p.duration_s for p in panels))}"
    )
    stats_w = max(stats_font.getlength(stats), date_font.getlength(header.generated_on))
    text_w = int(right - margin - stats_w - _size("column_gap", width))

    y = margin
    draw.text((margin, y), "STORYBOARD", MUTED, kicker)
    y += round(_size("kicker", width) * 1.5)
    title = _one_line(header.drama_title or "Untitled drama", title_font, text_w)
    draw.text((margin, y), title, INK, title_font)
    draw.text((right, y + _size("title", width) // 4), stats, INK, stats_font, anchor="ra")
    y += round(_size("title", width) * 1.3)
    chapter = f"Chapter {header.chapter_number}"
    if header.chapter_title.strip():
        chapter += f": {header.chapter_title.strip()}"
    draw.text((margin, y), _one_line(chapter, chapter_font, text_w), MUTED, chapter_font)
    draw.text((right, y + 4), header.generated_on, MUTED, date_font, anchor="ra")
    rule_top = layout.rule_top
    draw.rectangle((margin, rule_top, right - 1, rule_top + _size("rule", width) - 1), fill=ACCENT)


def _draw_panel(
    sheet: Image.Image, draw: ImageDraw.ImageDraw, panel: SheetPanel, box: PanelBox, width: int
) -> None:
    left, top, right, bottom = box.thumb
    size = (right - left, bottom - top)
    thumbnail = load_thumbnail(panel.image_path, size)
    if thumbnail is None:
        _draw_placeholder(draw, box.thumb, unreadable=panel.image_path is not None, width=width)
    else:
        sheet.paste(thumbnail, (left, top))
        thumbnail.close()
    draw.rectangle((left - 1, top - 1, right, bottom), outline=FRAME_EDGE, width=1)
    _draw_badge(draw, panel, box.badge, width)

    text_w = right - left
    scene_font, body = font(_size("scene", width), bold=True), _body(width)
    detail_font = font(_size("scene", width))
    y = box.caption[1] + _size("caption_pad", width)
    # "Scene N" in bold, then its duration and camera in the regular face (it fits more).
    scene = _one_line(f"Scene {panel.number}", scene_font, text_w)
    draw.text((left, y), scene, INK, scene_font)
    details = "".join(
        f" · {part}" for part in (duration(panel.duration_s), panel.camera.strip()) if part
    )
    scene_w = round(scene_font.getlength(scene))
    if details and scene_w < text_w:
        details = _fit(details, detail_font, text_w - scene_w)
        draw.text((left + scene_w, y), details, INK, detail_font)
    y += round(_size("scene", width) * 1.3)
    where = " · ".join(part for part in (panel.location.strip(), panel.time_of_day.strip()) if part)
    if where:
        draw.text((left, y), _one_line(where, body, text_w), MUTED, body)
    y += _line(width)
    for line in wrap(panel.dialog, body, text_w, DIALOG_LINES):
        draw.text((left, y), _fit(line, body, text_w), INK, body)
        y += _line(width)
    note = panel.note.strip()
    # The placeholder already says so: no need to repeat it under the frame.
    if note and not (thumbnail is None and note.lower() == NO_KEYFRAME.lower()):
        note_font = font(_size("note", width), bold=True)
        draw.text((left, y), _one_line(note, note_font, text_w), NOTE, note_font)


def load_thumbnail(path: str | None, size: tuple[int, int]) -> Image.Image | None:
    """The image at `path`, upright, cover-cropped and resized to exactly `size`; None when
    there is none or it cannot be read (missing, truncated, not an image)."""
    if not path:
        return None
    try:
        with Image.open(path) as image:
            # JPEGs decode straight at a fraction of their size; both sides still cover the
            # thumbnail whichever way the EXIF orientation turns the picture.
            side = max(size)
            image.draft("RGB", (side, side))
            upright = ImageOps.exif_transpose(image).convert("RGB")
        return ImageOps.fit(upright, size, Image.Resampling.BICUBIC, centering=(0.5, 0.5))
    except (
        Exception
    ):  # Pillow's decoders fail in many ways on a broken file: none may stop the sheet
        return None


def _draw_placeholder(draw: ImageDraw.ImageDraw, box: Box, *, unreadable: bool, width: int) -> None:
    left, top, right, bottom = box
    draw.rectangle((left, top, right - 1, bottom - 1), fill=PLACEHOLDER)
    label, small = font(_size("scene", width), bold=True), font(_size("note", width))
    centre_x, centre_y = (left + right) // 2, (top + bottom) // 2
    draw.text((centre_x, centre_y), NO_KEYFRAME, PLACEHOLDER_TEXT, label, anchor="mm")
    if unreadable:
        below = centre_y + _size("scene", width)
        draw.text(
            (centre_x, below), "(the image is unreadable)", PLACEHOLDER_TEXT, small, anchor="mt"
        )


def _draw_badge(draw: ImageDraw.ImageDraw, panel: SheetPanel, box: Box, width: int) -> None:
    if panel.score is None:
        fill, text = BADGE[""], "—"
    else:
        fill, text = BADGE.get(panel.verdict, BADGE[""]), f"{round(panel.score)}"
    left, top, right, bottom = box
    draw.rounded_rectangle(
        (left, top, right - 1, bottom - 1),
        radius=(bottom - top) // 4,
        fill=fill,
        outline=PAPER,
        width=max(width // 1240, 1),
    )
    centre = ((left + right) // 2, (top + bottom) // 2)
    draw.text(centre, text, BADGE_TEXT, _badge_font(width), anchor="mm")


def _draw_footer(draw: ImageDraw.ImageDraw, layout: SheetLayout) -> None:
    width = layout.width
    margin = _size("margin", width)
    face = font(_size("footer", width))
    legend = (
        "Badges: each keyframe's face consistency score (0-100), green when it passes, "
        "red when it fails, — when not scored."
    )
    draw.text((margin, layout.footer_top), _one_line(legend, face, width - 2 * margin), MUTED, face)
    draw.text((width - margin, layout.footer_top), "Drama Studio", MUTED, face, anchor="ra")


# --- Measures -----------------------------------------------------------------------------------


def _size(name: str, width: int) -> int:
    return max(round(SIZES[name] * width / REFERENCE_WIDTH), 1 if name.endswith("rule") else 6)


def _body(width: int) -> ImageFont.FreeTypeFont:
    return font(_size("body", width))


def _badge_font(width: int) -> ImageFont.FreeTypeFont:
    return font(_size("badge", width), bold=True)


def _line(width: int) -> int:
    return round(_size("body", width) * 1.35)


def _caption_lines_height(width: int) -> int:
    """The heading, where and when, and the dialog's lines."""
    return round(_size("scene", width) * 1.3) + (1 + DIALOG_LINES) * _line(width)


def _caption_height(width: int) -> int:
    pad = _size("caption_pad", width)
    return pad + _caption_lines_height(width) + round(_size("note", width) * 1.4) + pad


def _header_height(width: int) -> int:
    """From the page's top to the grid's: the header's three lines, the rule and a gap."""
    lines = round(_size("kicker", width) * 1.5) + round(_size("title", width) * 1.3)
    chapter = round(_size("chapter", width) * 1.5)
    gap = _size("header_gap", width)
    return _size("margin", width) + lines + chapter + gap // 2 + _size("rule", width) + gap


def _one_line(text: str, face: ImageFont.FreeTypeFont, width: int) -> str:
    lines = wrap(text, face, width, 1)
    return _fit(lines[0], face, width) if lines else ""


def _fit(line: str, face: ImageFont.FreeTypeFont, width: int) -> str:
    """A line that `wrap` could not break (one long word, text without spaces) cut to `width`."""
    if face.getlength(line) <= width:
        return line
    low, high = 0, len(line)  # the longest prefix that fits with the ellipsis
    while low < high:
        middle = (low + high + 1) // 2
        if face.getlength(line[:middle] + "…") <= width:
            low = middle
        else:
            high = middle - 1
    return line[:low].rstrip() + "…"
