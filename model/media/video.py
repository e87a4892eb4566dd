"""Write frames (a ComfyUI IMAGE batch) as a video file or PNG frame sequence, and read videos back.

Everything is checked before anything is encoded, and nothing half-written is ever left behind:
files are encoded under a temporary name in the target folder and renamed into place when complete.
"""

import math
import numbers
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from . import metadata as video_metadata  # `metadata` names write_video's argument
from ..errors import InputError
from .audio import add_audio_stream, check_audio, encode_audio
from .formats import DEFAULT_FPS, PIXEL_FORMATS, VIDEO_FORMATS, VideoFormat

SEQUENCE_FILE_NAME = "frame_{:05d}.png"  # frame files written into a folder target
_FRAME_NUMBER = re.compile(r"%(0\d+)?d")  # printf patterns we accept: %d, %05d
_MAX_LOOP = 65535  # GIF stores the loop count in 16 bits


def write_video(frames, path, fps=DEFAULT_FPS, loop: int = 0, overwrite: bool = False,
                quality: float | None = None, metadata: dict[str, str] | None = None, audio=None,
                pixel_format: str | None = None) -> list[Path]:
    """Write `frames` ((frames, height, width, 3), float 0..1 or uint8) to `path`; return the files written.

    The kind follows the path: .mp4, .webm, .gif, .webp, or a PNG sequence for a folder ("out/", or an
    existing folder) or a file pattern ("out/frame_%05d.png"; numbering starts at 0). `loop` is the loop
    count stored in GIF and WebP files (0 = forever). `quality` 0..100 (higher is better) applies to
    mp4, webm and webp; GIF and PNG ignore it. An existing file is only replaced with `overwrite=True`.
    `metadata` ({key: text}) is stored where ComfyUI keeps a prompt and workflow (see metadata.py);
    `audio` (audio.Audio) is muxed into mp4 and webm files; `pixel_format` (PIXEL_FORMATS)
    replaces the format's own for mp4 and webm.
    """
    pixels = to_uint8_frames(frames)
    tags = video_metadata.check_tags(metadata)
    plan = _plan(path, len(pixels), fps, loop, overwrite, quality, pixel_format)
    try:
        return _write(pixels, plan, path, loop, quality, tags, audio, pixel_format)
    except OSError as error:  # a full disk, a vanished folder: one line, the partial output already removed
        reason = error.strerror or str(error)
        raise InputError(str(plan.files[0]), f"could not be written: {reason}; nothing was written") from None


def _write(pixels: np.ndarray, plan, path, loop: int, quality, tags, audio, pixel_format) -> list[Path]:
    if plan.fmt is None:
        check_audio(audio, "image2", path)
        _write_png_sequence(pixels, plan.files, plan.rate, tags)
        return plan.files
    audio = check_audio(audio, plan.fmt.container, path)
    pix_fmt = pixel_format or plan.fmt.pix_fmt
    if pix_fmt == "yuv420p" and plan.fmt.even_size:
        pixels = pad_to_even(pixels)
    options = _encoder_options(plan.fmt, plan.encoder, quality)
    container_options = {"loop": str(loop)} if plan.fmt.stores_loop else {}
    container_options.update(video_metadata.container_options(plan.fmt.container, tags))
    target = plan.files[0]

    def write(temporary: Path) -> None:
        _encode(pixels, temporary, plan.fmt, plan.encoder, plan.rate, options, container_options,
                tags=tags, audio=audio, pix_fmt=pix_fmt)
        video_metadata.embed(temporary, plan.fmt.container, tags)

    _write_then_rename(target, write)
    return [target]


def check_output(path, count: int, fps=DEFAULT_FPS, loop: int = 0, overwrite: bool = False,
                 quality: float | None = None, pixel_format: str | None = None) -> list[Path]:
    """Raise what `write_video` would refuse for `count` frames, before any frame exists.

    The CLI and the save node call it first, so a bad path fails before minutes of sampling.
    Returns the files that would be written.
    """
    return _plan(path, count, fps, loop, overwrite, quality, pixel_format).files


@dataclass(frozen=True)
class _Plan:
    files: list[Path]
    rate: Fraction
    fmt: VideoFormat | None = None  # None: a PNG sequence
    encoder: str | None = None


