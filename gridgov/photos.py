"""Photo intake: sniff, check, orient, strip and re-encode uploads; store them by content.

Pure domain and filesystem code, no Flask. Every upload is decoded from its content (never its
name or the client's content type), re-encoded as a metadata-free JPEG with a thumbnail, and
stored under the SHA-256 of the uploaded bytes, so the same photo sent twice is stored once.
The EXIF capture time and GPS position are kept as data, never in the stored file (privacy).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from PIL import ExifTags, Image, ImageCms, ImageOps

from gridgov.errors import BadRequest, NotFound, Unprocessable

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "THUMB_SIDE",
    "PhotoStore",
    "ProcessedPhoto",
    "process_photo",
]

MAX_BYTES = 10 * 1024 * 1024
MAX_SIDE = 1600
THUMB_SIDE = 320
MAX_PIXELS = 50_000_000
"""Decoded pixels allowed per upload: a 50-megapixel phone photo, about 150 MB as RGB."""

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
"""Pillow decoders tried on an upload; no other decoder ever sees its bytes."""

JPEG_QUALITY = 85
THUMB_QUALITY = 80

# Pillow reports a JPEG with a multi-picture extension (phone portrait and depth shots) as MPO;
# it is a JPEG whose first picture is the photo.
_FORMAT_NAMES = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "GIF": "GIF"}

CAMERA_TZ = ZoneInfo("Asia/Shanghai")
"""Zone assumed for an EXIF time without OffsetTimeOriginal: the phone's clock is Beijing time."""

_EXIF_TIME = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_STORED_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}(?:_t)?\.jpg")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcessedPhoto:
    """An upload decoded, oriented, stripped of metadata and re-encoded as JPEG."""

    sha256: str
    """Hex digest of the uploaded bytes, before any processing."""
    jpeg: bytes = field(repr=False)
    thumb: bytes = field(repr=False)
    original_format: str
    width: int
    height: int
    taken_at: datetime | None
    """EXIF DateTimeOriginal as an aware UTC datetime."""
    exif_lng: float | None
    """EXIF GPS longitude, WGS84 decimal degrees, east positive."""
    exif_lat: float | None
    """EXIF GPS latitude, WGS84 decimal degrees, north positive."""

    content_type: ClassVar[str] = "image/jpeg"

    @property
    def size(self) -> int:
        """Return the size in bytes of the re-encoded JPEG."""
        return len(self.jpeg)


