"""Tests of the model registry, architectures, exit heads and cost counting (CPU, tiny)."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from eeprune_jax import config_checks
from eeprune_jax import models
from eeprune_jax.config_base import base_config
import xla_env

IMAGENET_PARAMS = {
    'resnet18': 11_689_512,
    'resnet50': 25_557_032,
    'mobilenet_v3_large': 5_483_032,
    'mobilenet_v3_small': 2_542_856,
}
# Published MACs at 224x224 (torchvision model cards / the papers), in millions.
IMAGENET_MACS = {
    'resnet18': 1814,
    'resnet50': 4089,
    'mobilenet_v3_large': 217,
    'mobilenet_v3_small': 57,
}


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
  config = base_config().model
  config.name = name
  for k, v in overrides.items():
    config[k] = v
  return config


def abstract_init(model, shape, batch: int = 2):
  x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def abstract_forward(model, shape, batch: int = 2):
  """The eval-mode outputs and the variables, from one trace (tracing is this file's cost)."""
  x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False), x)


@pytest.mark.parametrize('name', sorted(IMAGENET_PARAMS))
def test_imagenet_param_counts_equal_torchvision(name):
  model = models.build_model(model_config(name, stem='imagenet', exits='none'), 1000)
  variables = abstract_init(model, (224, 224, 3), batch=1)
  assert models.param_count(variables['params']) == IMAGENET_PARAMS[name]
  assert 'batch_stats' in variables
  macs = models.count_macs(model, (224, 224, 3))
  assert len(macs) == 1
  assert macs[0] / 1e6 == pytest.approx(IMAGENET_MACS[name], rel=0.01)


# ResNet-20: He et al.'s 0.27M. ResNet-8, counted by hand: stem 432+32, blocks
# 4,608+64, 13,824+128, 55,296+256 (BN scale and bias), fc 650; MACs 12.24M at 32x32.
@pytest.mark.parametrize('name,params,mmacs', [('resnet20', 269_722, 40.6),
                                               ('resnet8', 75_290, 12.24)])
def test_cifar_resnets_have_he_et_al_sizes(name, params, mmacs):
  model = models.build_model(model_config(name, exits='none'), 10)
  variables = abstract_init(model, (32, 32, 3))
  assert models.param_count(variables['params']) == params
  assert models.count_macs(model, (32, 32, 3))[0] / 1e6 == pytest.approx(mmacs, rel=0.01)
  with pytest.raises(config_checks.ConfigError, match="config.model.stem='imagenet' is not "
                     f'supported by {name}'):
    config_checks.validate_model(model_config(name, stem='imagenet'))


@pytest.mark.parametrize('name', models.MODEL_NAMES)
@pytest.mark.parametrize('head', ['linear', 'sdn'])
def test_shapes_exits_and_macs(name, head):
  config = model_config(name, width=0.25, exits='shallow,mid,deep', exit_head=head)
  # Presets resolve per model; the comma form does not take preset names.
  presets = [models.exit_blocks(model_config(name, exits=p))[0]
             for p in ('shallow', 'mid', 'deep')]
  assert presets == sorted(presets)
  # ResNet-8's 'mid' and 'deep' are one block (the last before the final one).
  blocks = tuple(sorted(set(presets)))
  assert len(blocks) == (2 if name == 'resnet8' else 3)
  n = len(blocks)
  config.exits = ','.join(map(str, blocks))
  assert models.exit_blocks(config) == blocks
  assert all(0 <= b < models.num_blocks(config) - 1 for b in blocks)
  model = models.build_model(config, 10)
  out, variables = abstract_forward(model, (32, 32, 3))
  params = variables['params']
  assert [f'exit_{k}' for k in range(n)] == sorted(k for k in params if k.startswith('exit_'))
  assert all(f'block_{i}' in params for i in range(models.num_blocks(config)))
  counts = models.exit_head_param_counts(params)
  assert len(counts) == n and all(c > 0 for c in counts)
  assert isinstance(out, tuple) and len(out) == n + 1
  assert all(o.shape == (2, 10) and o.dtype == jnp.float32 for o in out)
  macs = models.count_macs(model, (32, 32, 3))
  assert len(macs) == n + 1
  assert all(a < b for a, b in zip(macs, macs[1:])), macs
  if 'imagenet' in models.model_class(name).STEMS:
    config.stem = 'imagenet'
    out, _ = abstract_forward(models.build_model(config, 10), (224, 224, 3))
    assert [o.shape for o in out] == [(2, 10)] * (n + 1)


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_no_exits_is_a_one_tuple(name):
  model = models.build_model(model_config(name, width=0.125, exits='none'), 7)
  out, _ = abstract_forward(model, (32, 32, 3))
  assert len(out) == 1 and out[0].shape == (2, 7)
  assert models.exit_blocks(model_config(name, exits='none')) == ()