def _plan(path, count: int, fps, loop, overwrite: bool, quality, pixel_format=None) -> _Plan:
    if count < 1:
        raise InputError("frames", "no frames to write")
    if not os.fspath(path).strip():  # Path("") is the current folder: never write frames there unasked
        raise InputError("path", "is empty; expected a video file (.mp4, .webm, .gif, .webp) or a folder for PNG "
                         "frames")
    rate = frame_rate(fps)
    _check_loop(loop)
    _check_quality(quality)
    files = sequence_files(path, count)
    if files is not None:
        _check_pixel_format(None, pixel_format)
        _check_targets(files, overwrite, folder_may_be_created=_is_folder_path(path))
        return _Plan(files, rate)
    target, fmt = Path(path), video_format(path)
    check_fps(fmt, rate, fps)
    _check_pixel_format(fmt, pixel_format)
    _check_targets([target], overwrite, folder_may_be_created=False)
    return _Plan([target], rate, fmt, _pick_encoder(fmt, target))


def read_video(path) -> tuple[torch.Tensor, Fraction | None]:
    """Decode a video file into uint8 frames (frames, height, width, 3) and its frame rate.

    The rate is None only when the file stores no timing at all (a one-frame WebP is a still image).
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(str(file), "no such video file")
    reader = _read_webp if file.suffix.lower() == ".webp" else _read_with_pyav
    arrays, rate = reader(file)
    if not arrays:
        raise InputError(str(file), "holds no video frames")
    return torch.from_numpy(np.stack(arrays)), Fraction(rate) if rate else None


def video_format(path) -> VideoFormat:
    """The format a file path's extension names (not for PNG sequences, see sequence_files)."""
    text = os.fspath(path)
    suffix = Path(text).suffix.lower()
    if suffix == ".png":
        raise InputError(text, "a PNG sequence needs a folder path ending in '/' or a frame-number "
                               "pattern such as frame_%05d.png")
    if suffix not in VIDEO_FORMATS:
        supported = ", ".join(ext for ext in VIDEO_FORMATS if ext != ".png")
        raise InputError(text, f"unknown video type {suffix or '(no extension)'!r}; supported: {supported}, "
                               "or PNG frames (a folder ending in '/' or a pattern like frame_%05d.png)")
    return VIDEO_FORMATS[suffix]


def sequence_files(path, count: int) -> list[Path] | None:
    """The `count` PNG files a folder or %d-pattern path names, or None when `path` is a single file."""
    text = os.fspath(path)
    if _is_folder_path(text):
        return [Path(text) / SEQUENCE_FILE_NAME.format(i) for i in range(count)]
    file = Path(text)
    if not _FRAME_NUMBER.search(text):
        return None
    if len(_FRAME_NUMBER.findall(file.name)) != 1 or _FRAME_NUMBER.search(str(file.parent)):
        raise InputError(text, "a frame-number pattern must appear exactly once, in the file name")
    if file.suffix.lower() != ".png":
        raise InputError(text, "numbered frame sequences are written as PNG: the name must end in .png")
    return [file.with_name(_FRAME_NUMBER.sub(lambda match: match.group() % i, file.name))
            for i in range(count)]


