"""The storyboard sheet (dramas/storyboard_sheet.py): one PNG page of a chapter's keyframes,
read back with Pillow and checked at the places `sheet_layout` says its parts are."""

import io
import pickle

import pytest
from PIL import Image

from dramas.storyboard_sheet import (
    BADGE,
    PAPER,
    PLACEHOLDER,
    SheetHeader,
    SheetPanel,
    runtime,
    sheet_layout,
    storyboard_sheet,
)
from studio import cpu

ASPECTS = ("9:16", "16:9", "1:1")
COLOURS = [
    (220, 40, 40),
    (40, 180, 60),
    (40, 70, 220),
    (240, 200, 30),
    (150, 40, 170),
    (30, 190, 200),
    (250, 130, 20),
    (120, 120, 40),
]
SMALL = 1240  # half the default width: the same layout, a quarter of the pixels


def create_header(*, aspect: str = "9:16") -> SheetHeader:
    return SheetHeader(
        drama_title="The Jade Letter",
        chapter_number=2,
        chapter_title="Harbour lights",
        aspect=aspect,
        generated_on="2026-12-03",
    )


def create_panel(
    *,
    number: int = 1,
    image_path: str | None = None,
    score: float | None = None,
    verdict: str = "",
    dialog: str = "Mei: Where were you last night?",
    camera: str = "slow push in",
    note: str = "",
) -> SheetPanel:
    return SheetPanel(
        number=number,
        duration_s=5,
        camera=camera,
        location="Harbour",
        time_of_day="Night",
        dialog=dialog,
        image_path=image_path,
        score=score,
        verdict=verdict,
        note=note,
    )


def create_keyframe(tmp_path, *, colour, name=None, size=(90, 160), kind="PNG") -> str:
    path = tmp_path / (name or f"keyframe-{'-'.join(map(str, colour))}.{kind.lower()}")
    Image.new("RGB", size, colour).save(path, format=kind)
    return str(path)


def render(header, panels, *, width=SMALL) -> Image.Image:
    data = storyboard_sheet(header, panels, width=width)
    sheet = Image.open(io.BytesIO(data))
    assert sheet.format == "PNG"
    return sheet.convert("RGB")


