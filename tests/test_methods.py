"""The method registry and protocol: masks pinned to the pre-plug-in code, a toy method.

The pinned cases were computed by `pruning_methods.prune` and `rounds.infobatch_epoch` at
commit 7044757, before the methods became plug-ins: every built-in method must keep
giving the same masks on the same scores and seeds.
"""

import ast
import hashlib
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from eeprune_jax import compare
from eeprune_jax import config_checks
from eeprune_jax import methods
from eeprune_jax import example_table
import source_ast
import tiny_config
import xla_env

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
BUILTIN = ('eeprune', 'eeprune_dynamic', 'el2n', 'final_confidence', 'forgetting', 'grand',
           'infobatch', 'none', 'random', 'random_balanced')

# case -> (num pruned, shortfall, cutoff, sha256 of the packed keep mask, first 16 digits)
PINNED = {
    'eeprune_b0_p0_t12': (12, 0, 0.71, '6b70d836b1fc5901'),
    'eeprune_b0_p0_t30': (27, 3, 0.0, '007201c92255f082'),
    'eeprune_b0_p1_t12': (12, 0, 0.87, 'a94145425d9dbec1'),
    'eeprune_b0_p1_t30': (30, 0, 0.01, '868da66d4cd42afa'),
    'eeprune_b1_p0_t12': (12, 0, 0.67, '365c73f6bbb8cfd8'),
    'eeprune_b1_p0_t30': (27, 3, 0.0, '007201c92255f082'),
    'eeprune_b1_p1_t12': (12, 0, 0.76, '0d0b5af09fe8f786'),
    'eeprune_b1_p1_t30': (29, 1, 0.01, '1dc097657fa3b657'),
    'final_confidence_b0_p0_t12': (12, 0, 0.73, '56e4470a4a5619e0'),
    'final_confidence_b0_p0_t30': (30, 0, 0.44, '1e54c1733484924f'),
    'final_confidence_b0_p1_t12': (12, 0, 0.79, '37e27e15b215221f'),
    'final_confidence_b0_p1_t30': (30, 0, 0.45, 'cf4a952a8658b7fc'),
    'final_confidence_b1_p0_t12': (12, 0, 0.66, 'c781f1f2777d907b'),
    'final_confidence_b1_p0_t30': (30, 0, 0.43, '5eb97929589b1a6d'),
    'final_confidence_b1_p1_t12': (12, 0, 0.73, '38d27bb28eb4097f'),
    'final_confidence_b1_p1_t30': (30, 0, 0.43, 'aad1e60901067378'),
    'random_b0_p0_t12': (12, 0, 0.816338, '810e52921df51fcf'),
    'random_b0_p0_t30': (30, 0, 0.507772, '6c3c48ae0a1aa764'),
    'random_b0_p1_t12': (12, 0, 0.84715, '0e36b4b236b7ab24'),
    'random_b0_p1_t30': (30, 0, 0.514889, '6ab37dff11e8c520'),
    'random_b1_p0_t12': (12, 0, 0.775686, 'b058f4d77d563db2'),
    'random_b1_p0_t30': (30, 0, 0.369536, '78c5e7ac9ce5cda3'),
    'random_b1_p1_t12': (12, 0, 0.797069, '0d4bc2eadd4f7581'),
    'random_b1_p1_t30': (30, 0, 0.369536, '8292f30885602ce8'),
    'random_balanced_b0_p0_t12': (12, 0, -0.176105, '6cf3dbf1b19224ae'),
    'random_balanced_b0_p0_t30': (30, 0, -0.504646, 'e7ee0470e452fe61'),
    'random_balanced_b0_p1_t12': (12, 0, -0.116755, 'cdb59a72410215e0'),
    'random_balanced_b0_p1_t30': (30, 0, -0.436076, '080a023d427fe729'),
    'random_balanced_b1_p0_t12': (12, 0, -0.176105, '6cf3dbf1b19224ae'),
    'random_balanced_b1_p0_t30': (30, 0, -0.508145, '751aff92d4a25c93'),
    'random_balanced_b1_p1_t12': (12, 0, -0.174169, '323e565cc36c859b'),
    'random_balanced_b1_p1_t30': (30, 0, -0.508145, 'f715110b9f11851d'),
    'el2n_b0_p0_t12': (12, 0, -0.265, '8a514b2dc1c76983'),
    'el2n_b0_p0_t30': (30, 0, -0.465, 'ef887e02e77f8f73'),
    'el2n_b0_p1_t12': (12, 0, -0.21, '5cf2c4199bbdf0aa'),
    'el2n_b0_p1_t30': (30, 0, -0.43, 'e52a56cd42156223'),
    'el2n_b1_p0_t12': (12, 0, -0.285, '16f287ca10613236'),
    'el2n_b1_p0_t30': (30, 0, -0.475, 'c4b33bcd5e369663'),
    'el2n_b1_p1_t12': (12, 0, -0.265, '9e65efcac7f1a490'),
    'el2n_b1_p1_t30': (30, 0, -0.475, 'ce8792efc09978be'),
    'grand_b0_p0_t12': (12, 0, -0.7, '8e78710c7de8ad3d'),
    'grand_b0_p0_t30': (30, 0, -1.45, '440b4e82718c5060'),
    'grand_b0_p1_t12': (12, 0, -0.65, '4caaf89405da8de3'),
    'grand_b0_p1_t30': (30, 0, -1.35, '3ac9c1045a8db596'),
    'grand_b1_p0_t12': (12, 0, -1.0, '5426e2b178474de1'),
    'grand_b1_p0_t30': (30, 0, -1.6, '64a83e96a27f1bf1'),
    'grand_b1_p1_t12': (12, 0, -0.65, '9a598f10cc7a47a3'),
    'grand_b1_p1_t30': (30, 0, -1.6, '92ea709200b20ee7'),
    'forgetting_b0_p0_t12': (12, 0, -0.49775, 'b9ba844fa95e5aa3'),
    'forgetting_b0_p0_t30': (30, 0, -2.005897, 'b00f061453666222'),
    'forgetting_b0_p1_t12': (12, 0, -0.294996, 'b6700c9570d61efb'),
    'forgetting_b0_p1_t30': (30, 0, -1.370885, '5646144dc2d1687f'),
    'forgetting_b1_p0_t12': (12, 0, -1.002633, '6bdfe3c2aa5b0e99'),
    'forgetting_b1_p0_t30': (30, 0, -2.248437, 'c416e3bb50837544'),
    'forgetting_b1_p1_t12': (12, 0, -0.49775, '97c7c4d97a32db99'),
    'forgetting_b1_p1_t30': (30, 0, -2.233103, '8cb21de3582c5450'),
    'eeprune_threshold0.3_exit0': (20, 0, 0.4, '5b0d026cf54a1fc2'),
    'eeprune_threshold0.8_exit0': (9, 0, 0.81, '8143c8b36f88b537'),
    'eeprune_threshold0.3_exit1': (24, 0, 0.32, '753f152370ffffb1'),
    'eeprune_threshold0.8_exit1': (4, 0, 0.81, '1a154c9fe9504ab0'),
    'final_confidence_threshold0.3_exit0': (37, 0, 0.32, '3532132b8b046f9b'),
    'final_confidence_threshold0.8_exit0': (7, 0, 0.82, '384a1284901fcc91'),
    'final_confidence_threshold0.3_exit1': (37, 0, 0.32, '3532132b8b046f9b'),
    'final_confidence_threshold0.8_exit1': (7, 0, 0.82, '384a1284901fcc91'),
    'eeprune_exit1_t20': (20, 0, 0.4, '97acd40fa9b5642e'),
}
# epoch -> (num dropped, sha256 of packed keep + weights, first 16 digits)
PINNED_INFOBATCH = {
    0: (0, '0f74241b298757c6'),
    1: (0, '0f74241b298757c6'),
    2: (12, 'bc637266ca559f18'),
    3: (12, '89b6dd923064e69c'),
    4: (5, 'ab0838b397e0e1ba'),
    5: (11, 'fe07f77a2bbe5611'),
    6: (0, '0f74241b298757c6'),
    7: (0, '0f74241b298757c6'),
}