def test_sdn_head_pools_to_4x4():
  # resnet18 CIFAR block 1 is 32x32: kernel 8 -> 4x4x(64*0.25=16) features + alpha.
  config = model_config('resnet18', width=0.25, exits='1', exit_head='sdn')
  params = abstract_init(models.build_model(config, 10), (32, 32, 3))['params']
  assert params['exit_0']['alpha'].shape == ()
  assert params['exit_0']['fc']['kernel'].shape == (4 * 4 * 16, 10)
  # block 7 is 4x4: no pooling, no alpha.
  config.exits = '7'
  params = abstract_init(models.build_model(config, 10), (32, 32, 3))['params']
  assert 'alpha' not in params['exit_0']
  assert models.exit_head_param_counts(params) == [4 * 4 * 128 * 10 + 10]


def test_cifar_strides():
  # MobileNetV3 CIFAR form has output stride 8; the last conv widths follow torchvision.
  for name in ('mobilenet_v3_large', 'mobilenet_v3_small'):
    model = models.build_model(model_config(name, width=0.125, exits='none'), 10)
    (_, outs), _ = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x, train=False, method='features'),
        jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
    assert outs[-1].shape[1:3] == (4, 4)
    assert len(outs) == models.num_blocks(model_config(name))


@pytest.mark.parametrize('exits,match', [
    ('3,1', 'sorted'), ('1,1', 'repeats'), ('1,99', 'out of range'), ('x', 'preset'),
    ('', 'preset'), ('-1', 'preset'), ('1,,2', 'preset')])
def test_bad_exits(exits, match):
  config = model_config('resnet18', exits=exits)
  with pytest.raises(config_checks.ConfigError, match='config.model.exits') as e:
    config_checks.validate_model(config)
  assert match in str(e.value)
  assert '8 blocks' in str(e.value) and '0..7' in str(e.value)


def test_bad_names():
  # config_checks owns the rules; the model code only asserts them.
  for overrides, message in (({}, 'config.model.name.*resnet18'),
                             ({'stem': 'tiny'}, 'config.model.stem'),
                             ({'exit_head': 'mlp'}, 'config.model.exit_head'),
                             ({'dtype': 'float16'}, 'config.model.dtype')):
    name = 'vgg16' if not overrides else 'resnet18'
    with pytest.raises(config_checks.ConfigError, match=message):
      config_checks.validate_model(model_config(name, **overrides))
    with pytest.raises(AssertionError):
      models.build_model(model_config(name, **overrides), 10)
  with pytest.raises(AssertionError):
    models.num_blocks(model_config('vgg16'))


def test_bfloat16_params_float32_logits_float32():
  config = model_config('mobilenet_v3_small', width=0.25, exits='mid', dtype='bfloat16')
  model = models.build_model(config, 10)
  out, variables = abstract_forward(model, (32, 32, 3))
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(variables))
  assert all(o.dtype == jnp.float32 for o in out)


@pytest.mark.parametrize('name', ['resnet20', 'mobilenet_v3_small'])
def test_jit_forward_backward(name):
  config = model_config(name, width=0.125, exits='mid', exit_head='sdn')
  model = models.build_model(config, 10)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  y = jnp.array([1, 2])
  # Jitted: MobileNetV3's init op by op took 8 s here, compiled 3.6 s. Each program runs
  # once on two examples, so it compiles at the level that compiles fastest (xla_env).
  jit = functools.partial(jax.jit, compiler_options=xla_env.COMPILE_BOUND_OPTIONS)
  variables = jit(functools.partial(model.init, train=False))(jax.random.key(0), x)

  @jit
  def step(params, batch_stats, x, y):
    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, x, train=True,
          mutable=['batch_stats'], rngs={'dropout': jax.random.key(2)})
      loss = sum(optax.softmax_cross_entropy_with_integer_labels(l, y).mean() for l in logits)
      return loss, updates['batch_stats']
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  (loss, new_stats), grads = step(variables['params'], variables['batch_stats'], x, y)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert jax.tree.structure(new_stats) == jax.tree.structure(variables['batch_stats'])
  # The exit and final heads both receive gradient.
  assert np.abs(grads['exit_0']['fc']['kernel']).sum() > 0
  assert np.abs(grads['head']['fc2' if 'fc2' in grads['head'] else 'fc']['kernel']).sum() > 0
  logits = jit(functools.partial(model.apply, train=False))(variables, x)
  assert len(logits) == 2 and logits[0].shape == (2, 10)


def test_batch_norm_under_shard_map():
  # axis_name='batch' averages statistics across devices when training; init stays outside.
  mesh = jax.make_mesh((jax.device_count(),), ('batch',))
  config = model_config('resnet20', width=0.125, exits='shallow')
  model = models.build_model(config, 10, axis_name='batch')
  x = jnp.ones((2 * jax.device_count(), 32, 32, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  P = jax.sharding.PartitionSpec

  def fwd(variables, x):
    logits, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
    return logits

  x = jax.device_put(x, jax.sharding.NamedSharding(mesh, P('batch')))
  variables = jax.device_put(variables, jax.sharding.NamedSharding(mesh, P()))
  out = jax.jit(jax.shard_map(fwd, mesh=mesh, in_specs=(P(), P('batch')),
                              out_specs=P('batch')))(variables, x)
  assert [o.shape for o in out] == [(x.shape[0], 10)] * 2
