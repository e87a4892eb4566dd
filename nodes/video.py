"""Decoding latents to frames, and saving frames as a video in ComfyUI's output folder."""

from __future__ import annotations

import logging

from . import host
from .latents import from_comfy_latent
from .media import frame_rate, make_video, to_audio, video_parts, workflow_tags
from .types import CATEGORY, MODEL
from ..model.choices import SETTINGS_DEFAULTS, VAE_TILING
from ..model.errors import InputError
from ..model.media.formats import DEFAULT_FPS, VIDEO_FORMATS, PIXEL_FORMATS as LIBRARY_PIXEL_FORMATS

# The formats table's: video files, and png (a folder of numbered PNG frames).
FORMATS = [suffix[1:] for suffix in VIDEO_FORMATS]
PIXEL_FORMATS = list(dict.fromkeys(name for names in LIBRARY_PIXEL_FORMATS.values() for name in names))
DEFAULT_CRF = 18  # H.264's visually lossless point; VP9 looks alike at this value
DEFAULT_QUALITY = 90  # animated WebP
TILING = list(VAE_TILING)
# How the editor shows each format on the node: a video element for mp4/webm, an image element for
# animated WebP (flagged animated) and GIF (not flagged: the editor would put it in a video element,
# which cannot play GIF; an image element animates it by itself).
_PLAYED_AS_VIDEO = {"mp4", "webm"}
_FPS_INPUT = {"fps": ("FLOAT", {"default": float(DEFAULT_FPS), "min": 0.1, "max": 240.0, "step": 0.1,
                                "tooltip": "Frames per second; Hotshot-XL was trained on 8 fps clips."})}


class HotshotXLDecode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model whose SDXL VAE decodes the latents."}),
                "samples": ("LATENT", {"tooltip": "Video latents, a batch of frames: from the Hotshot-XL Sampler, "
                                                  "or any SDXL LATENT."}),
                "frames_per_chunk": ("INT", {"default": SETTINGS_DEFAULTS["decode_chunk"], "min": 1, "max": 256,
                                             "tooltip": "Frames the VAE decodes at once: fewer need less memory."}),
                "tiling": (TILING, {"default": SETTINGS_DEFAULTS["vae_tiling"], "tooltip": "Decode each frame in overlapping tiles, which needs "
                                                                  "far less memory for large frames. auto: above "
                                                                  "768x768 pixels (e.g. for 1280x720)."}),
            },
            "optional": {name: (kind, {**options, "tooltip": "Frame rate of the VIDEO output."})
                         for name, (kind, options) in _FPS_INPUT.items()},
        }

    RETURN_TYPES = ("IMAGE", "VIDEO")
    RETURN_NAMES = ("images", "video")
    OUTPUT_TOOLTIPS = ("The video frames as an IMAGE batch (frames, height, width, 3), for Hotshot-XL Save Video "
                       "or ComfyUI's own video and image nodes.",
                       "The same frames as a VIDEO at `fps` (ComfyUI's Create Video type), for Save Video, "
                       "Get Video Components or Hotshot-XL Save Video.")
    FUNCTION = "decode"
    CATEGORY = CATEGORY
    DESCRIPTION = "Decodes video latents into frames with the model's SDXL VAE, a few frames at a time."

    def decode(self, model, samples, frames_per_chunk, tiling, fps=8.0):
        if isinstance(frames_per_chunk, bool) or not isinstance(frames_per_chunk, int) or frames_per_chunk < 1:
            raise InputError("frames_per_chunk", f"must be a positive whole number, got {frames_per_chunk!r}")
        if tiling not in TILING:
            raise InputError("tiling", f"must be one of {', '.join(TILING)}, got {tiling!r}")
        _check_fps_number(fps)
        latents = from_comfy_latent(samples, model.latent_scale)
        report = host.progress(latents.shape[2])
        host.load(model.vae)
        frames = model.pipeline.decode(latents, frames_per_chunk, tiling, callback=report)
        images = frames.to(host.intermediate_device())
        return (images, make_video(images, fps))


def _check_fps_number(fps) -> None:
    import math

    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise InputError("fps", f"must be a positive number of frames per second, got {fps!r}")


def _file_format(format: str):
    return VIDEO_FORMATS[f".{format}"]


def _quality(format: str, crf, quality):
    """write_video's 0..100 quality for this format from the node's crf (mp4, webm) or quality (webp)."""
    fmt = _file_format(format)
    if fmt.quality_option == "crf":
        worst, best = fmt.quality_span
        if not best <= crf <= worst:
            raise InputError("crf", f"{crf} is out of range for {fmt.description}: use {best} (best) to {worst}")
        return (worst - crf) * 100 / (worst - best)
    return quality if fmt.quality_option == "quality" else None


class HotshotXLSaveVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "filename_prefix": ("STRING", {"default": "Hotshot-XL",
                                               "tooltip": "File name prefix in the output folder; may hold "
                                                          "sub-folders (videos/cat) and %width%, %height%, "
                                                          "%year%, %month%, %day%. A number is added: files are "
                                                          "never overwritten."}),
                "format": (FORMATS, {"default": "mp4", "tooltip": "mp4: H.264, plays anywhere. webm: VP9. gif: "
                                                                  "256 colours. webp: animated WebP. png: a folder "
                                                                  "of numbered PNG frames (lossless)."}),
                **{name: (kind, {**options, "tooltip": options["tooltip"] + " A connected video brings its own "
                                                                            "frame rate."})
                   for name, (kind, options) in _FPS_INPUT.items()},
                "loop": ("INT", {"default": 0, "min": 0, "max": 65535,
                                 "tooltip": "How many times gif and webp files play (0: forever); mp4 and webm "
                                            "ignore it."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The frames to save, in order (or connect a video instead)."}),
                "video": ("VIDEO", {"tooltip": "A VIDEO to save instead of images (Create Video, Load Video, "
                                               "Hotshot-XL Decode): its frame rate and sound are kept (sound in "
                                               "mp4 and webm; gif, webp and png hold none)."}),
                "crf": ("INT", {"default": DEFAULT_CRF, "min": 0, "max": 63,
                                "tooltip": "mp4 and webm quality: lower is better and larger (0: best; mp4 goes "
                                           "up to 51, webm up to 63). 18 looks lossless."}),
                "quality": ("INT", {"default": DEFAULT_QUALITY, "min": 0, "max": 100,
                                    "tooltip": "webp quality, 0 to 100 (higher is better and larger)."}),
                "pixel_format": (PIXEL_FORMATS, {"default": "yuv420p",
                                                 "tooltip": "mp4 and webm: yuv420p plays everywhere; yuv444p keeps "
                                                            "full colour detail, but some players and browsers "
                                                            "cannot play it. Other formats ignore it."}),
                "ping_pong": ("BOOLEAN", {"default": False,
                                          "tooltip": "Play forward then backward (the frames again in reverse, "
                                                     "without repeating the ends), for smooth gif and webp loops."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Saves frames or a VIDEO as a video file (mp4, webm, gif, animated webp) or PNG frames in "
                   "ComfyUI's output folder and shows it on the node. The prompt and workflow are stored in the "
                   "file as ComfyUI's own save nodes store them (unless ComfyUI runs with --disable-metadata), so "
                   "an mp4, webm, webp or PNG dropped onto the editor reopens the graph. Everything is checked "
                   "before the graph runs, existing files are never replaced, and a failed or cancelled save "
                   "leaves no partial file.")

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None, format=None, fps=None, loop=None, crf=None, quality=None,
                        pixel_format=None):
        """Checked when the prompt is queued, before anything runs (a red outline on the node). Inputs
        turned into sockets are None here and checked when the node runs. ComfyUI leaves range and
        option checks of the inputs named here to this function."""
        from ..model.media.video import check_fps, _check_loop

        try:
            if format is not None and format not in FORMATS:
                raise InputError("format", f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
            if filename_prefix is not None:
                problem = host.prefix_problem(filename_prefix, host.output_directory())
                if problem:
                    raise InputError("filename_prefix", problem)
            if fps is not None:
                _check_fps_number(fps)
                if format is not None:
                    check_fps(_file_format(format), frame_rate(fps), fps)
            if loop is not None:
                _check_loop(loop)
            if crf is not None:
                if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 63:
                    raise InputError("crf", f"must be a whole number from 0 to 63, got {crf!r}")
                if format is not None:
                    _quality(format, crf, quality)
            if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                        or not 0 <= quality <= 100):
                raise InputError("quality", f"must be a whole number from 0 to 100, got {quality!r}")
            if pixel_format is not None and pixel_format not in PIXEL_FORMATS:
                raise InputError("pixel_format", f"{pixel_format!r} is not one of {', '.join(PIXEL_FORMATS)}")
        except InputError as error:
            return str(error)
        return True

    def save(self, filename_prefix, format, fps, loop, images=None, video=None, crf=DEFAULT_CRF,
             quality=DEFAULT_QUALITY, pixel_format="yuv420p", ping_pong=False, prompt=None, extra_pnginfo=None):
        import torch

        from ..model.media.video import check_output, write_video

        checked = self.VALIDATE_INPUTS(filename_prefix, format, fps, loop, crf, quality, pixel_format)
        if checked is not True:
            name, _, problem = checked.partition(": ")
            raise InputError(name, problem)
        if (images is None) == (video is None):
            raise InputError("images", "connect either images or a video" if images is None else
                             "images and a video are both connected; connect one of them")
        audio = None
        if video is not None:
            images, fps, audio = video_parts(video)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] < 1:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError("images" if video is None else "video",
                             f"expected an IMAGE batch (frames, height, width, 3), got {shape}")
        if ping_pong and images.shape[0] > 2:
            images = torch.cat([images, images.flip(0)[1:-1]])
        sound = to_audio(audio)
        if sound is not None and format not in ("mp4", "webm"):
            logging.warning("Hotshot-XL Save Video: %s holds no sound; the video's audio is left out "
                            "(save as mp4 or webm to keep it)", format)
            sound = None
        count, height, width = images.shape[:3]
        folder, stem, counter, subfolder = host.save_path(filename_prefix, host.output_directory(), width, height)
        name = f"{stem}_{counter:05}_"
        target = f"{folder / name}/" if format == "png" else folder / f"{name}.{format}"
        options = {"quality": _quality(format, crf, quality),
                   "pixel_format": pixel_format if format in ("mp4", "webm") else None}
        check_output(target, count, fps, loop, **options)  # refuses existing files before encoding
        host.check_interrupted()
        # Temporary files renamed into place when complete; the prompt and workflow go inside.
        files = write_video(images, target, fps=fps, loop=loop, metadata=workflow_tags(prompt, extra_pnginfo),
                            audio=sound, **options)
        if format == "png":
            where = f"{subfolder}/{name}" if subfolder else name
            ui = {"images": [{"filename": f.name, "subfolder": where, "type": "output"} for f in files]}
        else:
            ui = {"images": [{"filename": files[0].name, "subfolder": subfolder, "type": "output"}]}
        if format in _PLAYED_AS_VIDEO or (format == "webp" and count > 1):
            ui["animated"] = (True,)
        return {"ui": ui, "result": ()}
