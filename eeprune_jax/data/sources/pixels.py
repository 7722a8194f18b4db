"""Image helpers of the sources and host pipelines: Pillow JPEG decoding and bilinear
resizing (in-memory sources), and its TF counterpart (TFDS images in tf.data)."""

import concurrent.futures
import io
import os
from typing import Any

import numpy as np


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear Pillow resize of uint8 [N,H,W,C] to [N,size,size,C] (no-op if same size)."""
  if images.shape[1:3] == (size, size):
    return images
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = np.empty((images.shape[0], size, size, images.shape[3]), np.uint8)
  for i, img in enumerate(images):
    for c in range(images.shape[3]):  # per channel: Pillow has no mode for e.g. C=2.
      out[i, :, :, c] = np.asarray(
          Image.fromarray(img[:, :, c]).resize((size, size), Image.BILINEAR))
  return out


def decode_jpeg(data: np.ndarray) -> np.ndarray:
  """uint8 [H, W, C] of one JPEG file's bytes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = np.asarray(Image.open(io.BytesIO(data.tobytes())))
  return img[..., None] if img.ndim == 2 else img


def decode_jpegs(data: np.ndarray, offsets: np.ndarray, start: int, end: int) -> np.ndarray:
  """Decodes JPEG files start..end-1 of a concatenation in parallel threads (Pillow
  releases the GIL while it decodes)."""
  def decode(rows: range) -> list[np.ndarray]:
    return [decode_jpeg(data[offsets[i]:offsets[i + 1]]) for i in rows]
  chunk = 1024  # images per task: few tasks, little scheduling overhead
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    parts = pool.map(decode, (range(s, min(s + chunk, end)) for s in range(start, end, chunk)))
    return np.stack([img for part in parts for img in part])


def tf_resize_uint8(image: Any, size: int) -> Any:
  """TF bilinear (antialiased) resize of uint8 [H,W,C] to [size,size,C]; no-op if equal."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = image.shape
  if shape[0] == size and shape[1] == size:
    return image
  out = tf.image.resize(image, (size, size), method='bilinear', antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)