def centre(box):
    left, top, right, bottom = box
    return ((left + right) // 2, (top + bottom) // 2)


def close_to(pixel, colour, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_it_draws_one_a4_page_at_the_default_width(tmp_path):
    panels = [create_panel(image_path=create_keyframe(tmp_path, colour=COLOURS[0]), score=90)]

    data = storyboard_sheet(create_header(), panels)

    with Image.open(io.BytesIO(data)) as sheet:
        assert sheet.format == "PNG" and sheet.mode == "RGB"
        assert sheet.width == 2480 and sheet.height == round(2480 * 297 / 210)


@pytest.mark.parametrize("aspect", ASPECTS)
def test_it_grows_the_page_with_the_rows(aspect):
    header = create_header(aspect=aspect)
    few = render(header, [create_panel(number=1)])
    many = render(header, [create_panel(number=n) for n in range(1, 31)])

    assert many.width == few.width == SMALL
    assert many.height > few.height
    assert many.height == sheet_layout(header, 30, width=SMALL).height
    assert many.height < sheet_layout(header, 34, width=SMALL).height  # a row more


def test_it_shows_each_keyframe_in_its_panel_in_scene_order(tmp_path):
    header = create_header(aspect="9:16")
    panels = [
        create_panel(number=n, image_path=create_keyframe(tmp_path, colour=colour), score=80)
        for n, colour in enumerate(COLOURS, start=1)
    ]

    sheet = render(header, panels)

    boxes = sheet_layout(header, len(panels), width=SMALL).panels
    assert [sheet.getpixel(centre(box.thumb)) for box in boxes] == COLOURS


def test_it_shows_jpeg_keyframes_of_any_size(tmp_path):
    header = create_header(aspect="16:9")
    big = create_keyframe(tmp_path, colour=(40, 70, 220), size=(3000, 1700), kind="JPEG")
    tiny = create_keyframe(tmp_path, colour=(240, 200, 30), size=(9, 16), kind="JPEG")

    sheet = render(header, [create_panel(image_path=big), create_panel(image_path=tiny)])

    boxes = sheet_layout(header, 2, width=SMALL).panels
    assert close_to(sheet.getpixel(centre(boxes[0].thumb)), (40, 70, 220))
    assert close_to(sheet.getpixel(centre(boxes[1].thumb)), (240, 200, 30))


def test_it_cover_crops_a_keyframe_of_another_shape_to_the_chapters_aspect(tmp_path):
    # A wide picture in thirds: a tall frame's cover crop is all middle third, edge to edge.
    wide = Image.new("RGB", (1600, 900), (220, 40, 40))
    wide.paste((40, 180, 60), (534, 0, 1067, 900))
    wide.paste((40, 70, 220), (1067, 0, 1600, 900))
    path = tmp_path / "wide.png"
    wide.save(path)
    header = create_header(aspect="9:16")

    sheet = render(header, [create_panel(image_path=str(path))])

    left, top, right, bottom = sheet_layout(header, 1, width=SMALL).panels[0].thumb
    middle = (top + bottom) // 2
    for x in (left + 2, (left + right) // 2, right - 3):
        assert sheet.getpixel((x, middle)) == (40, 180, 60)
    assert sheet.getpixel((left + 2, bottom - 3)) == (40, 180, 60)


def test_it_draws_the_placeholder_for_a_missing_or_unreadable_keyframe(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    whole = io.BytesIO()
    Image.new("RGB", (400, 700), (220, 40, 40)).save(whole, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.getvalue()[:300])
    text = tmp_path / "notes.png"
    text.write_text("a text file with an image's name")
    good = create_keyframe(tmp_path, colour=(40, 180, 60))
    header = create_header(aspect="1:1")
    paths = [None, str(tmp_path / "gone.png"), str(corrupt), str(truncated), str(text), good]

    sheet = render(header, [create_panel(number=n, image_path=p) for n, p in enumerate(paths, 1)])

    boxes = sheet_layout(header, len(paths), width=SMALL).panels
    for box in boxes[:-1]:
        left, top, right, bottom = box.thumb
        # A quarter in from the top left: clear of the label (centre) and the badge (top right).
        assert (
            sheet.getpixel((left + (right - left) // 4, top + (bottom - top) // 4)) == PLACEHOLDER
        )
        assert sheet.getpixel(centre(box.thumb)) != (220, 40, 40)
    assert sheet.getpixel(centre(boxes[-1].thumb)) == (40, 180, 60)


def test_the_badge_is_green_for_a_pass_red_for_a_fail_and_grey_without_a_score(tmp_path):
    white = create_keyframe(tmp_path, colour=(255, 255, 255))
    header = create_header(aspect="9:16")
    panels = [
        create_panel(number=1, image_path=white, score=87, verdict="pass"),
        create_panel(number=2, image_path=white, score=41.6, verdict="fail"),
        create_panel(number=3, image_path=white),
        create_panel(number=4, score=100, verdict="pass"),  # a badge over the placeholder too
    ]

    sheet = render(header, panels, width=2480)

    def swatch(box):
        left, top, _, bottom = box.badge
        return sheet.getpixel((left + (bottom - top) // 4, (top + bottom) // 2))

    boxes = sheet_layout(header, len(panels), width=2480).panels
    red, green, blue = swatch(boxes[0])
    assert green > red + 60 and green > blue + 60
    red, green, blue = swatch(boxes[1])
    assert red > green + 100 and red > blue + 100
    assert swatch(boxes[2]) == BADGE[""]
    assert swatch(boxes[3]) == BADGE["pass"]


@pytest.mark.parametrize("count", [1, 8, 30])
@pytest.mark.parametrize("aspect", ASPECTS)
def test_it_lays_out_every_scene_in_order_for_every_aspect(tmp_path, aspect, count):
    header = create_header(aspect=aspect)
    keyframes = [create_keyframe(tmp_path, colour=colour) for colour in COLOURS]
    panels = [
        create_panel(number=n, image_path=keyframes[n % len(keyframes)], score=70, verdict="pass")
        for n in range(1, count + 1)
    ]

    sheet = render(header, panels)

    layout = sheet_layout(header, count, width=SMALL)
    assert (sheet.width, sheet.height) == (layout.width, layout.height)
    assert len(layout.panels) == count
    assert layout.columns == {"9:16": 4, "16:9": 2, "1:1": 3}[aspect]
    ratio_w, ratio_h = (int(part) for part in aspect.split(":"))
    previous = None
    for panel, box in zip(panels, layout.panels, strict=True):
        left, top, right, bottom = box.thumb
        assert (right - left) / (bottom - top) == pytest.approx(ratio_w / ratio_h, rel=0.01)
        assert left >= 0 and right <= layout.width and box.caption[3] <= layout.footer_top
        assert top > layout.rule_top
        if previous is not None:  # left to right, then the next row below
            same_row = top == previous.thumb[1] and left > previous.thumb[2]
            assert same_row or top > previous.caption[3]
        previous = box
        assert sheet.getpixel(centre(box.thumb)) == COLOURS[panel.number % len(COLOURS)]


def test_long_text_stays_inside_its_panel(tmp_path):
    header = create_header(aspect="9:16")
    long = "word " * 400
    panels = [
        create_panel(
            number=n,
            dialog=f"Mei: {long}" if n % 2 else "Jun:" + "x" * 500,  # one unbreakable word
            camera="a very long camera move " * 10,
            note="override: rendered despite the gate " * 5,
        )
        for n in range(1, 9)
    ]

    sheet = render(header, panels)

    layout = sheet_layout(header, len(panels), width=SMALL)
    for box, neighbour in zip(layout.panels[:3], layout.panels[1:4], strict=True):
        # The gutter between two panels of a row stays paper, from the frame to the caption's end.
        for x in range(box.thumb[2] + 2, neighbour.thumb[0] - 2):
            for y in range(box.caption[1], box.caption[3], 3):
                assert sheet.getpixel((x, y)) == PAPER


def test_an_empty_chapter_and_an_unknown_aspect_still_give_a_page():
    empty = render(create_header(), [])
    odd = render(create_header(aspect="cinemascope"), [create_panel()])

    assert empty.size == odd.size == (SMALL, round(SMALL * 297 / 210))
    assert sheet_layout(create_header(aspect="cinemascope"), 5, width=SMALL).columns == 4


def test_runtime_is_minutes_and_seconds():
    assert [runtime(s) for s in (0, 5, 59.6, 65.4, 600, 3725)] == [
        "0:00",
        "0:05",
        "1:00",
        "1:05",
        "10:00",
        "62:05",
    ]


async def test_it_runs_in_the_cpu_pool(tmp_path):
    header = create_header(aspect="16:9")
    panels = [
        create_panel(number=1, image_path=create_keyframe(tmp_path, colour=COLOURS[2]), score=90),
        create_panel(number=2, note="No keyframe yet"),
    ]
    assert pickle.loads(pickle.dumps((header, panels))) == (header, panels)

    data = await cpu.run_cpu(storyboard_sheet, header, panels)

    with Image.open(io.BytesIO(data)) as sheet:
        assert sheet.width == 2480
        first = sheet_layout(header, 2).panels[0].thumb
        assert sheet.convert("RGB").getpixel(centre(first)) == COLOURS[2]