def _is_folder_path(path) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def to_uint8_frames(frames) -> np.ndarray:
    """(frames, height, width, 3) uint8 pixels on the CPU, from float 0..1 or uint8 tensors or arrays."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
            raise InputError("frames", f"expected float values in 0..1 or uint8 pixels, got {frames.dtype}")
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    elif not isinstance(frames, torch.Tensor):
        raise InputError("frames", f"expected a torch tensor or numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError("frames", f"expected shape (frames, height, width, 3), got {tuple(frames.shape)}")
    if frames.numel() == 0:
        raise InputError("frames", f"is empty: shape {tuple(frames.shape)}")
    frames = frames.detach()
    if frames.is_floating_point():
        if not torch.isfinite(frames).all():
            raise InputError("frames", "contains NaN or infinite values")
        # Converted where the frames are (maybe a GPU), so only uint8 crosses to the CPU.
        frames = (frames.float().clamp(0, 1) * 255).round().to(torch.uint8)
    elif frames.dtype != torch.uint8:
        raise InputError("frames", f"expected float values in 0..1 or uint8 pixels, got {frames.dtype}")
    return frames.cpu().numpy()


def pad_to_even(pixels: np.ndarray) -> np.ndarray:
    """Make width and height even by repeating the last column/row: yuv420p stores colour at half
    resolution and H.264 encoders refuse odd sizes. Nothing is cropped; the file is at most one
    pixel wider and taller than the frames."""
    _, height, width, _ = pixels.shape
    return np.pad(pixels, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def frame_rate(fps) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real):
        raise InputError("fps", f"expected a number of frames per second, got {fps!r}")
    if not math.isfinite(fps) or fps <= 0:
        raise InputError("fps", f"must be a positive number, got {fps}")
    # A float becomes the nearest fraction with a denominator up to 1001: exact for NTSC rates
    # (29.97002997 -> 30000/1001), and containers get a small time base.
    rate = Fraction(fps) if isinstance(fps, numbers.Rational) else Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        raise InputError("fps", f"is too small to store: {fps}")
    return rate


def check_fps(fmt: VideoFormat, rate: Fraction, fps) -> None:
    """Refuse a frame rate that `fmt`'s container cannot store (see VideoFormat.fps_range), rather
    than writing a file that plays at another rate or not at all."""
    slowest, fastest = fmt.fps_range()
    if not slowest <= rate <= fastest:
        allowed = f"{slowest:.2g} to {fastest:g}" if slowest else f"at most {fastest:g}"
        why = (f"it times frames in whole 1/{fmt.clock} s, at least 2 per frame" if fmt.clock
               else "players and encoder levels are not made for more")
        raise InputError("fps", f"{fps:g} is out of range for {fmt.description}: use {allowed} ({why})")


def _check_loop(loop) -> None:
    if isinstance(loop, bool) or not isinstance(loop, numbers.Integral) or not 0 <= loop <= _MAX_LOOP:
        raise InputError("loop", f"expected a whole number from 0 (forever) to {_MAX_LOOP}, got {loop!r}")


def _check_pixel_format(fmt: VideoFormat | None, pixel_format) -> None:
    if pixel_format is None:
        return
    allowed = PIXEL_FORMATS.get(fmt.container, ()) if fmt else ()
    if pixel_format not in allowed:
        what = fmt.description if fmt else "PNG frames"
        choice = f"choose one of {', '.join(allowed)}" if allowed else "it has a fixed pixel format"
        raise InputError("pixel_format", f"{pixel_format!r} is not available for {what}: {choice}")


def _check_quality(quality) -> None:
    if quality is None:
        return
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not 0 <= quality <= 100:
        raise InputError("quality", f"expected None or a number from 0 to 100, got {quality!r}")


def _check_targets(files: list[Path], overwrite: bool, folder_may_be_created: bool) -> None:
    """Every file can be written: its folder exists (or, for a folder target that will be created, its
    parent does) and is writable, and no file is in the way unless `overwrite`."""
    folder = files[0].parent
    existing = folder if folder.exists() or not folder_may_be_created else folder.parent
    if not existing.is_dir():
        problem = "is not a folder" if existing.exists() else "does not exist"
        raise InputError(str(files[0]), f"folder {existing} {problem}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(str(files[0]), f"folder {existing} is not writable")
    for file in files:
        if file.is_dir():
            raise InputError(str(file), "is a folder, not a file")
        if file.exists() and not overwrite:
            raise InputError(str(file), "already exists; pass `overwrite=True` to replace it")


def _pick_encoder(fmt: VideoFormat, target: Path) -> str:
    for name in fmt.encoders:
        if name in av.codecs_available and fmt.pix_fmt in _pixel_formats(name):
            return name
    raise InputError(str(target), f"this PyAV build has no {fmt.description} encoder "
                                  f"(looked for {', '.join(fmt.encoders)})")


def _pixel_formats(encoder: str) -> set[str]:
    formats = av.codec.Codec(encoder, "w").video_formats
    return {f.name for f in formats} if formats else set()


def _encoder_options(fmt: VideoFormat, encoder: str, quality) -> dict[str, str]:
    if encoder != fmt.encoders[0]:
        return {}
    options = dict(fmt.options)
    if fmt.quality_option:
        worst, best = fmt.quality_span
        chosen = fmt.default_quality if quality is None else quality
        options[fmt.quality_option] = str(round(worst + (best - worst) * chosen / 100))
    return options


def _write_then_rename(target: Path, write) -> None:
    """Run write(temporary_path) and move the result onto `target` only when it completed.

    The temporary file sits next to the target so the rename is atomic on one file system; it is
    removed on any failure, Ctrl-C included, so no half-written video is ever left.
    """
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_png_sequence(pixels: np.ndarray, files: list[Path], rate: Fraction, tags=None) -> None:
    """Encode every frame into a staging folder, then move the files into place: a failure leaves
    none of the new frames (and removes the target folder if it was created here)."""
    folder = files[0].parent
    created_folder = not folder.exists()
    staging, moved = None, []
    try:
        folder.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".frames-", suffix=".part", dir=folder))
        _encode(pixels, staging / "%d.png", VIDEO_FORMATS[".png"], "png", rate, {}, {"start_number": "0"})
        for index, file in enumerate(files):
            video_metadata.embed(staging / f"{index}.png", "image2", tags)
            os.replace(staging / f"{index}.png", file)
            moved.append(file)
        staging.rmdir()
    except BaseException:
        for file in moved:
            file.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created_folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _encode(pixels: np.ndarray, path: Path, fmt: VideoFormat, encoder: str, rate: Fraction,
            options: dict[str, str], container_options: dict[str, str], tags=None, audio=None,
            pix_fmt: str | None = None) -> None:
    _, height, width, _ = pixels.shape
    frames = _rgb_frames(pixels, rate)
    if fmt.pix_fmt == "pal8":
        frames = _paletted_frames(frames, width, height, rate)
    with av.open(str(path), "w", format=fmt.container, options=container_options) as container:
        if fmt.container in video_metadata.CONTAINER_TAGGED:
            video_metadata.set_container_tags(container, tags)  # before the header is written
        stream = container.add_stream(encoder, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt or fmt.pix_fmt
        sound = add_audio_stream(container, fmt.container, audio) if audio is not None else None
        for frame in frames:
            container.mux(stream.encode(frame))  # PyAV converts rgb24 to the stream's pix_fmt
        container.mux(stream.encode(None))  # flush frames the encoder still holds
        if sound is not None:
            encode_audio(container, sound, audio, len(pixels), rate)


def _rgb_frames(pixels: np.ndarray, rate: Fraction):
    for index, image in enumerate(pixels):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = index, 1 / rate
        yield frame


def _paletted_frames(frames, width: int, height: int, rate: Fraction) -> list[av.VideoFrame]:
    """Map frames onto one 256-colour palette made from the whole clip (FFmpeg's palettegen and
    paletteuse). The GIF encoder's own rgb8 is a fixed 3-3-2 bit palette with visible banding, and a
    palette per frame would flicker. diff_mode=rectangle re-dithers only what changed between frames,
    so static areas do not shimmer."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=1 / rate)
    split = graph.add("split")
    palettegen = graph.add("palettegen", "stats_mode=full")
    paletteuse = graph.add("paletteuse", "diff_mode=rectangle")
    sink = graph.add("buffersink")
    source.link_to(split)
    split.link_to(paletteuse, 0, 0)
    split.link_to(palettegen, 1, 0)
    palettegen.link_to(paletteuse, 0, 1)
    paletteuse.link_to(sink)
    graph.configure()
    for frame in frames:
        source.push(frame)
    source.push(None)  # the palette is only known once every frame was seen
    paletted = []
    while True:
        try:
            paletted.append(sink.pull())
        except av.error.EOFError:
            return paletted


