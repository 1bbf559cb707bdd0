"""Still images for the animatic and video references: face-centred crops, plates, text layers.

All of this runs once per shot, never per frame: the renderer only crops, scales and blends
what is prepared here. A face box (left, top, right, bottom) centres the crop on the face; with
none, the crop centres on the upper middle of the picture, where a portrait's face usually is.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import threading
from collections import OrderedDict

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from studio.providers.base import CastMember

# Faces fill about this share of the frame height: a medium shot, and a close-up.
FACE_SHARE = {"medium": 0.24, "close": 0.45}
# Where the face sits without a detected box: horizontally centred, 38 % down the picture.
DEFAULT_FACE_CENTRE = (0.5, 0.38)
ACCENT = (245, 185, 66)
TINTS = {
    "dawn": ((255, 186, 150), 0.16),
    "day": ((255, 248, 235), 0.06),
    "dusk": ((255, 128, 80), 0.20),
    "night": ((40, 60, 130), 0.34),
}
FONT_FILES = {
    False: ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    True: ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
}


@functools.lru_cache(maxsize=32)
def font(size: int, *, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu when the system has it, else Pillow's bundled font (always present)."""
    for candidate in FONT_FILES[bold]:
        if os.path.isabs(candidate) and not os.path.exists(candidate):
            continue
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


# Reference frames already made: a chapter sends the same portraits with scene after scene.
REFERENCE_FRAMES_KEPT = 64
_reference_frames: OrderedDict[tuple, bytes] = OrderedDict()
_reference_frames_lock = threading.Lock()


def load_image(member: CastMember) -> Image.Image | None:
    """The member's reference as upright RGB, or None when it has none or it is unreadable."""
    return decode_image(member.image_bytes())


