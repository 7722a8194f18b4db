"""What a training run writes as it goes: TensorBoard scalars, console lines and the
progress bar, progress.json and the per-epoch last-pass tables.

Only the writing process (process 0) writes; on the others every call does nothing.
"""

from typing import Any

import numpy as np
import tqdm

from eeprune_jax import workdir as workdir_lib


class RunWriters:
  """The run's TensorBoard writer, progress bar and per-epoch files."""

  def __init__(self, paths: workdir_lib.RunDir, *, is_writer: bool, num_exits: int,
               progress_bar: bool):
    self.paths, self.is_writer, self.num_exits = paths, is_writer, num_exits
    self._show_bar = progress_bar and is_writer
    self.bar = tqdm.tqdm(total=0, disable=True)  # replaced by `open_bar`
    self.tensorboard = None
    if is_writer:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self.tensorboard = tensorboardX.SummaryWriter(str(paths.tensorboard))

  def open_bar(self, total: int, initial: int) -> None:
    """The console progress bar over the run's train steps."""
    self.bar = tqdm.tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True,
                         disable=not self._show_bar)

  def scalars(self, step: int, scalars: dict[str, Any]) -> None:
    """Writes scalars (lists become one scalar per output) to TensorBoard."""
    if not self.tensorboard:
      return
    names = [f'exit{k}' for k in range(self.num_exits)] + ['final']
    for key, value in scalars.items():
      if isinstance(value, list):
        for name, v in zip(names, value):
          self.tensorboard.add_scalar(f'{key}/{name}', v, step)
      elif isinstance(value, (int, float)):
        self.tensorboard.add_scalar(key, value, step)
    self.tensorboard.flush()

  def epoch(self, record: dict[str, Any], num_train: int, num_epochs: int) -> None:
    """An epoch's record: TensorBoard, one console line and progress.json."""
    self.scalars(record['step'], record)
    if not self.is_writer:
      return
    self.bar.write(epoch_line(record, num_train))
    workdir_lib.write_json(self.paths.progress, {
        'epoch': record['epoch'], 'num_epochs': num_epochs,
        'test_accuracy': record['eval_accuracy'][-1]})

  def last_pass(self, epoch: int, table: dict[str, np.ndarray]) -> None:
    """The per-example table's pass fields after `epoch` (1-based) in compact dtypes,
    `index` in canonical order: last_pass/epoch{E}.npz."""
    if not self.is_writer:
      return
    path = self.paths.last_pass(epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    with np.errstate(over='ignore'):  # a loss above float16's 65504 (divergence) is inf
      loss = table['loss'].astype(np.float16)
    workdir_lib.write_npz(path, index=np.arange(len(table['epoch']), dtype=np.int32),
                          conf=table['conf'].astype(np.float16), correct=table['correct'],
                          loss=loss, epoch=table['epoch'].astype(np.int16))

  def close(self) -> None:
    """Closes the bar and the TensorBoard writer."""
    self.bar.close()
    if self.tensorboard:
      self.tensorboard.close()


def epoch_line(record: dict[str, Any], num_train: int) -> str:
  """One console line per epoch: train/test accuracy of every exit, final last."""
  fmt = lambda accs: '/'.join(f'{a:.3f}' for a in accs)
  kept = f'  kept {record["kept"] / num_train:.1%}' if record['kept'] < num_train else ''
  return (f"epoch {record['epoch']:>3}  step {record['step']:>7}  "
          f"train acc {fmt(record['train_accuracy'])}  test acc {fmt(record['eval_accuracy'])}"
          f"{kept}")
