"""Image helpers of the sources and host pipelines: Pillow JPEG decoding and bilinear
resizing (in-memory sources), and its TF counterpart (TFDS images in tf.data), with the
wrapper every function given to tf.data goes through (`tf_plain`)."""

import concurrent.futures
import io
import os
from typing import Any, Callable

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


def tf_plain(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn` for tf.data to trace as written, not rewritten by AutoGraph.

  For functions that branch on Python values only (all of this project's). AutoGraph's
  source rewriting took about 2.5 of the 18.7 CPU-seconds of a small tfdata run
  (`python -m eeprune_jax.main --config=configs/cifar100.py`, shrunk as
  tests/test_host_paths.py does, 3 epochs).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.autograph.experimental.do_not_convert(fn)
