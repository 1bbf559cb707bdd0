"""Reference-image uploads: hostile files are refused with a reason and leave nothing behind."""

import functools
import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from characters import services
from characters.models import ReferenceImage
from characters.uploads import UploadRejected, read_limited
from dramas.models import Role
from tests.conftest import login
from tests.factories import (
    FACES_DIR,
    add_member,
    create_character,
    create_drama,
    create_user,
    face_upload,
    image_bytes,
    upload,
)

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
HTMX = {"HX-Request": "true"}
ALLOWED = "Upload a JPEG, PNG, WebP file."


# --- Hostile files -----------------------------------------------------------------------------


@functools.cache
def crafted_png(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of blank rows, written by hand: huge on screen, small on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    rows_per_block = 1000
    block = b"\0" * ((1 + (width + 7) // 8) * rows_per_block)  # filter byte + packed bits
    packer = zlib.compressobj(1)
    idat = b"".join(packer.compress(block) for _ in range(height // rows_per_block))
    idat += packer.compress(block[: (1 + (width + 7) // 8) * (height % rows_per_block)])
    idat += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    data = (FACES_DIR / "grace_hopper.jpg").read_bytes()
    return data[: int(len(data) * 0.6)]


def padded_png(size: int) -> bytes:
    """A valid PNG followed by junk up to `size` bytes (decoders ignore what follows IEND)."""
    data = image_bytes()
    return data + os.urandom(size - len(data))


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b"<script>alert(document.cookie)</script><circle cx='32' cy='32' r='30'/></svg>"
)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"

# (file name, builder of its bytes, content type the browser claims, words the reason must use)
HOSTILE = [
    pytest.param(
        "notes.png",
        lambda: b"Scene 3: she turns away. Not a picture at all.\n" * 20,
        "image/png",
        ["not an image we can read", ALLOWED],
        id="text-named-png",
    ),
    pytest.param(
        "cut.jpg",
        truncated_jpeg,
        "image/jpeg",
        ["damaged or incomplete"],
        id="truncated-jpeg",
    ),
    pytest.param(
        "bomb.png",
        lambda: crafted_png(30_000, 30_000),
        "image/png",
        ["too large to open safely", "40 megapixels"],
        id="png-bomb-30000x30000",
    ),
    pytest.param(
        "huge.png",
        lambda: padded_png(25 * MB),
        "image/png",
        ["25.0 MB", "the limit is 20.0 MB"],
        id="25-mb",
    ),
    pytest.param("empty.png", lambda: b"", "image/png", ["empty"], id="empty"),
    pytest.param("logo.svg", lambda: SVG, "image/svg+xml", ["not an image we can read"], id="svg"),
    pytest.param(
        "face.jpg", lambda: HTML, "image/jpeg", ["not an image we can read"], id="html-named-jpg"
    ),
    pytest.param(
        "wave.gif",
        lambda: image_bytes(format="GIF"),
        "image/gif",
        ["GIF images are not accepted", ALLOWED],
        id="gif",
    ),
    pytest.param(
        "poster.png",
        lambda: crafted_png(7000, 7000),
        "image/png",
        ["7000\N{MULTIPLICATION SIGN}7000", "49 megapixels", "the limit is 40 megapixels"],
        id="49-megapixels",
    ),
]


# --- Helpers -----------------------------------------------------------------------------------


@pytest.fixture
def character(drama):
    return create_character(drama=drama, name="Lin")


def stored_files(root) -> list[Path]:
    return sorted(path for path in Path(root).rglob("*") if path.is_file())


def assert_nothing_stored(root) -> None:
    assert ReferenceImage.objects.count() == 0
    assert stored_files(root) == []


def add(character, *files):
    return services.reference_images_add(character=character, files=list(files))


def upload_url(character) -> str:
    return reverse("reference_upload", args=[character.drama_id, character.id])


def detail_url(character) -> str:
    return reverse("character_detail", args=[character.drama_id, character.id])


def image_url(reference) -> str:
    character = reference.character
    return reverse("reference_image", args=[character.drama_id, character.id, reference.id])


def stored_image(reference) -> Image.Image:
    with reference.image.open("rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image


def jpeg_with_orientation(orientation: int, *, size=(40, 20)) -> bytes:
    """Left half red, right half blue, with the EXIF orientation tag set."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


def close_to(pixel, expected, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- The service refuses hostile files ---------------------------------------------------------


@pytest.mark.parametrize(("name", "build", "content_type", "reason"), HOSTILE)
def test_it_refuses_a_hostile_file_with_its_reason(
    character, media_root, name, build, content_type, reason
):
    [result] = add(character, upload(name=name, content=build(), content_type=content_type))

    assert not result.ok
    assert result.reference is None
    assert result.filename == name
    for words in reason:
        assert words in result.error
    assert_nothing_stored(media_root)


def test_it_refuses_an_oversized_file_before_decoding_it(character, media_root, monkeypatch):
    def must_not_decode(data):
        raise AssertionError("a file over the size limit was handed to the decoder")

    monkeypatch.setattr(services, "normalise_image", must_not_decode)

    [result] = add(character, upload(name="huge.png", content=padded_png(25 * MB)))

    assert result.error == "The file is 25.0 MB; the limit is 20.0 MB."
    assert_nothing_stored(media_root)


def test_it_stops_reading_at_the_limit_when_no_size_is_declared():
    stream = io.BytesIO(b"x" * 10_000)  # no `size` attribute: the bytes are the only evidence

    with pytest.raises(UploadRejected, match=r"larger than the 0\.0 MB limit"):
        read_limited(stream, max_bytes=100)
    assert stream.tell() == 101  # read max_bytes + 1 at most, never the whole stream


def test_it_refuses_an_image_between_pillows_warning_and_error_thresholds(character, media_root):
    # 100 MP: above Pillow's MAX_IMAGE_PIXELS (89 MP), where it only warns, below twice that.
    [result] = add(character, upload(name="wide.png", content=crafted_png(10_000, 10_000)))

    assert "too large to open safely" in result.error
    assert "40 megapixels" in result.error
    assert_nothing_stored(media_root)


def test_it_refuses_a_jpeg_whose_pixels_are_cut_off_even_when_its_header_is_intact(
    character, media_root
):
    data = truncated_jpeg()
    with Image.open(io.BytesIO(data)) as probe:  # the header alone looks fine
        assert probe.format == "JPEG"
        assert probe.size == (512, 600)

    [result] = add(character, upload(name="cut.jpg", content=data, content_type="image/jpeg"))

    assert result.error.startswith("The image is damaged or incomplete")
    assert_nothing_stored(media_root)


# --- The service accepts real images and stores a normalised copy ------------------------------


def test_it_stores_a_jpeg_as_a_normalised_copy(character, media_root):
    data = (FACES_DIR / "grace_hopper.jpg").read_bytes()

    [result] = add(character, face_upload("grace_hopper.jpg"))

    assert result.ok, result.error
    reference = ReferenceImage.objects.get()
    assert result.reference == reference
    assert reference.character == character
    assert reference.original_name == "grace_hopper.jpg"
    assert reference.sha256 == hashlib.sha256(data).hexdigest()
    assert reference.original_bytes == len(data)
    assert (reference.width, reference.height) == (512, 600)
    assert reference.image.name == f"references/{character.id}/{reference.sha256[:16]}.jpg"
    assert stored_files(media_root) == [Path(media_root) / reference.image.name]
    stored = stored_image(reference)
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (512, 600))


def test_it_composites_a_transparent_png_on_white_and_stores_rgb_jpeg(character):
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent black
    image.paste((200, 0, 0, 255), (0, 0, 20, 40))  # opaque red on the left
    out = io.BytesIO()
    image.save(out, format="PNG")

    [result] = add(character, upload(name="cutout.png", content=out.getvalue()))

    assert result.ok, result.error
    stored = stored_image(result.reference)
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (40, 40))
    assert close_to(stored.getpixel((35, 20)), (255, 255, 255))  # white, not black
    assert close_to(stored.getpixel((5, 20)), (200, 0, 0))


def test_it_accepts_webp_and_stores_it_as_jpeg(character, media_root):
    data = image_bytes(size=(50, 30), color=(20, 160, 90), format="WEBP", quality=95)

    [result] = add(character, upload(name="still.webp", content=data, content_type="image/webp"))

    assert result.ok, result.error
    stored = stored_image(result.reference)
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (50, 30))
    assert close_to(stored.getpixel((25, 15)), (20, 160, 90))
    assert [path.suffix for path in stored_files(media_root)] == [".jpg"]


def test_it_stores_a_real_jpeg_whatever_the_upload_was_called(character):
    [result] = add(character, upload(name="portrait.png", content=image_bytes(format="PNG")))

    with result.reference.image.open("rb") as handle:
        assert handle.read(3) == b"\xff\xd8\xff"  # JPEG start-of-image marker
    assert result.reference.image.name.endswith(".jpg")
    assert result.reference.original_name == "portrait.png"


def test_it_applies_the_exif_orientation(character):
    data = jpeg_with_orientation(6)  # 6: rotate 90° clockwise to display
    [result] = add(character, upload(name="phone.jpg", content=data, content_type="image/jpeg"))

    assert result.ok, result.error
    assert (result.reference.width, result.reference.height) == (20, 40)
    stored = stored_image(result.reference)
    assert stored.size == (20, 40)
    # Turned clockwise, the red left half ends up on top.
    assert close_to(stored.getpixel((10, 5)), (255, 0, 0), tolerance=40)
    assert close_to(stored.getpixel((10, 35)), (0, 0, 255), tolerance=40)
    assert 0x0112 not in stored.getexif()


def test_it_strips_exif_icc_and_xmp_metadata_from_the_stored_copy(character):
    with Image.open(FACES_DIR / "obama.jpg") as original:
        assert {"exif", "xmp", "icc_profile", "photoshop"} <= set(original.info)

    [result] = add(character, face_upload("obama.jpg"))

    stored = stored_image(result.reference)
    assert not {"exif", "xmp", "icc_profile", "photoshop"} & set(stored.info)
    assert len(stored.getexif()) == 0


def test_it_strips_a_jpeg_comment_from_the_stored_copy(character):
    image = Image.new("RGB", (32, 32), (90, 90, 90))
    out = io.BytesIO()
    image.save(out, format="JPEG", comment=b"shot at 12 Elm St, call 555-0134")

    [result] = add(character, upload(name="c.jpg", content=out.getvalue()))

    stored = stored_image(result.reference)
    # BUG: Pillow's JPEG encoder defaults `comment` to image.info["comment"], which
    # convert()/exif_transpose() carry over, so the COM segment survives normalisation.
    assert "comment" not in stored.info, f"stored copy kept the comment {stored.info['comment']!r}"


def test_it_caps_the_long_side_of_the_stored_copy(character, settings):
    settings.REFERENCE_MAX_SIDE = 100

    [wide, tall, small] = add(
        character,
        upload(name="wide.png", content=image_bytes(size=(400, 200))),
        upload(name="tall.png", content=image_bytes(size=(150, 300), color=(1, 2, 3))),
        upload(name="small.png", content=image_bytes(size=(80, 60), color=(4, 5, 6))),
    )

    assert (wide.reference.width, wide.reference.height) == (100, 50)
    assert stored_image(wide.reference).size == (100, 50)
    assert stored_image(tall.reference).size == (50, 100)
    assert stored_image(small.reference).size == (80, 60)  # never enlarged


def test_it_accepts_a_jpeg_that_is_also_an_mpo(character, media_root):
    # Many phone and camera JPEGs carry extra frames (MPO). They are JPEG files: the .jpg
    # extension, the image/jpeg type, and every browser shows the first frame.
    frames = [Image.new("RGB", (40, 30), (i * 80, 60, 60)) for i in range(2)]
    out = io.BytesIO()
    frames[0].save(out, format="MPO", save_all=True, append_images=frames[1:])
    data = out.getvalue()
    assert data[:3] == b"\xff\xd8\xff"

    [result] = add(character, upload(name="IMG_0042.jpg", content=data, content_type="image/jpeg"))

    # BUG: Pillow reports such files as "MPO", which is not in ALLOWED_FORMATS.
    assert result.ok, result.error
    assert stored_image(result.reference).size == (40, 30)


# --- Duplicates and batches --------------------------------------------------------------------


def test_it_stores_the_same_file_once_per_character(character, media_root):
    data = image_bytes(size=(30, 30))

    [first] = add(character, upload(name="a.png", content=data))
    [second] = add(character, upload(name="a-copy.png", content=data))

    assert first.ok
    assert second.duplicate
    assert not second.ok
    assert second.error == ""
    assert second.reference == first.reference
    assert ReferenceImage.objects.count() == 1
    assert ReferenceImage.objects.get().original_name == "a.png"
    assert len(stored_files(media_root)) == 1


def test_it_spots_a_duplicate_within_one_batch(character, media_root):
    data = image_bytes(size=(30, 30))

    first, second = add(
        character, upload(name="a.png", content=data), upload(name="b.png", content=data)
    )

    assert first.ok
    assert second.duplicate
    assert ReferenceImage.objects.count() == 1
    assert len(stored_files(media_root)) == 1


def test_it_stores_the_same_file_for_two_characters(drama, character, media_root):
    other = create_character(drama=drama, name="Mei")
    data = image_bytes(size=(30, 30))

    [first] = add(character, upload(name="a.png", content=data))
    [second] = add(other, upload(name="a.png", content=data))

    assert first.ok
    assert second.ok
    assert first.reference != second.reference
    assert {r.character for r in ReferenceImage.objects.all()} == {character, other}
    assert len(stored_files(media_root)) == 2


def test_it_stores_the_good_files_of_a_batch_and_reports_the_bad_one(character, media_root):
    results = add(
        character,
        upload(name="one.png", content=image_bytes(color=(1, 1, 1))),
        upload(name="notes.png", content=b"not a picture"),
        upload(name="two.png", content=image_bytes(color=(2, 2, 2))),
    )

    assert [r.filename for r in results] == ["one.png", "notes.png", "two.png"]
    assert [r.ok for r in results] == [True, False, True]
    assert "not an image we can read" in results[1].error
    assert sorted(ReferenceImage.objects.values_list("original_name", flat=True)) == [
        "one.png",
        "two.png",
    ]
    assert sorted(stored_files(media_root)) == sorted(
        Path(media_root) / r.reference.image.name for r in (results[0], results[2])
    )


def test_it_refuses_a_batch_over_the_file_limit(character, media_root, settings):
    settings.UPLOAD_MAX_FILES = 3
    files = [upload(name=f"f{i}.png", content=image_bytes(color=(i, i, i))) for i in range(4)]

    with pytest.raises(ValidationError) as refused:
        add(character, *files)

    assert "4 files at once is too many" in refused.value.messages[0]
    assert "at most 3" in refused.value.messages[0]
    assert_nothing_stored(media_root)


# --- The upload view ---------------------------------------------------------------------------


def post_images(client, character, files, *, htmx=False):
    return client.post(upload_url(character), {"images": files}, headers=HTMX if htmx else {})


@pytest.mark.parametrize(("name", "build", "content_type", "reason"), HOSTILE)
def test_it_shows_why_the_view_refused_a_hostile_file(
    producer_client, character, media_root, name, build, content_type, reason
):
    file = SimpleUploadedFile(name, build(), content_type=content_type)

    response = post_images(producer_client, character, [file], htmx=True)

    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" not in html
    assert f"<strong>{name}</strong> rejected:" in html
    for words in reason:
        assert words in html
    assert_nothing_stored(media_root)


def test_it_redirects_a_plain_upload_and_flashes_a_message_per_file(
    producer_client, character, media_root
):
    good = image_bytes(color=(9, 9, 9))
    add(character, upload(name="already.png", content=image_bytes(color=(7, 7, 7))))
    files = [
        upload(name="good.png", content=good),
        upload(name="notes.png", content=b"not a picture"),
        upload(name="again.png", content=image_bytes(color=(7, 7, 7))),
    ]

    response = post_images(producer_client, character, files)

    assert response.status_code == 302
    assert response["Location"] == detail_url(character)
    page = producer_client.get(response["Location"]).content.decode()
    assert "good.png: added." in page
    assert "notes.png: This is not an image we can read." in page
    assert "again.png: already a reference." in page
    assert sorted(ReferenceImage.objects.values_list("original_name", flat=True)) == [
        "already.png",
        "good.png",
    ]
    assert len(stored_files(media_root)) == 2


def test_it_returns_the_gallery_with_per_file_results_to_htmx(
    producer_client, character, media_root
):
    files = [upload(name="good.png"), upload(name="notes.png", content=b"not a picture")]

    response = post_images(producer_client, character, files, htmx=True)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="gallery">')
    assert "<strong>good.png</strong> added." in html
    assert "<strong>notes.png</strong> rejected: This is not an image we can read." in html
    reference = ReferenceImage.objects.get()
    assert f'src="{image_url(reference)}"' in html
    assert "1 image<" in html
    assert len(stored_files(media_root)) == 1


def test_it_answers_422_to_htmx_when_every_file_is_rejected(producer_client, character, media_root):
    files = [
        upload(name="notes.png", content=b"not a picture"),
        upload(name="wave.gif", content=image_bytes(format="GIF")),
    ]

    response = post_images(producer_client, character, files, htmx=True)

    assert response.status_code == 422
    html = response.content.decode()
    assert "<strong>notes.png</strong> rejected:" in html
    assert "<strong>wave.gif</strong> rejected: GIF images are not accepted." in html
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_it_asks_for_an_image_when_none_was_chosen(producer_client, character, media_root, htmx):
    response = producer_client.post(upload_url(character), {}, headers=HTMX if htmx else {})

    assert response.status_code == 422
    html = response.content.decode()
    assert "Choose at least one image." in html
    assert ("<html" in html) is not htmx
    assert_nothing_stored(media_root)


def test_it_shows_the_file_limit_when_too_many_files_are_sent(
    producer_client, character, media_root, settings
):
    settings.UPLOAD_MAX_FILES = 2
    files = [upload(name=f"f{i}.png", content=image_bytes(color=(i, i, i))) for i in range(3)]

    response = post_images(producer_client, character, files, htmx=True)

    assert response.status_code == 422
    html = response.content.decode()
    assert "3 files at once is too many; upload at most 2 per batch." in html
    assert_nothing_stored(media_root)


def test_it_shows_the_file_limit_for_one_file_over_the_configured_limit(
    producer_client, character, media_root, settings
):
    # With the shipped settings, not a lowered UPLOAD_MAX_FILES.
    count = settings.UPLOAD_MAX_FILES + 1
    files = [upload(name=f"f{i}.png", content=image_bytes(color=(i, i, i))) for i in range(count)]

    response = post_images(producer_client, character, files, htmx=True)

    # BUG: DATA_UPLOAD_MAX_NUMBER_FILES == UPLOAD_MAX_FILES, so Django refuses the request
    # (TooManyFilesSent -> 400 Bad Request) before the service can explain the limit.
    assert response.status_code == 422, f"got {response.status_code} instead of the form"
    assert f"upload at most {settings.UPLOAD_MAX_FILES} per batch" in response.content.decode()
    assert_nothing_stored(media_root)


def test_it_forbids_viewers_to_upload(drama, character, media_root):
    viewer = add_member(drama=drama, role=Role.VIEWER)

    response = post_images(login(viewer), character, [upload(name="good.png")], htmx=True)

    assert response.status_code == 403
    assert_nothing_stored(media_root)


# --- Serving the stored copy -------------------------------------------------------------------


def test_it_serves_the_stored_copy_to_members(drama, character):
    [result] = add(character, face_upload("grace_hopper.jpg"))
    viewer = add_member(drama=drama, role=Role.VIEWER)

    response = login(viewer).get(image_url(result.reference))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert "private" in response["Cache-Control"]
    body = response.getvalue()
    response.close()
    with result.reference.image.open("rb") as handle:
        assert body == handle.read()
    assert Image.open(io.BytesIO(body)).format == "JPEG"


def test_it_hides_the_stored_copy_from_non_members(character):
    [result] = add(character, upload(name="good.png"))
    outsider = create_user()
    create_drama(owner=outsider, title="Their own drama")

    response = login(outsider).get(image_url(result.reference))

    assert response.status_code == 404
    assert response.get("Content-Type") != "image/jpeg"


def test_it_sends_anonymous_visitors_to_the_login_page(client, character):
    [result] = add(character, upload(name="good.png"))
    url = image_url(result.reference)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_it_does_not_serve_a_reference_through_another_characters_url(producer, drama, character):
    [result] = add(character, upload(name="good.png"))
    other = create_character(drama=drama, name="Mei")
    url = reverse("reference_image", args=[drama.id, other.id, result.reference.id])

    response = login(producer).get(url)

    assert response.status_code == 404
