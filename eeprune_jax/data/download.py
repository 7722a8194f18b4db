"""Downloads and prepares a TFDS data set that is not prepared yet (`data.download`).

TFDS's own download retries an unreachable host for minutes (10 tries with backoff, and
the same again per file), so before each HTTP(S) file this module probes the file's host
with one TCP connection bounded by `PROBE_TIMEOUT_S`; an unreachable host ends the
download at once with the reason. Prepared copies on TFDS's GCS bucket are not tried:
that path retries too, and the original files are what the builder's checksums cover.
A data set whose files must be fetched by hand (imagenet2012) is prepared from
`<data dir>/downloads/manual` when that folder holds files, and otherwise stops naming it.
"""

import concurrent.futures
import contextlib
import os
import socket
from typing import Any, Iterator
from urllib import parse

PROBE_TIMEOUT_S = 10.0  # connect + name lookup, per host


class DownloadUnavailableError(ConnectionError):
  """The host of a file to download cannot be reached from here."""


def _probe(url: str) -> None:
  """Raises DownloadUnavailableError unless a TCP connection to `url`'s host opens in time."""
  parts = parse.urlsplit(url)
  host, port = parts.hostname, parts.port or (443 if parts.scheme == 'https' else 80)
  if os.environ.get('HTTPS_PROXY') or os.environ.get('https_proxy') or os.environ.get(
      'HTTP_PROXY') or os.environ.get('http_proxy'):
    return  # the proxy, not this machine, reaches the host
  # The name lookup has no timeout of its own; a thread bounds it.
  pool = concurrent.futures.ThreadPoolExecutor(1)
  future = pool.submit(socket.create_connection, (host, port), PROBE_TIMEOUT_S)
  try:
    future.result(timeout=PROBE_TIMEOUT_S + 1).close()
  except concurrent.futures.TimeoutError:
    raise DownloadUnavailableError(
        f'{host}:{port} did not answer within {PROBE_TIMEOUT_S:g} s') from None
  except OSError as e:
    raise DownloadUnavailableError(f'cannot reach {host}:{port} ({e})') from None
  finally:
    pool.shutdown(wait=False)


@contextlib.contextmanager
def _probed_downloads() -> Iterator[None]:
  """TFDS's downloader probes each HTTP(S) host first, and reads with a timeout."""
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  open_url = downloader._open_url  # pylint: disable=protected-access

  def probed(url: str, **kwargs: Any) -> Any:
    if url.startswith('http'):
      _probe(url)
      kwargs.setdefault('timeout', (PROBE_TIMEOUT_S, 120.0))  # (connect, between reads)
    return open_url(url, **kwargs)

  downloader._open_url = probed  # pylint: disable=protected-access
  try:
    yield
  finally:
    downloader._open_url = open_url  # pylint: disable=protected-access


def manual_dir(builder: Any) -> str:
  """`<data dir>/downloads/manual`: where TFDS looks for files fetched by hand."""
  return os.path.join(os.fspath(builder._data_dir_root), 'downloads', 'manual')  # pylint: disable=protected-access


def needs_manual_files(builder: Any) -> bool:
  """Whether the builder's files must be fetched by hand and its manual folder is empty."""
  if not getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None):
    return False
  folder = manual_dir(builder)
  return not (os.path.isdir(folder) and os.listdir(folder))


def download_and_prepare(builder: Any) -> None:
  """Downloads and prepares `builder`'s data set into its data dir, with TFDS's progress bars.

  Raises:
    DownloadUnavailableError: a host could not be reached (within about 12 s per host).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  print(f'Downloading and preparing TFDS data set {builder.name!r} into '
        f'{os.fspath(builder.data_dir)!r} (once; later runs read the prepared copy).',
        flush=True)
  config = tfds.download.DownloadConfig(try_download_gcs=False, manual_dir=manual_dir(builder))
  with _probed_downloads():
    try:
      builder.download_and_prepare(download_config=config)
    except Exception as e:  # pylint: disable=broad-except
      # TFDS may wrap the probe's error; find it in the chain.
      cause = e
      while cause is not None and not isinstance(cause, DownloadUnavailableError):
        cause = cause.__cause__ or cause.__context__
      if cause is not None:
        raise cause from None
      raise
