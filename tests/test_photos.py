"""Photo intake: content sniffing, refusals, orientation, EXIF data, stripping, storage."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageCms
from PIL.TiffImagePlugin import IFDRational

from gridgov.errors import BadRequest, NotFound, Unprocessable
from gridgov.photos import PhotoStore, ProcessedPhoto, process_photo

RED = (255, 0, 0)
BLUE = (0, 0, 255)

# 23°18'12.34" N, 115°39'36.5" E: a point in 陆河县.
LAT = 23 + 18 / 60 + 12.34 / 3600
LNG = 115 + 39 / 60 + 36.5 / 3600


def _exif(
    *,
    orientation: int | None = None,
    taken: str | None = None,
    offset: str | None = None,
    gps: tuple[str, tuple[Any, ...], str, tuple[Any, ...]] | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif_ifd: dict[int, Any] = {}
    if taken is not None:
        exif_ifd[ExifTags.Base.DateTimeOriginal] = taken
    if offset is not None:
        exif_ifd[ExifTags.Base.OffsetTimeOriginal] = offset
    if exif_ifd:
        exif[ExifTags.IFD.Exif] = exif_ifd
    if gps is not None:
        lat_ref, lat, lng_ref, lng = gps
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: lat_ref,
            ExifTags.GPS.GPSLatitude: lat,
            ExifTags.GPS.GPSLongitudeRef: lng_ref,
            ExifTags.GPS.GPSLongitude: lng,
        }
    return exif


def _dms(degrees: int, minutes: int, seconds: float) -> tuple[IFDRational, ...]:
    return (IFDRational(degrees), IFDRational(minutes), IFDRational(round(seconds * 100), 100))


LUHE_GPS = ("N", _dms(23, 18, 12.34), "E", _dms(115, 39, 36.5))


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _jpeg(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = BLUE, **params: Any
) -> bytes:
    return _encode(Image.new("RGB", size, color), "JPEG", **params)


def _noise_jpeg(size: tuple[int, int] = (256, 256)) -> bytes:
    pixels = random.Random(0).randbytes(size[0] * size[1] * 3)
    return _encode(Image.frombytes("RGB", size, pixels), "JPEG", quality=95)


def _png_claiming(width: int, height: int) -> bytes:
    """Return a small valid PNG whose IHDR claims the given dimensions."""
    png = _encode(Image.new("L", (8, 8)), "PNG")
    assert png[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _close(pixel: Any, expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.fixture(scope="module")
def phone_jpeg() -> bytes:
    """A 4000×3000 phone photo, stored sideways (Orientation 6), top band red, rest blue."""
    image = Image.new("RGB", (4000, 3000), BLUE)
    image.paste(RED, (0, 0, 4000, 600))
    exif = _exif(orientation=6, taken="2024:05:06 14:30:00", gps=LUHE_GPS)
    return _encode(image, "JPEG", exif=exif, quality=90)


@pytest.fixture(scope="module")
def phone_photo(phone_jpeg: bytes) -> ProcessedPhoto:
    return process_photo(phone_jpeg)


# --- a phone photo -----------------------------------------------------------------------


def test_phone_photo_is_downscaled_and_turned_upright(phone_photo: ProcessedPhoto) -> None:
    assert (phone_photo.width, phone_photo.height) == (1200, 1600)
    image = _reopen(phone_photo.jpeg)
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert image.size == (1200, 1600)
    # Orientation 6 means "rotate 90° clockwise to display": the stored top edge is on the right.
    assert _close(image.getpixel((1150, 800)), RED)
    assert _close(image.getpixel((50, 800)), BLUE)
    assert _close(image.getpixel((600, 50)), BLUE)


def test_phone_photo_keeps_time_and_place_as_data(phone_photo: ProcessedPhoto) -> None:
    assert phone_photo.original_format == "JPEG"
    # No OffsetTimeOriginal: the camera clock is taken as Beijing time, 8 hours ahead of UTC.
    assert phone_photo.taken_at == datetime(2024, 5, 6, 6, 30, tzinfo=UTC)
    assert phone_photo.taken_at is not None and phone_photo.taken_at.utcoffset() is not None
    assert phone_photo.exif_lat == pytest.approx(LAT, abs=1e-6)
    assert phone_photo.exif_lng == pytest.approx(LNG, abs=1e-6)
    assert phone_photo.exif_lat == pytest.approx(23.303428, abs=1e-6)
    assert phone_photo.exif_lng == pytest.approx(115.660139, abs=1e-6)


def test_phone_photo_is_stored_without_any_metadata(phone_photo: ProcessedPhoto) -> None:
    for data in (phone_photo.jpeg, phone_photo.thumb):
        image = _reopen(data)
        assert len(image.getexif()) == 0
        assert b"Exif" not in data
        assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)


def test_thumbnail_fits_in_its_side(phone_photo: ProcessedPhoto) -> None:
    thumb = _reopen(phone_photo.thumb)
    assert thumb.format == "JPEG"
    assert thumb.size == (240, 320)
    assert _close(thumb.getpixel((235, 160)), RED)


def test_sizes_are_configurable(phone_jpeg: bytes) -> None:
    photo = process_photo(phone_jpeg, max_side=800, thumb_side=100)
    assert (photo.width, photo.height) == (600, 800)
    assert _reopen(photo.thumb).size == (75, 100)
    assert photo.size == len(photo.jpeg)
    assert photo.content_type == "image/jpeg"


def test_small_photo_is_not_enlarged() -> None:
    photo = process_photo(_jpeg((640, 480)))
    assert (photo.width, photo.height) == (640, 480)
    assert _reopen(photo.thumb).size == (320, 240)


def test_comment_xmp_and_icc_profile_are_stripped() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = _jpeg(
        exif=_exif(taken="2024:01:02 03:04:05", gps=LUHE_GPS),
        comment="张三 13800138000",
        xmp=b"<x:xmpmeta>secret-owner</x:xmpmeta>",
        icc_profile=icc,
    )
    photo = process_photo(data)
    for needle in (b"Exif", b"13800138000", b"secret-owner", b"ICC_PROFILE"):
        assert needle not in photo.jpeg
        assert needle not in photo.thumb
    assert _close(_reopen(photo.jpeg).getpixel((10, 10)), BLUE)


# --- EXIF time and GPS -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken", "offset", "expected"),
    [
        ("2024:05:06 14:30:00", None, datetime(2024, 5, 6, 6, 30, tzinfo=UTC)),
        ("2024:05:06 14:30:00", "+08:00", datetime(2024, 5, 6, 6, 30, tzinfo=UTC)),
        ("2024:05:06 14:30:00", "-03:00", datetime(2024, 5, 6, 17, 30, tzinfo=UTC)),
        ("2024:01:01 03:00:00", None, datetime(2023, 12, 31, 19, 0, tzinfo=UTC)),
        ("2024:05:06 14:30:00", "garbage", datetime(2024, 5, 6, 6, 30, tzinfo=UTC)),
        ("0000:00:00 00:00:00", None, None),
        ("    :  :     :  :  ", None, None),
        ("yesterday", None, None),
        (None, None, None),
    ],
)
def test_taken_at(taken: str | None, offset: str | None, expected: datetime | None) -> None:
    photo = process_photo(_jpeg(exif=_exif(taken=taken, offset=offset)))
    assert photo.taken_at == expected
    if expected is not None:
        assert photo.taken_at is not None and photo.taken_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        (LUHE_GPS, (LNG, LAT)),
        (("S", _dms(33, 52, 4.0), "W", _dms(70, 40, 30.0)), (-70.675, -(33 + 52 / 60 + 4 / 3600))),
        (("N", (IFDRational(0),) * 3, "E", (IFDRational(0),) * 3), None),
        (("N", (IFDRational(23), IFDRational(1, 0), IFDRational(0)), "E", _dms(115, 0, 0)), None),
        (("N", _dms(95, 0, 0), "E", _dms(115, 0, 0)), None),
        (None, None),
    ],
    ids=["luhe", "south-west", "zero-fix", "zero-denominator", "out-of-range", "absent"],
)
def test_gps(gps: Any, expected: tuple[float, float] | None) -> None:
    photo = process_photo(_jpeg(exif=_exif(gps=gps)))
    if expected is None:
        assert (photo.exif_lng, photo.exif_lat) == (None, None)
    else:
        assert photo.exif_lng == pytest.approx(expected[0], abs=1e-6)
        assert photo.exif_lat == pytest.approx(expected[1], abs=1e-6)


def test_photo_without_exif() -> None:
    photo = process_photo(_encode(Image.new("RGB", (30, 20), RED), "PNG"))
    assert (photo.taken_at, photo.exif_lng, photo.exif_lat) == (None, None, None)


# --- formats -----------------------------------------------------------------------------


def test_png_with_alpha_becomes_jpeg_on_white() -> None:
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (100, 0, 200, 100))
    photo = process_photo(_encode(image, "PNG"))
    assert photo.original_format == "PNG"
    out = _reopen(photo.jpeg)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (200, 100))
    assert _close(out.getpixel((20, 50)), (255, 255, 255), tolerance=8)
    assert _close(out.getpixel((180, 50)), RED)


def test_gif_first_frame_is_taken() -> None:
    frames = [Image.new("RGB", (60, 40), color) for color in (RED, BLUE)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    photo = process_photo(data)
    assert photo.original_format == "GIF"
    assert _close(_reopen(photo.jpeg).getpixel((30, 20)), RED)


def test_gif_transparency_is_flattened_onto_white() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (20, 0, 40, 40))
    photo = process_photo(_encode(image, "GIF", transparency=0))
    out = _reopen(photo.jpeg)
    assert _close(out.getpixel((5, 20)), (255, 255, 255), tolerance=8)
    assert _close(out.getpixel((35, 20)), RED)


def test_webp_is_accepted() -> None:
    photo = process_photo(_encode(Image.new("RGB", (80, 60), RED), "WEBP"))
    assert (photo.original_format, photo.width, photo.height) == ("WEBP", 80, 60)


def test_multi_picture_jpeg_is_a_jpeg() -> None:
    frames = [Image.new("RGB", (80, 60), color) for color in (RED, BLUE)]
    data = _encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    photo = process_photo(data)
    assert photo.original_format == "JPEG"
    assert _close(_reopen(photo.jpeg).getpixel((40, 30)), RED)


def test_sixteen_bit_greyscale_png_keeps_its_tone() -> None:
    photo = process_photo(_encode(Image.new("I;16", (40, 40), 32768), "PNG"))
    assert _close(_reopen(photo.jpeg).getpixel((20, 20)), (128, 128, 128), tolerance=4)


def test_cmyk_jpeg_becomes_rgb() -> None:
    photo = process_photo(_encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"))
    assert _reopen(photo.jpeg).mode == "RGB"


# --- digest ------------------------------------------------------------------------------


def test_digest_is_of_the_uploaded_bytes() -> None:
    data = _jpeg()
    first, second = process_photo(data), process_photo(data)
    assert first.sha256 == second.sha256 == hashlib.sha256(data).hexdigest()
    assert first.jpeg == second.jpeg
    assert first.sha256 != hashlib.sha256(first.jpeg).hexdigest()
    other = process_photo(_jpeg(color=RED))
    assert other.sha256 != first.sha256


# --- refusals ----------------------------------------------------------------------------


def _refusals() -> list[Any]:
    valid = _jpeg(exif=_exif(taken="2024:05:06 14:30:00", gps=LUHE_GPS))
    noisy = _noise_jpeg()
    png = _encode(Image.new("RGB", (8, 8)), "PNG")
    svg = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10" fill="red"/></svg>'
    )
    cases = [
        ("empty", b"", "photo_invalid"),
        ("11-mb", b"\xff\xd8\xff\xe0" + bytes(11 * 1024 * 1024), "photo_too_large"),
        ("text-named-jpg", "这不是照片，只是改了扩展名的文本。".encode(), "photo_invalid"),
        ("pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", "photo_invalid"),
        ("svg", svg, "photo_invalid"),
        ("html", b"<html><script>alert(1)</script></html>", "photo_invalid"),
        ("jpeg-first-100-bytes", valid[:100], "photo_invalid"),
        ("jpeg-cut-in-scan", noisy[: len(noisy) // 2], "photo_invalid"),
        ("jpeg-magic-only", b"\xff\xd8\xff\xdb" + bytes(200), "photo_invalid"),
        ("png-bad-crc", png[:29] + b"\x00\x00\x00\x00" + png[33:], "photo_invalid"),
        ("png-truncated", png[:40], "photo_invalid"),
        ("bmp", _encode(Image.new("RGB", (8, 8)), "BMP"), "photo_invalid"),
        ("tiff", _encode(Image.new("RGB", (8, 8)), "TIFF"), "photo_invalid"),
        ("ico", _encode(Image.new("RGB", (16, 16)), "ICO"), "photo_invalid"),
        ("bomb-100000x100000", _png_claiming(100_000, 100_000), "photo_too_large"),
        ("bomb-10000x10000", _png_claiming(10_000, 10_000), "photo_too_large"),
        ("bomb-9000x9000", _png_claiming(9_000, 9_000), "photo_too_large"),
    ]
    return [pytest.param(data, code, id=name) for name, data, code in cases]


@pytest.mark.parametrize(("data", "code"), _refusals())
def test_refusals(data: bytes, code: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        process_photo(data)
    error = caught.value
    assert error.status == 422
    assert error.code == code
    assert any("\u4e00" <= char <= "\u9fff" for char in error.message)


def test_too_large_names_the_limit_in_mb() -> None:
    with pytest.raises(Unprocessable, match="10 MB") as caught:
        process_photo(bytes(10 * 1024 * 1024 + 1))
    assert caught.value.details == {"max_bytes": 10 * 1024 * 1024}
    with pytest.raises(Unprocessable, match="2 MB"):
        process_photo(_noise_jpeg((2048, 2048)), max_bytes=2 * 1024 * 1024)


def test_exactly_the_byte_limit_is_accepted() -> None:
    data = _jpeg()
    assert process_photo(data, max_bytes=len(data)).width == 64


def test_pixel_limit_is_configurable() -> None:
    data = _jpeg((300, 200))
    with pytest.raises(Unprocessable, match="像素") as caught:
        process_photo(data, max_pixels=59_999)
    assert caught.value.code == "photo_too_large"
    assert process_photo(data, max_pixels=60_000).width == 300


# --- storage -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> PhotoStore:
    return PhotoStore(tmp_path / "photos")


@pytest.fixture(scope="module")
def small_photo() -> ProcessedPhoto:
    return process_photo(_jpeg(exif=_exif(orientation=6)))


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_save_is_content_addressed(store: PhotoStore, small_photo: ProcessedPhoto) -> None:
    sha = small_photo.sha256
    path, thumb_path = store.save(small_photo)
    assert (path, thumb_path) == (f"{sha[:2]}/{sha}.jpg", f"{sha[:2]}/{sha}_t.jpg")
    assert store.open(path).read_bytes() == small_photo.jpeg
    assert store.open(thumb_path).read_bytes() == small_photo.thumb
    assert store.open(path) == store.root / sha[:2] / f"{sha}.jpg"


def test_save_is_idempotent(store: PhotoStore, small_photo: ProcessedPhoto) -> None:
    first = store.save(small_photo)
    stamp = store.open(first[0]).stat().st_mtime_ns
    second = store.save(small_photo)
    assert first == second
    assert _files(store.root) == [store.open(first[0]), store.open(first[1])]
    assert store.open(first[0]).stat().st_mtime_ns == stamp


def test_save_keeps_photos_apart(store: PhotoStore, small_photo: ProcessedPhoto) -> None:
    other = process_photo(_jpeg(color=RED))
    assert store.save(small_photo) != store.save(other)
    assert len(_files(store.root)) == 4


def test_failed_save_leaves_nothing_behind(
    store: PhotoStore, small_photo: ProcessedPhoto, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save(small_photo)
    assert _files(store.root) == []


def test_save_refuses_a_digest_that_is_not_hex(store: PhotoStore) -> None:
    photo = ProcessedPhoto(
        sha256="../../etc/passwd",
        jpeg=b"x",
        thumb=b"x",
        original_format="JPEG",
        width=1,
        height=1,
        taken_at=None,
        exif_lng=None,
        exif_lat=None,
    )
    with pytest.raises(ValueError, match="SHA-256"):
        store.save(photo)
    assert not store.root.exists()


@pytest.mark.parametrize(
    "relpath",
    [
        "../outside.jpg",
        "../../etc/passwd",
        "/etc/passwd",
        "ab/../../outside.jpg",
        "..\\..\\outside.jpg",
        "%2e%2e/outside.jpg",
        "ab/" + "a" * 64 + ".jpg/../../../outside.jpg",
        "ab/" + "a" * 64 + ".jpg\x00.png",
        "AB/" + "A" * 64 + ".jpg",
        "ab/" + "a" * 64 + ".png",
        "",
        ".",
    ],
)
def test_open_refuses_paths_outside_the_store(
    store: PhotoStore, tmp_path: Path, relpath: str
) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    with pytest.raises(BadRequest) as caught:
        store.open(relpath)
    assert caught.value.code == "photo_path_invalid"


def test_open_refuses_a_symlink_out_of_the_store(store: PhotoStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"secret")
    sha = "ab" + "c" * 62
    (store.root / "ab").mkdir(parents=True)
    (store.root / "ab" / f"{sha}.jpg").symlink_to(outside)
    with pytest.raises(BadRequest):
        store.open(f"ab/{sha}.jpg")


def test_open_reports_a_missing_photo(store: PhotoStore) -> None:
    with pytest.raises(NotFound) as caught:
        store.open("ab/" + "a" * 64 + "_t.jpg")
    assert caught.value.code == "photo_not_found"
