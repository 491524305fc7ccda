#!/usr/bin/env python3
"""Regenerates the PIL reference rows that TestMatchesPIL compares against.

Run from this folder with Debian's python3-pil and python3-numpy
(Pillow 9.4, libjpeg-turbo 2.1):  python3 gen.py

Optional: cjpeg from Debian's libjpeg-turbo-progs adds 4:4:0 and 4:1:1
JPEGs, which PIL cannot write.

For each source image it writes NAME.{png,jpg} and NAME.rgb: the
torchvision pipeline Resize(RESIZE) + CenterCrop(SIZE) done with PIL, as
raw RGB bytes (SIZE*SIZE*3, row-major HWC). solid.f32 holds the float32
NCHW row of one image after ToTensor + Normalize(ImageNet), computed in
float32 as torch does.
"""
import os
import struct
import zlib

import numpy as np
from PIL import Image

SIZE, RESIZE = 32, 40
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def reference(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = RESIZE, int(RESIZE * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((nw, nh), Image.BILINEAR)
    top = int(round((nh - SIZE) / 2.0))
    left = int(round((nw - SIZE) / 2.0))
    img = img.crop((left, top, left + SIZE, top + SIZE))
    return np.asarray(img, dtype=np.uint8)


def photo(w, h, seed):
    """Smooth gradients, stripes, a hard edge and noise: something that
    exercises both the filter and JPEG's chroma."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    g = 255 * x / max(w - 1, 1)
    b = 255 * y / max(h - 1, 1)
    rgb = np.stack([r, g, b], axis=-1)
    rgb[:, : w // 3] = 255 - rgb[:, : w // 3]
    rgb += rng.normal(0, 12, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16(path, arr, color_type):
    """Writes a 16-bit PNG by hand (PIL cannot write 16-bit RGB)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)))
        f.write(png_chunk(b"IDAT", zlib.compress(raw)))
        f.write(png_chunk(b"IEND", b""))


def main():
    cases = []
    land = photo(97, 61, 1)  # downscale by ~1.5, odd sizes, crop rounding
    big = photo(300, 200, 2)  # downscale by 5: wide filter support
    port = photo(50, 83, 3)  # portrait
    small = photo(24, 30, 4)  # upscale

    def save(name, img, ext, **kw):
        path = f"{name}.{ext}"
        img.save(path, **kw)
        cases.append(path)

    save("rgb_land", Image.fromarray(land), "png")
    save("rgb_big", Image.fromarray(big), "png")
    save("rgb_port", Image.fromarray(port), "png")
    save("rgb_small", Image.fromarray(small), "png")
    alpha = (np.arange(97 * 61) % 256).reshape(61, 97).astype(np.uint8)
    save("rgba", Image.fromarray(np.dstack([land, alpha]), "RGBA"), "png")
    gray = land.mean(axis=2).astype(np.uint8)
    save("gray", Image.fromarray(gray, "L"), "png")
    save("gray_alpha", Image.fromarray(np.dstack([gray, alpha]), "LA"), "png")
    pal = Image.fromarray(land).quantize(colors=64)
    save("paletted", pal, "png")
    pal_t = Image.fromarray(land).quantize(colors=32)
    save("paletted_trns", pal_t, "png", transparency=3)
    rgb16 = land.astype(np.uint16) * 257 + (np.arange(land.size) % 200).reshape(land.shape).astype(np.uint16)
    write_png16("rgb16.png", rgb16, 2)
    cases.append("rgb16.png")
    rgba16 = np.dstack([rgb16, alpha.astype(np.uint16) * 257])
    write_png16("rgba16.png", rgba16, 6)
    cases.append("rgba16.png")
    for sub, tag in ((0, "444"), (1, "422"), (2, "420")):
        save(f"jpeg{tag}", Image.fromarray(land), "jpg", quality=92, subsampling=sub)
    save("jpeg420_port", Image.fromarray(port), "jpg", quality=92, subsampling=2)
    save("jpeg420_big", Image.fromarray(big), "jpg", quality=92, subsampling=2)
    save("jpeg420_prog", Image.fromarray(land), "jpg", quality=92, subsampling=2, progressive=True)
    save("jpeg_gray", Image.fromarray(gray, "L"), "jpg", quality=92)
    save("jpeg_cmyk", Image.fromarray(land).convert("CMYK"), "jpg", quality=92)

    # Sampling factors PIL cannot write, made with libjpeg-turbo's cjpeg
    # (Debian's libjpeg-turbo-progs) when it is installed.
    import shutil
    import subprocess

    if shutil.which("cjpeg"):
        Image.fromarray(land).save("land.ppm")
        for tag, sample in (("440", "1x2"), ("411", "4x1")):
            subprocess.run(["cjpeg", "-quality", "92", "-sample", sample, "-outfile", f"jpeg{tag}.jpg", "land.ppm"], check=True)
            cases.append(f"jpeg{tag}.jpg")
        os.remove("land.ppm")

    for path in cases:
        name = path.rsplit(".", 1)[0]
        with open(f"{name}.rgb", "wb") as f:
            f.write(reference(path).tobytes())

    ref = reference("rgb_land.png").astype(np.float32)
    x = (ref / np.float32(255) - MEAN) / STD
    with open("rgb_land.f32", "wb") as f:
        f.write(x.transpose(2, 0, 1).astype("<f4").tobytes())


if __name__ == "__main__":
    main()