def decode_image(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def face_crop_box(
    size: tuple[int, int],
    *,
    aspect: float,
    box: tuple[int, int, int, int] | None = None,
    framing: str = "medium",
) -> tuple[int, int, int, int]:
    """A crop of an image of `size` with width/height `aspect`, centred on the face.

    With a face box the crop is scaled so the face fills FACE_SHARE of its height; without
    one it is the largest crop that fits, centred on the upper middle (tighter for a close-up).
    The crop never leaves the image; it shrinks (keeping `aspect`) when it would.
    """
    width, height = size
    if box is not None:
        left, top, right, bottom = box
        centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
        face = max(right - left, bottom - top, 1)
        crop_h = face / FACE_SHARE.get(framing, FACE_SHARE["medium"])
        # The face sits a little above the middle of the crop, like a portrait.
        centre_y += crop_h * 0.08
    else:
        centre_x, centre_y = width * DEFAULT_FACE_CENTRE[0], height * DEFAULT_FACE_CENTRE[1]
        crop_h = min(height, width / aspect) * (0.6 if framing == "close" else 1.0)
        centre_y += crop_h * 0.08
    crop_w = crop_h * aspect
    scale = min(1.0, width / crop_w, height / crop_h)
    crop_w, crop_h = crop_w * scale, crop_h * scale
    left = min(max(centre_x - crop_w / 2, 0), width - crop_w)
    top = min(max(centre_y - crop_h / 2, 0), height - crop_h)
    return (round(left), round(top), round(left + crop_w), round(top + crop_h))


def face_crop(
    image: Image.Image,
    out_size: tuple[int, int],
    *,
    box: tuple[int, int, int, int] | None = None,
    framing: str = "medium",
) -> Image.Image:
    """`image` cropped around the face and resized to exactly `out_size`."""
    crop = face_crop_box(image.size, aspect=out_size[0] / out_size[1], box=box, framing=framing)
    # Bicubic with a reducing gap: close to Lanczos for photos, several times quicker.
    return image.resize(out_size, Image.Resampling.BICUBIC, box=crop, reducing_gap=3.0)


def reference_frame(member: CastMember, size: tuple[int, int], *, quality: int = 90) -> bytes:
    """The member's reference as a JPEG of exactly `size`, face-centred (video APIs want the
    reference at the output resolution). The same portrait at the same size is made once: the
    crop is deterministic, and decoding and resizing a photo is most of a submit's work."""
    data = member.image_bytes()
    digest = hashlib.blake2b(data, digest_size=16).digest() if data else None
    box = tuple(member.face_box) if member.face_box else None
    key = (digest, tuple(size), box, quality)
    with _reference_frames_lock:
        if key in _reference_frames:
            _reference_frames.move_to_end(key)
            return _reference_frames[key]
    image = decode_image(data)
    if image is None:
        raise ValueError(f"{member.name}: the reference image is missing or unreadable")
    out = io.BytesIO()
    face_crop(image, size, box=member.face_box).save(out, format="JPEG", quality=quality)
    frame = out.getvalue()
    with _reference_frames_lock:
        _reference_frames[key] = frame
        while len(_reference_frames) > REFERENCE_FRAMES_KEPT:
            _reference_frames.popitem(last=False)
    return frame


def tint(image: Image.Image, time_of_day: str) -> Image.Image:
    colour, strength = TINTS.get(time_of_day, ((0, 0, 0), 0.0))
    if not strength:
        return image
    return Image.blend(image, Image.new("RGB", image.size, colour), strength)


def backdrop(size: tuple[int, int], time_of_day: str, image: Image.Image | None) -> Image.Image:
    """A dark background: the first reference blurred and dimmed, or a time-of-day gradient."""
    if image is not None:
        small = face_crop(image, (max(size[0] // 8, 2), max(size[1] // 8, 2)))
        blurred = small.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BILINEAR)
        return Image.blend(tint(blurred, time_of_day), Image.new("RGB", size, (0, 0, 0)), 0.55)
    top, _ = TINTS.get(time_of_day, ((90, 90, 100), 0.0))
    gradient = Image.linear_gradient("L").resize(size)
    dark = Image.new("RGB", size, tuple(c // 6 for c in top))
    light = Image.new("RGB", size, tuple(c // 2 for c in top))
    return Image.composite(dark, light, gradient)


def group_plate(
    members: list[tuple[CastMember, Image.Image]],
    size: tuple[int, int],
    *,
    time_of_day: str,
    labels: bool = True,
) -> Image.Image:
    """Everyone in the shot in panels: stacked in vertical frames, side by side otherwise."""
    width, height = size
    count = len(members)
    if count <= 3:
        rows, cols = (count, 1) if height > width else (1, count)
    else:
        cols = math.ceil(math.sqrt(count))
        rows = math.ceil(count / cols)
    plate = Image.new("RGB", size, (12, 12, 14))
    gap = max(size[0] // 160, 2)
    panel_w, panel_h = (width - gap * (cols - 1)) // cols, (height - gap * (rows - 1)) // rows
    label_font = font(max(min(width, height) // 28, 12), bold=True)
    draw = ImageDraw.Draw(plate)
    for index, (member, image) in enumerate(members):
        row, col = divmod(index, cols)
        x, y = col * (panel_w + gap), row * (panel_h + gap)
        plate.paste(face_crop(image, (panel_w, panel_h), box=member.face_box), (x, y))
        if labels:  # at the panel's top: subtitles cover the bottom of the frame
            draw.text(
                (x + panel_w // 2, y + panel_h // 14),
                member.name,
                font=label_font,
                fill=(255, 255, 255),
                anchor="mt",
                stroke_width=2,
                stroke_fill=(0, 0, 0),
            )
    return tint(plate, time_of_day)


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; the last kept line ends with an ellipsis if cut."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and face.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip(".,;: ") + "…"
    return lines


def caption_layer(
    size: tuple[int, int], *, speaker: str, text: str, italic_note: bool = False
) -> Image.Image:
    """A transparent RGBA layer: a dark box near the bottom with the speaker and the line."""
    width, height = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if not text.strip():
        return layer
    base = max(min(width, height) // 20, 12)
    body, name_font = font(base), font(int(base * 0.8), bold=True)
    margin = base
    lines = wrap(text, body, width - 4 * margin, 4 if italic_note else 3)
    line_h = int(base * 1.3)
    box_h = line_h * len(lines) + (int(base * 1.2) if speaker else 0) + margin
    top = height - box_h - int(height * 0.06)
    draw = ImageDraw.Draw(layer)
    draw.rounded_rectangle(
        (margin, top, width - margin, top + box_h), radius=base // 2, fill=(0, 0, 0, 165)
    )
    y = top + margin // 2
    if speaker:
        draw.text((2 * margin, y), speaker.upper(), font=name_font, fill=(*ACCENT, 255))
        y += int(base * 1.2)
    colour = (215, 215, 215, 255) if italic_note else (255, 255, 255, 255)
    for line in lines:
        draw.text((2 * margin, y), line, font=body, fill=colour)
        y += line_h
    return layer


def tag_layer(size: tuple[int, int], text: str) -> Image.Image:
    """A small label in the top-left corner so nobody mistakes previz for a final render."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if not text:
        return layer
    base = max(min(size) // 40, 10)
    face = font(base, bold=True)
    draw = ImageDraw.Draw(layer)
    right = base + int(face.getlength(text)) + base
    draw.rounded_rectangle(
        (base // 2, base // 2, right, base // 2 + int(base * 1.8)),
        radius=base // 3,
        fill=(0, 0, 0, 140),
    )
    draw.text((base, base // 2 + base // 3), text, font=face, fill=(*ACCENT, 255))
    return layer


def title_card(
    size: tuple[int, int],
    *,
    background: Image.Image,
    title: str,
    subtitle: str,
    details: list[str],
) -> Image.Image:
    """The opening card: title, where and when, mood and camera over the dimmed backdrop."""
    width, height = size
    card = background.copy()
    draw = ImageDraw.Draw(card)
    base = max(min(width, height) // 14, 14)
    title_font, small = font(base, bold=True), font(max(base // 2, 10))
    lines = wrap(title or "Untitled scene", title_font, int(width * 0.84), 3)
    y = int(height * 0.40) - len(lines) * base // 2
    for line in lines:
        draw.text((width // 2, y), line, font=title_font, fill=(255, 255, 255), anchor="mt")
        y += int(base * 1.2)
    draw.line(
        (width * 0.35, y + base // 3, width * 0.65, y + base // 3),
        fill=ACCENT,
        width=max(base // 12, 2),
    )
    y += base
    for line in [subtitle, *details]:
        for part in wrap(line, small, int(width * 0.84), 2):
            draw.text((width // 2, y), part, font=small, fill=(225, 225, 225), anchor="mt")
            y += int(base * 0.7)
    return card