def synthetic_scores(n: int = 60, num_classes: int = 4, seed: int = 3):
  """Every array any method selects by, as a pruning round lays them out."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % num_classes
  wrong = lambda p: np.where(rng.random(n) < p, (labels + 1) % num_classes, labels)
  pred = np.stack([wrong(0.4), wrong(0.3), wrong(0.2)], 1)
  conf = np.round(rng.random((n, 3)), 2)  # rounded: ties exercise the index tie-break
  return {'index': np.arange(n), 'label': labels, 'pred': pred, 'conf': conf,
          'el2n_runs': np.round(rng.random((2, n)), 2),
          'grand_runs': np.round(rng.random((2, n)) * 3, 1),
          'forget_counts': rng.integers(0, 4, n), 'never_learned': rng.random(n) < 0.1,
          'presented': rng.random(n) < 0.9}


def cases():
  """(name, prune config, target_pruned, prior keep) of every case."""
  n = 60
  prior = np.ones(n, bool)
  prior[[1, 5, 9, 30, 31]] = False
  for method, balanced, has_prior, target in itertools.product(
      ('eeprune', 'final_confidence', 'random', 'random_balanced', 'el2n', 'grand',
       'forgetting'), (False, True), (False, True), (12, 30)):
    cfg = ml_collections.ConfigDict(dict(method=method, mode='fraction', threshold=0.9, exit=0,
                                         class_balanced=balanced))
    yield (f'{method}_b{int(balanced)}_p{int(has_prior)}_t{target}', cfg, target,
           prior if has_prior else None)
  for method, exit_, threshold in itertools.product(('eeprune', 'final_confidence'), (0, 1),
                                                    (0.3, 0.8)):
    cfg = ml_collections.ConfigDict(dict(method=method, mode='threshold', threshold=threshold,
                                         exit=exit_, class_balanced=False))
    yield f'{method}_threshold{threshold}_exit{exit_}', cfg, 0, None
  cfg = ml_collections.ConfigDict(dict(method='eeprune', mode='fraction', threshold=0.9,
                                       exit=1, class_balanced=False))
  yield 'eeprune_exit1_t20', cfg, 20, prior


def infobatch_config():
  """A run config's fields InfoBatch reads."""
  return ml_collections.ConfigDict(dict(
      seed=5, train=dict(num_epochs=8),
      prune=dict(method='infobatch', epoch=2, fraction=0.4, infobatch_anneal=0.25)))