def process_photo(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_side: int = MAX_SIDE,
    thumb_side: int = THUMB_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> ProcessedPhoto:
    """Check, orient, strip and re-encode an uploaded photo, keeping its EXIF time and place."""
    if not data:
        raise Unprocessable("照片文件为空，请重新拍摄或选择照片。", code="photo_invalid")
    if len(data) > max_bytes:
        raise Unprocessable(
            f"照片过大：单张照片不能超过 {max_bytes / _MIB:g} MB。",
            code="photo_too_large",
            max_bytes=max_bytes,
        )
    image, original_format = _decode(data, max_side=max_side, max_pixels=max_pixels)
    taken_at, lng, lat = _read_exif(image)
    image = _orient(image)
    image = _to_rgb(_to_srgb(image))
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    thumb = image.copy()
    thumb.thumbnail((thumb_side, thumb_side), Image.Resampling.LANCZOS)
    return ProcessedPhoto(
        sha256=hashlib.sha256(data).hexdigest(),
        jpeg=_encode_jpeg(image, quality=JPEG_QUALITY, progressive=True),
        thumb=_encode_jpeg(thumb, quality=THUMB_QUALITY, progressive=False),
        original_format=original_format,
        width=image.width,
        height=image.height,
        taken_at=taken_at,
        exif_lng=lng,
        exif_lat=lat,
    )


def _invalid() -> Unprocessable:
    return Unprocessable(
        "无法识别的照片：仅支持 JPEG、PNG、WebP、GIF 格式的完整图片。", code="photo_invalid"
    )


def _too_many_pixels(max_pixels: int) -> Unprocessable:
    return Unprocessable(
        f"照片像素过多：不能超过 {max_pixels / 10_000:g} 万像素。",
        code="photo_too_large",
        max_pixels=max_pixels,
    )


def _decode(data: bytes, *, max_side: int, max_pixels: int) -> tuple[Image.Image, str]:
    """Open the upload from its content, verify it and load its first frame."""
    # Pillow's decoders are not a closed set of exceptions on hostile input (OSError,
    # SyntaxError, ValueError, struct.error, EOFError, ...): any of them means "not a photo".
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as probe:
            fmt = probe.format or ""
            if fmt not in _FORMAT_NAMES:
                raise _invalid()
            if probe.width * probe.height > max_pixels:
                raise _too_many_pixels(max_pixels)
            probe.verify()
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        if fmt in ("JPEG", "MPO"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers max_side.
            image.draft(None, _cover_box(image.size, max_side))
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    except Unprocessable:
        raise
    except Exception:
        raise _invalid() from None
    return image, _FORMAT_NAMES[fmt]


def _cover_box(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Return the smallest size with the image's aspect that still fills max_side."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _read_exif(image: Image.Image) -> tuple[datetime | None, float | None, float | None]:
    """Return EXIF capture time (UTC) and GPS longitude and latitude, each None if absent."""
    try:
        exif = image.getexif()
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # broken EXIF must not lose the photo
        return None, None, None
    taken_at = _exif_time(
        exif_ifd.get(ExifTags.Base.DateTimeOriginal)
        or exif_ifd.get(ExifTags.Base.DateTimeDigitized),
        exif_ifd.get(ExifTags.Base.OffsetTimeOriginal),
    )
    lat = _gps_degrees(
        gps_ifd.get(ExifTags.GPS.GPSLatitude), gps_ifd.get(ExifTags.GPS.GPSLatitudeRef), 90
    )
    lng = _gps_degrees(
        gps_ifd.get(ExifTags.GPS.GPSLongitude), gps_ifd.get(ExifTags.GPS.GPSLongitudeRef), 180
    )
    if lat is None or lng is None or (lat == 0 and lng == 0):  # 0,0 is a "no fix" placeholder
        return taken_at, None, None
    return taken_at, lng, lat


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def _exif_time(value: Any, offset: Any) -> datetime | None:
    """Parse an EXIF "YYYY:MM:DD HH:MM:SS" with its offset (default Beijing) into UTC."""
    match = _EXIF_TIME.fullmatch(_text(value))
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        local = datetime(year, month, day, hour, minute, second)
    except ValueError:  # "0000:00:00 00:00:00" and other blanks
        return None
    tz: timezone | ZoneInfo = CAMERA_TZ
    offset_match = _EXIF_OFFSET.fullmatch(_text(offset))
    if offset_match is not None:
        sign, hours, minutes = offset_match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta <= timedelta(hours=14):
            tz = timezone(-delta if sign == "-" else delta)
    return local.replace(tzinfo=tz).astimezone(UTC)


def _gps_degrees(value: Any, ref: Any, limit: float) -> float | None:
    """Turn EXIF degrees/minutes/seconds rationals and a N/S/E/W ref into signed degrees."""
    try:
        parts = [float(part) for part in value]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        return None
    degrees = sum(part / 60**i for i, part in enumerate(parts))
    if _text(ref).upper() in ("S", "W"):
        degrees = -degrees
    return degrees if abs(degrees) <= limit else None


def _orient(image: Image.Image) -> Image.Image:
    """Turn the pixels upright as the EXIF Orientation says."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # a broken orientation tag: keep the photo as stored
        return image
    return upright if upright is not None else image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert pixels tagged with an ICC profile to sRGB, as the profile is stripped later."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except Exception:  # an unreadable profile: keep the pixels as they are
        return image
    return converted if converted is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB, flattening transparency onto white."""
    if image.mode.startswith("I"):  # 16-bit greyscale PNG: scale 0..65535 to 0..255
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB") if image.mode != "RGB" else image


def _encode_jpeg(image: Image.Image, *, quality: int, progressive: bool) -> bytes:
    """Encode as JPEG with no EXIF, XMP, ICC profile, comment or other metadata."""
    clean = Image.new("RGB", image.size)
    clean.paste(image)  # a fresh image carries no info dict for the encoder to copy
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=quality, optimize=True, progressive=progressive)
    return out.getvalue()


class PhotoStore:
    """Content-addressed photo files under one root: <sha[:2]>/<sha>.jpg and <sha>_t.jpg."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def save(self, photo: ProcessedPhoto) -> tuple[str, str]:
        """Write the photo and its thumbnail once; return their paths relative to the root."""
        sha = photo.sha256
        if _SHA256.fullmatch(sha) is None:
            raise ValueError(f"not a SHA-256 hex digest: {sha!r}")
        folder = self.root / sha[:2]
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, content in ((f"{sha}.jpg", photo.jpeg), (f"{sha}_t.jpg", photo.thumb)):
            target = folder / name
            if not target.exists():
                _write_atomically(target, content)
            paths.append(f"{sha[:2]}/{name}")
        return paths[0], paths[1]

    def open(self, relpath: str) -> Path:
        """Return the absolute path of a stored file, refusing anything outside the root."""
        if _STORED_NAME.fullmatch(relpath) is None:
            raise BadRequest("照片路径无效。", code="photo_path_invalid")
        path = (self.root / relpath).resolve()
        if not path.is_relative_to(self.root):  # a symlink pointing out of the store
            raise BadRequest("照片路径无效。", code="photo_path_invalid")
        if not path.is_file():
            raise NotFound("照片不存在或已被删除。", code="photo_not_found")
        return path


def _write_atomically(target: Path, content: bytes) -> None:
    """Write to a temporary file beside target, flush it to disk, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable by syncing its directory, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
