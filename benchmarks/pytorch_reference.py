"""A plain PyTorch loop of the project's CIFAR ResNet-18 recipe, as a speed reference.

  python benchmarks/pytorch_reference.py --npz_path=cifar10_jpeg.npz --epochs=20 --json
  python benchmarks/pytorch_reference.py --npz_path=cifar10_jpeg.npz --smoke --json  # seconds

The same network as `models.resnet` in CIFAR form (3x3 stride-1 stem, no max-pool, no
exits), the same recipe as `configs/loop_benchmark.py:gpu` (SGD with Nesterov momentum
0.9, weight decay 5e-4 on conv and dense kernels only, learning rate 0.2 with one epoch of
linear warm-up then cosine to zero per step, batch 512, pad-4 crop + flip, every epoch
evaluated on the test split), written the way a PyTorch user would: eager mode, bfloat16
autocast, channels_last, and the whole data set on the GPU as uint8 with augmentation on
the GPU (no DataLoader), so the comparison is of training loops, not of input pipelines.

Prints the eager train step's examples/s on a fixed batch, the training phase's and eval
phase's examples/s, the whole run's wall time and the final test accuracy. torch is
imported here only; it is never a dependency of eeprune-jax.
"""

import argparse
import io
import json
import math
import time

import numpy as np


def _decode(npz_path: str, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The split's images and labels, the first `limit` only if it is not 0."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with np.load(npz_path) as f:
    data, offsets, labels = f[f'{split}_jpeg'], f[f'{split}_offsets'], f[f'{split}_labels']
  count = min(limit, len(labels)) if limit else len(labels)
  images = np.stack([np.asarray(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())))
                     for i in range(count)])
  return images, labels[:count].astype(np.int64)


def _resnet18(num_classes: int):
  import torch.nn as nn  # pylint: disable=g-import-not-at-top

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.down = None
      if stride != 1 or cin != cout:
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                  nn.BatchNorm2d(cout))

    def forward(self, x):
      y = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
      return (y + (x if self.down is None else self.down(x))).relu()

  layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
  cin = 64
  for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
    layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
    cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
  return nn.Sequential(*layers)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--npz_path', required=True)
  parser.add_argument('--epochs', type=int, default=20)
  parser.add_argument('--batch_size', type=int, default=512)
  parser.add_argument('--eval_batch_size', type=int, default=1000)
  parser.add_argument('--lr', type=float, default=0.2)
  parser.add_argument('--step_rounds', type=int, default=30)
  parser.add_argument('--train_examples', type=int, default=0,
                      help='Train on the first N examples only (0: all; for smoke runs).')
  parser.add_argument('--smoke', action='store_true',
                      help='seconds, for tests: 1 epoch of 64 examples, batch 32, 2 timed '
                      'steps; figures mean nothing.')
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args()
  if args.smoke:
    args.epochs, args.batch_size, args.eval_batch_size = 1, 32, 32
    args.step_rounds, args.train_examples = 2, 64
  start_all = time.time()
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)

  train_x, train_y = _decode(args.npz_path, 'train', args.train_examples)
  test_x, test_y = _decode(args.npz_path, 'test', args.train_examples)
  to_dev = lambda a: torch.from_numpy(a).to(device)
  train_x, train_y, test_x, test_y = map(to_dev, (train_x, train_y, test_x, test_y))
  mean = torch.tensor([125.3, 123.0, 113.9], device=device).view(1, 3, 1, 1)
  std = torch.tensor([63.0, 62.1, 66.7], device=device).view(1, 3, 1, 1)

  def prepare(x_uint8, augment):
    x = x_uint8.permute(0, 3, 1, 2).float()
    if augment:
      n = x.shape[0]
      x = F.pad(x, (4, 4, 4, 4))
      dy = torch.randint(0, 9, (n,), device=device)
      dx = torch.randint(0, 9, (n,), device=device)
      rows = (dy[:, None] + torch.arange(32, device=device)[None])  # [n, 32]
      cols = (dx[:, None] + torch.arange(32, device=device)[None])
      x = x[torch.arange(n, device=device)[:, None, None, None],
            torch.arange(3, device=device)[None, :, None, None],
            rows[:, None, :, None], cols[:, None, None, :]]
      flip = torch.rand(n, device=device) < 0.5
      x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last)

  model = _resnet18(10).to(device).to(memory_format=torch.channels_last)
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  opt = torch.optim.SGD([{'params': decay, 'weight_decay': 5e-4},
                         {'params': no_decay, 'weight_decay': 0.0}],
                        lr=args.lr, momentum=0.9, nesterov=True)
  n = train_x.shape[0]
  steps_per_epoch = n // args.batch_size
  total = args.epochs * steps_per_epoch
  autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)

  def lr_at(step):
    e = step / steps_per_epoch
    if e < 1.0:
      return args.lr * e
    return args.lr * 0.5 * (1 + math.cos(math.pi * min((e - 1) / max(args.epochs - 1, 1e-9), 1)))

  def train_step(x, y):
    with autocast():
      loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
  # The eager step on a fixed batch (as benchmarks/loop.py times the project's step).
  fixed_x, fixed_y = prepare(train_x[:args.batch_size], True), train_y[:args.batch_size]
  model.train()
  for _ in range(5):
    train_step(fixed_x, fixed_y)
  sync()
  t = time.perf_counter()
  for _ in range(args.step_rounds):
    train_step(fixed_x, fixed_y)
  sync()
  step_ips = args.step_rounds * args.batch_size / (time.perf_counter() - t)
  model = _resnet18(10).to(device).to(memory_format=torch.channels_last)  # fresh for the run
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  opt = torch.optim.SGD([{'params': decay, 'weight_decay': 5e-4},
                         {'params': no_decay, 'weight_decay': 0.0}],
                        lr=args.lr, momentum=0.9, nesterov=True)

  train_s = eval_s = 0.0
  step = 0
  run_start = time.perf_counter()
  for epoch in range(args.epochs):
    model.train()
    t = time.perf_counter()
    order = torch.randperm(n, device=device)
    for s in range(steps_per_epoch):
      idx = order[s * args.batch_size:(s + 1) * args.batch_size]
      for group in opt.param_groups:
        group['lr'] = lr_at(step)
      train_step(prepare(train_x[idx], True), train_y[idx])
      step += 1
    sync()
    train_s += time.perf_counter() - t
    model.eval()
    t = time.perf_counter()
    correct = torch.zeros((), device=device)
    with torch.no_grad(), autocast():
      for s in range(0, test_x.shape[0], args.eval_batch_size):
        logits = model(prepare(test_x[s:s + args.eval_batch_size], False))
        correct += (logits.argmax(-1) == test_y[s:s + args.eval_batch_size]).sum()
    accuracy = float(correct) / test_x.shape[0]  # one host read per epoch
    eval_s += time.perf_counter() - t
    print(f'epoch {epoch + 1:3d}  test accuracy {accuracy:.4f}', flush=True)
  out = {
      'device': torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
      'torch': torch.__version__, 'epochs': args.epochs, 'batch_size': args.batch_size,
      'eager_step_examples_per_s': step_ips,
      'train_examples_per_s': total * args.batch_size / train_s,
      'eval_examples_per_s': args.epochs * test_x.shape[0] / eval_s,
      'run_seconds': time.perf_counter() - run_start,
      'process_seconds': time.time() - start_all,
      'final_test_accuracy': accuracy,
  }
  for k, v in out.items():
    print(f'  {k:28s} {v}')
  if args.json:
    print(json.dumps(out))


if __name__ == '__main__':
  main()
