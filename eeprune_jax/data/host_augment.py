"""Per-example decoding and augmentation on the host, in numpy and Pillow (grain workers).

The same augmentations as `augment` (JAX, device backend) and the tf.data backend, with
the same parameter distributions, drawn from `np.random.default_rng((seed, epoch, index))`
so an example's augmentation depends only on (seed, epoch, index):

* 'cifar': zero padding of 4 pixels, a random image_size crop, a horizontal flip (p=1/2).
* 'imagenet': random resized crop (area 8%..100% of the stored image, log-uniform aspect
  ratio 3/4..4/3, one draw clipped to the image) resized to image_size, then a flip; the
  resize is OpenCV's bilinear of the crop's whole pixels, not antialiased (as the tf.data
  backend and google/flax's ImageNet pipeline: training crops of photos shrink by at most
  ~1.8x), or, without OpenCV, Pillow's (antialiased) bilinear `resize(box=...)` of the
  exact box;
  eval: the shorter side resized to image_size / 0.875 and a central image_size crop.
* 'none': the image at image_size.

JPEG DECODER, chosen by measurement (this machine, 2 shared cores; 40 synthetic 400x350
q90 JPEGs of ~73 kB, decode + random-resized crop to 224 + resize, ms per image):
simplejpeg 1.45, Pillow 1.63, Pillow with `draft` 1.65 (draft only helps when the crop is
at least twice the output size, which ImageNet-sized images rarely are), TensorFlow's
`decode_and_crop_jpeg` called eagerly 2.47. So JPEGs go through simplejpeg (libjpeg-turbo)
when it is installed and Pillow otherwise; other formats (PNG: TFDS CIFAR) through Pillow.
The crop's resize, same images (ms per image): Pillow 0.95-1.05, OpenCV bilinear 0.1 (area
averaging, antialiased, 0.45); so OpenCV when it is installed.
"""

import io
from typing import Any

import numpy as np

IMAGENET_CROP_FRACTION = 0.875
CIFAR_PAD = 4

try:
  import simplejpeg  # pylint: disable=g-import-not-at-top
except ImportError:  # optional: Pillow decodes JPEGs too, about 12% slower.
  simplejpeg = None

try:
  import cv2  # pylint: disable=g-import-not-at-top
  # Grain runs one worker process per core: OpenCV's own threads would oversubscribe them.
  cv2.setNumThreads(1)
except ImportError:  # optional: Pillow resizes too, 2-8x slower.
  cv2 = None


def _pil() -> Any:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return Image


def decode(data: bytes, channels: int) -> np.ndarray:
  """Encoded image bytes -> uint8 [H, W, channels]."""
  if simplejpeg is not None and data[:2] == b'\xff\xd8':
    image = simplejpeg.decode_jpeg(data, colorspace='RGB' if channels == 3 else 'GRAY')
  else:
    image = np.asarray(_pil().open(io.BytesIO(data)).convert('RGB' if channels == 3 else 'L'))
  return image.reshape(image.shape[0], image.shape[1], channels)


def _to_pil(image: np.ndarray) -> Any:
  c = image.shape[-1]
  if c not in (1, 3):
    raise ValueError(f'host augmentation resizes 1- or 3-channel images, not {c} channels.')
  return _pil().fromarray(image[:, :, 0] if c == 1 else image)


def _from_pil(pil: Any, channels: int) -> np.ndarray:
  out = np.asarray(pil)
  return out.reshape(out.shape[0], out.shape[1], channels)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Pillow bilinear resize of uint8 [H, W, C] to [height, width, C] (no-op if equal)."""
  if image.shape[:2] == (height, width):
    return image
  pil = _to_pil(image).resize((width, height), _pil().BILINEAR)
  return _from_pil(pil, image.shape[-1])


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator, *,
                        flip: bool = False) -> np.ndarray:
  """One random resized crop (see the module docstring) of uint8 [H,W,C] to [size,size,C];
  with `flip`, then a horizontal flip with probability 1/2 (in Pillow: one copy fewer
  than flipping the array)."""
  h, w, c = image.shape
  area = rng.uniform(0.08, 1.0) * h * w
  ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
  cw = float(np.clip(np.sqrt(area * ratio), 1.0, w))
  ch = float(np.clip(np.sqrt(area / ratio), 1.0, h))
  y0 = rng.uniform() * (h - ch)
  x0 = rng.uniform() * (w - cw)
  flip = flip and rng.uniform() < 0.5
  if cv2 is not None:
    top, left = int(y0), int(x0)
    crop = image[top:max(top + 1, round(y0 + ch)), left:max(left + 1, round(x0 + cw))]
    out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, c)
    return out[:, ::-1] if flip else out  # a view: grain's batching copies it once
  Image = _pil()  # pylint: disable=invalid-name
  pil = _to_pil(image).resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
  if flip:
    pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
  return _from_pil(pil, c)


def cifar_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Zero-pad by 4 and take a random crop of the original size."""
  h, w, _ = image.shape
  padded = np.pad(image, ((CIFAR_PAD, CIFAR_PAD), (CIFAR_PAD, CIFAR_PAD), (0, 0)))
  dy, dx = rng.integers(0, 2 * CIFAR_PAD + 1, size=2)
  return padded[dy:dy + h, dx:dx + w]


def imagenet_eval(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter side to size / 0.875, then the central size x size crop."""
  h, w, _ = image.shape
  scale = size / IMAGENET_CROP_FRACTION / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  image = _resize(image, nh, nw)
  top, left = (nh - size) // 2, (nw - size) // 2
  return image[top:top + size, left:left + size]


def train_view(image: np.ndarray, kind: str, size: int, rng: np.random.Generator
               ) -> np.ndarray:
  """The augmented training view of one image (stored size for 'imagenet' crops)."""
  if kind == 'imagenet':
    return random_resized_crop(image, size, rng, flip=True)
  image = _resize(image, size, size)
  if kind == 'cifar':
    image = cifar_crop(image, rng)
  if kind != 'none' and rng.uniform() < 0.5:
    image = image[:, ::-1]  # a view: grain's batching copies it once
  return image


def eval_view(image: np.ndarray, kind: str, size: int, *, stored: bool) -> np.ndarray:
  """The un-augmented view: for 'imagenet' images at their stored size (`stored`), the
  resize + central crop; otherwise the image at size x size."""
  if kind == 'imagenet' and stored:
    return imagenet_eval(image, size)
  return _resize(image, size, size)