def infobatch_losses(n: int = 60):
  """Latest training losses with some examples not seen yet (nan)."""
  losses = np.round(np.random.default_rng(11).random(n) * 2, 2)
  losses[[3, 17, 40]] = np.nan
  return losses


def _sha(*arrays: np.ndarray) -> str:
  return hashlib.sha256(b''.join(a.tobytes() for a in arrays)).hexdigest()[:16]


def test_every_builtin_method_keeps_its_pre_plugin_masks():
  scores = synthetic_scores()
  got = {}
  for name, cfg, target, prior in cases():
    r = methods.prune(cfg, scores=scores, labels=scores['label'], prior_keep=prior,
                      target_pruned=target, rng=np.random.default_rng(7))
    cutoff = None if np.isnan(r.cutoff) else round(float(r.cutoff), 6)
    got[name] = (int((~r.keep).sum()), r.shortfall, cutoff, _sha(np.packbits(r.keep)))
  assert got == PINNED


def test_infobatch_keeps_its_pre_plugin_epoch_masks():
  config, losses = infobatch_config(), infobatch_losses()
  # A table whose last final-exit losses are `losses` (NaN: never trained on).
  table = example_table.empty(len(losses), 2)
  table['epoch'][:] = np.where(np.isnan(losses), -1, 0)
  table['loss'][:, -1] = np.nan_to_num(losses)
  np.testing.assert_array_equal(example_table.last_loss(table), losses.astype(np.float32))
  got = {}
  for epoch in range(8):
    keep, weight = methods.get('infobatch').epoch_mask(config, epoch, table)
    got[epoch] = (int((~keep).sum()), _sha(np.packbits(keep), weight))
  assert got == PINNED_INFOBATCH


def test_registry_holds_every_builtin_method():
  assert set(BUILTIN) <= set(methods.names())
  for name in BUILTIN:
    method = methods.get(name)
    assert method.name == name and type(method).__doc__
  with pytest.raises(ValueError, match=r"unknown prune.method='bogus'.*eeprune, .*el2n"):
    methods.get('bogus')


def test_a_name_registers_once():
  with pytest.raises(ValueError, match="'random' is already registered"):
    @methods.register
    class Other(methods.Method):  # pylint: disable=unused-variable
      name = 'random'


def test_config_checks_and_compare_ask_the_registry():
  config = tiny_config.get_config()
  config.prune.method = 'small_loss'
  with pytest.raises(config_checks.ConfigError, match="prune.method='small_loss'"):
    config_checks.validate(config)
  import toy_method  # pylint: disable=g-import-not-at-top,unused-import
  try:
    config_checks.validate(config)
    assert compare.entries()['small_loss'] == compare.Entry('small_loss')
    config.compare = ml_collections.ConfigDict(
        {'methods': 'none,small_loss', 'fractions': '0.3', 'seeds': '0'})
    assert [s.name for s in compare.plan_runs(config.compare)] == [
        'none_f0_s0', 'small_loss_f0.3_s0']
  finally:
    methods.unregister('small_loss')


