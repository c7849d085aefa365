"""The runner: chunked host loop equals the one-function run; sharding over devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxrl import runner
from jaxrl.agents import ppo
from jaxrl.config import ConfigError

CONFIG = ppo.Config(num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 6, num_epochs=2,
                    num_minibatches=2)
HPARAMS = ppo.HParams.create()


class Recorder:
    def __init__(self):
        self.calls = []

    def on_chunk(self, first, metrics, info):
        self.calls.append((first, {k: v.shape for k, v in metrics.items()}, info["env_steps"]))

    def on_end(self, result):
        self.calls.append("end")


@pytest.mark.parametrize("chunk, num_seeds, seed_batch", [(2, 2, None), (4, 2, 1), (6, 1, None)])
def test_chunked_run_equals_one_function_train(chunk, num_seeds, seed_batch):
    keys = runner.split_seed_keys(3, num_seeds)
    _, expected = jax.jit(jax.vmap(runner.make_train(ppo.AGENT, CONFIG), in_axes=(0, None)))(keys, HPARAMS)
    init_fn, iteration_fn = runner.parts(ppo.AGENT, CONFIG)
    recorder = Recorder()
    result = runner.run(init_fn, iteration_fn, num_iterations=CONFIG.num_iterations,
                        steps_per_iteration=CONFIG.steps_per_iteration, hparams=HPARAMS, seed=3,
                        num_seeds=num_seeds, chunk_iterations=chunk, devices=1,
                        callbacks=[recorder], seed_batch=seed_batch)
    for name, value in expected.items():
        np.testing.assert_allclose(result.metrics[name], np.asarray(value), rtol=1e-6,
                                   atol=1e-6, err_msg=name)
    firsts = [c[0] for c in recorder.calls[:-1]]
    assert firsts == list(range(0, 6, chunk)) and recorder.calls[-1] == "end"
    assert recorder.calls[-2][2] == CONFIG.total_timesteps // CONFIG.steps_per_iteration * 64
    assert result.compile_time_s > 0 and result.env_steps == 6 * 64


@pytest.mark.parametrize("num_seeds, seed_batch", [(1, None), (2, None), (4, 1), (4, 2),
                                                   (3, 2), (2, 5)])
def test_vmap_seeds_has_vmaps_shapes_and_values(num_seeds, seed_batch):
    """`vmap_seeds` gives `jax.vmap`'s outputs. Over one seed the program is not batched
    (a `cond` on a mapped value stays a `cond` instead of a select); with `seed_batch`
    below the seed count the seeds run in groups in a loop (where a batch of 1 also keeps
    the `cond`). The runner's one-seed and seed_batch=1 chunks are checked against a
    vmapped train in the test above."""

    def f(key, x, scale):
        return jax.lax.cond(x.sum() > 0, lambda: x * scale, lambda: -x), jax.random.bits(key)

    keys = runner.split_seed_keys(0, num_seeds)
    x = np.arange(3 * num_seeds, dtype=np.float32).reshape(num_seeds, 3) - 1.0
    ours = runner.vmap_seeds(f, (0, 0, None), seed_batch=seed_batch)
    jaxpr = str(jax.make_jaxpr(ours)(keys, x, 2.0))
    unbatched = num_seeds == 1 or seed_batch == 1
    assert ("cond[" in jaxpr) == unbatched, jaxpr  # vmap makes the cond a select
    looped = seed_batch is not None and seed_batch < num_seeds
    assert ("scan[" in jaxpr) == looped, jaxpr
    got, want = ours(keys, x, 2.0), jax.vmap(f, (0, 0, None))(keys, x, 2.0)
    assert jax.tree.map(np.shape, got) == jax.tree.map(np.shape, want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g, w)


def test_vmap_seeds_and_run_refuse_bad_arguments():
    f = lambda key, x: x  # noqa: E731
    with pytest.raises(ValueError, match="in_axes must be 0 or None"):
        runner.vmap_seeds(f, (1, 0))
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ConfigError, match="seed_batch must be a positive integer"):
            runner.vmap_seeds(f, (0, 0), seed_batch=bad)
    init_fn, iteration_fn = runner.parts(ppo.AGENT, CONFIG)
    with pytest.raises(ConfigError, match="seed_batch must be a positive integer"):
        runner.run(init_fn, iteration_fn, num_iterations=CONFIG.num_iterations,
                   steps_per_iteration=CONFIG.steps_per_iteration, hparams=HPARAMS, num_seeds=2,
                   devices=1, seed_batch=0)


def test_hparams_batched_per_seed():
    from jaxrl.config import stack_hparams
    hps = stack_hparams([ppo.HParams.create(learning_rate=lr) for lr in (1e-4, 1e-2)])
    init_fn, iteration_fn = runner.parts(ppo.AGENT, CONFIG)
    result = runner.run(init_fn, iteration_fn, num_iterations=CONFIG.num_iterations,
                        steps_per_iteration=CONFIG.steps_per_iteration, hparams=hps, seed=0,
                        num_seeds=2, hparams_batched=True, devices=1)
    # Same seed keys would give equal runs; different learning rates must not.
    keys = runner.split_seed_keys(0, 2)
    single = jax.jit(runner.make_train(ppo.AGENT, CONFIG))(keys[1], jax.tree.map(lambda x: x[1], hps))[1]
    np.testing.assert_allclose(result.metrics["loss/total"][1], single["loss/total"],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("requested, seeds, envs, match", [
    (0, 4, 4, "devices must be a positive integer"),
    (99, 4, 4, "devices must be at most"),
])
def test_choose_devices_errors(requested, seeds, envs, match):
    with pytest.raises(ConfigError, match=match):
        runner.choose_devices(requested, seeds, envs)


SHARDING_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jaxrl import runner
    from jaxrl.agents import ppo
    from jaxrl.config import ConfigError
    assert jax.local_device_count() == 8, jax.local_device_count()
    out = {}
    for name, seeds, num_envs in (("seeds", 8, 4), ("envs", 1, 8)):
        config = ppo.Config(num_envs=num_envs, rollout_len=16, total_timesteps=num_envs * 16 * 4,
                            num_epochs=2, num_minibatches=2)
        hp = ppo.HParams.create()
        init_fn, it_fn = runner.parts(ppo.AGENT, config)
        res = {}
        for devices in (1, 8):
            r = runner.run(init_fn, it_fn, num_iterations=config.num_iterations,
                           steps_per_iteration=config.steps_per_iteration, hparams=hp, num_seeds=seeds,
                           devices=devices, num_envs=num_envs, chunk_iterations=2)
            res[devices] = r
        sharding = jax.tree.leaves(res[8].state.obs)[0].sharding
        diffs = {k: float(np.nanmax(np.abs(res[1].metrics[k] - res[8].metrics[k])))
                 for k in res[1].metrics}
        pdiff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(jax.tree.leaves(res[1].state.params),
                                    jax.tree.leaves(res[8].state.params)))
        out[name] = {"metric_diff": max(diffs.values()), "param_diff": pdiff,
                     "num_devices_used": len(sharding.device_set),
                     "spec": str(sharding.spec)}
    try:
        runner.run(init_fn, it_fn, num_iterations=config.num_iterations,
                   steps_per_iteration=config.steps_per_iteration, hparams=hp, num_seeds=8, devices=8,
                   seed_batch=1)
    except ConfigError as e:
        out["seed_batch_error"] = str(e)
    print("RESULT " + json.dumps(out))
""")