def _read_with_pyav(file: Path) -> tuple[list[np.ndarray], Fraction | None]:
    with av.open(str(file)) as container:
        if not container.streams.video:
            raise InputError(str(file), "has no video stream")
        stream = container.streams.video[0]
        arrays, times = [], []
        for frame in container.decode(stream):
            arrays.append(frame.to_ndarray(format="rgb24"))
            if frame.pts is not None:
                times.append(frame.pts * stream.time_base)
        # Not the header's rate: FFmpeg reports 25/3 for an 8 fps GIF.
        rate = _rate_from_timestamps(times, stream.time_base)
        return arrays, rate or stream.average_rate or stream.guessed_rate


def _read_webp(file: Path) -> tuple[list[np.ndarray], Fraction | None]:
    # FFmpeg (libavcodec 62 here) writes animated WebP but cannot decode it, so Pillow reads it;
    # Pillow comes with diffusers. Imported here so writing videos does not need it.
    from PIL import Image

    with Image.open(file) as image:
        arrays, times, duration_ms = [], [], 0
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            image.load()  # Pillow fills in the frame's timestamp and duration on load
            arrays.append(np.asarray(image.convert("RGB")))
            times.append(Fraction(image.info.get("timestamp", 0), 1000))
            duration_ms = image.info.get("duration", 0)
        rate = _rate_from_timestamps(times, Fraction(1, 1000))
        return arrays, rate or (Fraction(1000, duration_ms) if duration_ms else None)


def _rate_from_timestamps(times: list[Fraction], tick: Fraction) -> Fraction | None:
    """Frames per second from the first and last timestamps; None with fewer than two frames.

    Containers round timestamps to their tick (GIF: 1/100 s, so 8 fps is stored as 0, 13, 25, 38 ...),
    which skews the measure: 8 frames at 8 fps measure 7.95. A whole or NTSC (n*1000/1001) rate that
    this rounding could have produced is returned instead; exact time bases (MP4) are unaffected.
    """
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    intervals, span = len(times) - 1, times[-1] - times[0]
    measured = intervals / span
    slowest = intervals / (span + tick)
    fastest = intervals / (span - tick) if span > tick else math.inf
    for common in (Fraction(round(measured)), Fraction(round(measured * Fraction(1001, 1000)) * 1000, 1001)):
        if common > 0 and slowest <= common <= fastest:
            return common
    return measured