def _switches_on_a_method_name(tree: ast.AST) -> list[str]:
  """Comparisons of a `method` (variable or attribute) with a string literal."""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Compare):
      operands = [node.left, *node.comparators]
      strings = [c for o in operands for c in ast.walk(o)
                 if isinstance(c, ast.Constant) and isinstance(c.value, str)]
      if strings and any(re.search(r'\bmethod\b', ast.unparse(o)) for o in operands):
        found.append(ast.unparse(node))
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr in ('startswith', 'endswith')
          and re.search(r'\bmethod\b', ast.unparse(node.func.value))):
      found.append(ast.unparse(node))
  return found


def test_no_module_outside_methods_switches_on_a_method_name():
  files = [p for p in (REPO / 'eeprune_jax').rglob('*.py') if 'methods' not in p.parts]
  trees = source_ast.parse(*(p.read_text() for p in files))
  found = {str(p.relative_to(REPO)): _switches_on_a_method_name(t)
           for p, t in zip(files, trees)}
  assert {k: v for k, v in found.items() if v} == {}
  # The check itself finds the old kind of dispatch.
  assert all(map(_switches_on_a_method_name, source_ast.parse(
      "if p.method in ('el2n', 'grand'): pass", "r.method.startswith('eeprune')")))


def _method_modules_imported(tree: ast.AST) -> list[str]:
  """Imports of a method module (eeprune_jax.methods.<name>, base excepted)."""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      names = ([f'{node.module}.{a.name}' for a in node.names]
               if node.module == 'eeprune_jax.methods' else [node.module])
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    else:
      continue
    found += [m for m in names if re.fullmatch(r'eeprune_jax\.methods\.(?!base$)\w+', m)]
  return found


def test_no_module_outside_methods_imports_a_method_module():
  """Only `methods/` knows the methods: everything else asks the registry."""
  files = [p for d in ('eeprune_jax', 'benchmarks', 'docs', 'launch')
           for p in (REPO / d).rglob('*.py') if 'methods' not in p.parts]
  assert len(files) > 40
  trees = source_ast.parse(*(p.read_text() for p in files))
  found = {str(p.relative_to(REPO)): _method_modules_imported(t) for p, t in zip(files, trees)}
  assert {k: v for k, v in found.items() if v} == {}
  # The check itself finds both spellings.
  two_spellings, base = source_ast.parse(
      'from eeprune_jax.methods import forgetting\nimport eeprune_jax.methods.el2n as e',
      'from eeprune_jax.methods import base')
  assert len(_method_modules_imported(two_spellings)) == 2
  assert not _method_modules_imported(base)


def _run_with_toy_method(module: str, *args: str) -> None:
  """`python -m module args` in a process that imported tests/toy_method.py first."""
  code = ('import runpy, toy_method\n'
          f'runpy.run_module({module!r}, run_name="__main__", alter_sys=True)\n')
  env = xla_env.env(1, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get('PYTHONPATH', '')]))
  proc = subprocess.run([sys.executable, '-c', code, *args], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _check_small_loss_mask(run_dir: pathlib.Path) -> dict:
  """The run pruned round(0.3 N) examples, those of smallest final-exit loss."""
  summary = json.loads((run_dir / 'summary.json').read_text())
  scores = np.load(run_dir / 'scores.npz')
  keep, loss = scores['keep'], scores['final_loss']
  np.testing.assert_array_equal(np.load(run_dir / 'keep_mask.npy'), keep)
  assert (~keep).sum() == round(0.3 * len(keep)) == summary['pruning']['num_pruned']
  assert loss[~keep].max() <= loss[keep].min()
  return summary


TINY = ('--config.data.image_size=8', '--config.model.name=resnet8', '--config.model.width=0.25',
        '--config.train.num_epochs=2', '--config.prune.epoch=1',
        '--config.train.compilation_cache_dir=')


def test_a_toy_method_runs_end_to_end_through_main(tmp_path):
  _run_with_toy_method('eeprune_jax.main', f'--config={TESTS / "tiny_config.py"}',
                       f'--workdir={tmp_path}', '--config.prune.method=small_loss', *TINY)
  summary = _check_small_loss_mask(tmp_path)
  assert summary['ledger']['scoring_passes'] == 1


def test_a_toy_method_runs_end_to_end_through_compare(tmp_path):
  _run_with_toy_method('eeprune_jax.compare', f'--config={REPO / "configs/compare_demo.py"}',
                       f'--workdir={tmp_path}', '--config.compare.methods=small_loss',
                       '--config.compare.seeds=0', '--config.compare.frontier=', *TINY)
  summary = _check_small_loss_mask(tmp_path / 'runs' / 'small_loss_f0.3_s0')
  assert summary['config']['prune']['method'] == 'small_loss'
  report = (tmp_path / 'report.md').read_text()
  assert sum(line.startswith('| small_loss | 0.3 |') for line in report.splitlines()) == 1
