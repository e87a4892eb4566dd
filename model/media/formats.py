"""The video formats `write_video` writes, as plain data (no PyAV or torch import), so the CLI can
list them and their frame-rate limits in `--help` cheaply.
"""

from dataclasses import dataclass

DEFAULT_FPS = 8  # Hotshot-XL was trained on 8 fps clips


@dataclass(frozen=True)
class VideoFormat:
    description: str
    container: str  # FFmpeg muxer
    encoders: tuple[str, ...]  # in order of preference; the first this PyAV build has is used
    pix_fmt: str
    even_size: bool = False  # the encoder refuses odd width/height in this pixel format
    stores_loop: bool = False  # the container has a loop count (`loop` is ignored otherwise)
    # `quality` 0..100 maps linearly onto this option of the preferred encoder (encoders[0]);
    # a fallback encoder keeps its own defaults. Lossless formats have no quality option.
    quality_option: str | None = None
    quality_span: tuple[int, int] = (0, 0)  # option value at quality 0 and at quality 100
    default_quality: int = 0
    options: tuple[tuple[str, str], ...] = ()  # fixed options for the preferred encoder
    # Frame rates the file can hold (see check_fps): a container timing frames in whole ticks of
    # a clock (GIF: 1/100 s, WebM and WebP: 1 ms) needs at least two ticks per frame (one tick, or
    # none, is no rate at all: GIF players show such frames at 10 fps, PyAV refuses them), and
    # stores at most `max_ticks` ticks per frame. MP4 stores the rate exactly (time base 1/fps).
    clock: int | None = None  # ticks per second of the container's frame timing; None: exact
    max_ticks: int | None = None  # longest frame duration the container stores, in ticks
    max_fps: float = 1000.0  # beyond what players and the encoders' levels are made for

    def fps_range(self) -> tuple[float, float]:
        """(slowest, fastest) frames per second this format stores."""
        slowest = self.clock / self.max_ticks if self.max_ticks else 0.0
        fastest = min(self.max_fps, self.clock / 2) if self.clock else self.max_fps
        return slowest, fastest


VIDEO_FORMATS = {
    ".mp4": VideoFormat(
        "H.264 in MP4", "mp4",
        ("libx264", "libopenh264", "h264_videotoolbox", "h264_mf", "h264_nvenc", "h264_amf"),
        "yuv420p", even_size=True,
        quality_option="crf", quality_span=(51, 0), default_quality=65,  # crf 18: visually lossless
    ),
    ".webm": VideoFormat(
        "VP9 in WebM", "webm", ("libvpx-vp9",), "yuv420p", clock=1000,
        quality_option="crf", quality_span=(63, 0), default_quality=50,  # crf 32, as ComfyUI's SaveWEBM
        # b=0 makes crf a constant-quality target instead of a cap; cpu-used=2 encodes twice as fast
        # as libvpx's default 1 for no visible loss (measured on 512x512 clips).
        options=(("b", "0"), ("cpu-used", "2")),
    ),
    # GIF frames are mapped onto one palette computed from the whole clip (see _paletted_frames).
    ".gif": VideoFormat("GIF", "gif", ("gif",), "pal8", stores_loop=True, clock=100, max_ticks=65535),
    # PyAV writes animated WebP itself (libwebp_anim); only reading needs Pillow (see _read_webp).
    ".webp": VideoFormat(
        "animated WebP", "webp", ("libwebp_anim",), "yuv420p", stores_loop=True, clock=1000, max_ticks=2**24 - 1,
        quality_option="quality", quality_span=(0, 100), default_quality=90,
    ),
    # Lossless frames: the path is a folder ending in "/" or a file name with %d / %05d in it.
    ".png": VideoFormat("PNG frame sequence", "image2", ("png",), "rgb24"),
}

# Pixel formats a user may choose instead of a format's own (write_video's pixel_format), by
# container: 4:4:4 keeps full colour resolution (sharper red/blue edges, larger files; some
# players and browsers cannot play 4:4:4 H.264).
PIXEL_FORMATS = {"mp4": ("yuv420p", "yuv444p"), "webm": ("yuv420p", "yuv444p")}
