"""Decoding latents to frames, and saving frames as a video in ComfyUI's output folder."""

from __future__ import annotations

from . import host
from .latents import from_comfy_latent
from .types import CATEGORY, MODEL
from ..model.choices import SETTINGS_DEFAULTS, VAE_TILING
from ..model.errors import InputError
from ..model.media.formats import DEFAULT_FPS, VIDEO_FORMATS

# The formats table's video files (a PNG sequence is a folder, not a file the output folder names).
FORMATS = [suffix[1:] for suffix, form in VIDEO_FORMATS.items() if form.container != "image2"]
TILING = list(VAE_TILING)
# How the editor shows each format on the node: a video element for mp4/webm, an image element for
# animated WebP (flagged animated) and GIF (not flagged: the editor would put it in a video element,
# which cannot play GIF; an image element animates it by itself).
_PLAYED_AS_VIDEO = {"mp4", "webm"}


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
            }
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The video frames as an IMAGE batch (frames, height, width, 3), for Hotshot-XL Save Video "
                       "or ComfyUI's own video and image nodes.",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY
    DESCRIPTION = "Decodes video latents into frames with the model's SDXL VAE, a few frames at a time."

    def decode(self, model, samples, frames_per_chunk, tiling):
        if isinstance(frames_per_chunk, bool) or not isinstance(frames_per_chunk, int) or frames_per_chunk < 1:
            raise InputError("frames_per_chunk", f"must be a positive whole number, got {frames_per_chunk!r}")
        if tiling not in TILING:
            raise InputError("tiling", f"must be one of {', '.join(TILING)}, got {tiling!r}")
        latents = from_comfy_latent(samples, model.latent_scale)
        report = host.progress(latents.shape[2])
        host.load(model.vae)
        frames = model.pipeline.decode(latents, frames_per_chunk, tiling, callback=report)
        return (frames.to(host.intermediate_device()),)


class HotshotXLSaveVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames to save, in order."}),
                "filename_prefix": ("STRING", {"default": "Hotshot-XL",
                                               "tooltip": "File name prefix in the output folder; may hold "
                                                          "sub-folders (videos/cat) and %width%, %height%, "
                                                          "%year%, %month%, %day%. A number is added: files are "
                                                          "never overwritten."}),
                "format": (FORMATS, {"default": "mp4", "tooltip": "mp4: H.264, plays anywhere. webm: VP9. gif: "
                                                                  "256 colours. webp: animated WebP."}),
                "fps": ("FLOAT", {"default": float(DEFAULT_FPS), "min": 0.1, "max": 240.0, "step": 0.1,
                                  "tooltip": "Frames per second; Hotshot-XL was trained on 8 fps clips."}),
                "loop": ("INT", {"default": 0, "min": 0, "max": 65535,
                                 "tooltip": "How many times gif and webp files play (0: forever); mp4 and webm "
                                            "ignore it."}),
            }
        }

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Saves the frames as a video file (mp4, webm, gif or animated webp) in ComfyUI's output folder "
                   "and shows it on the node. Everything is checked before encoding, existing files are never "
                   "replaced, and a failed or cancelled save leaves no partial file.")

    def save(self, images, filename_prefix, format, fps, loop):
        import torch

        from ..model.media.video import check_output, write_video

        if format not in FORMATS:
            raise InputError("format", f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] < 1:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError("images", f"expected an IMAGE batch (frames, height, width, 3), got {shape}")
        count, height, width = images.shape[:3]
        folder, stem, counter, subfolder = host.save_path(filename_prefix, host.output_directory(), width, height)
        file = folder / f"{stem}_{counter:05}_.{format}"
        check_output(file, count, fps, loop)  # refuses bad fps/loop and existing files before encoding
        host.check_interrupted()
        write_video(images, file, fps=fps, loop=loop)  # temporary file renamed into place when complete
        ui = {"images": [{"filename": file.name, "subfolder": subfolder, "type": "output"}]}
        if format in _PLAYED_AS_VIDEO or (format == "webp" and count > 1):
            ui["animated"] = (True,)
        return {"ui": ui, "result": ()}