def test_sharded_run_equals_unsharded():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    for name in ("seeds", "envs"):
        assert out[name]["num_devices_used"] == 8, out
        assert out[name]["metric_diff"] <= 1e-5, out
        assert out[name]["param_diff"] <= 1e-5, out
    assert out["seeds"]["spec"].startswith("P('d'"), out
    assert out["envs"]["spec"].startswith("P(None, 'd'"), out
    error = out.get("seed_batch_error", "")
    assert "seed_batch (1)" in error and "8 devices" in error, out


HANG_SCRIPT = textwrap.dedent("""
    import jaxrl  # sets the XLA:CPU workaround before JAX starts its backend
    import jax
    from jaxrl import runner
    from jaxrl.agents import ppo
    config = ppo.Config(total_timesteps=512 * 40)
    fn = jax.jit(jax.vmap(runner.make_train(ppo.AGENT, config), in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(0), 8)
    compiled = fn.lower(keys, ppo.HParams.create()).compile()
    for _ in range(3):
        jax.block_until_ready(compiled(keys, ppo.HParams.create()))
    print("DONE")
""")


def test_repeated_vmapped_runs_do_not_hang():
    # Without jaxrl's XLA flag this deadlocked on the second call, 3 times out of 3.
    proc = subprocess.run([sys.executable, "-c", HANG_SCRIPT], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-2000:]
    assert "xla_cpu_enable_concurrency_optimized_scheduler=false" in subprocess.run(
        [sys.executable, "-c", "import os, jaxrl; print(os.environ['XLA_FLAGS'])"],
        capture_output=True, text=True).stdout
