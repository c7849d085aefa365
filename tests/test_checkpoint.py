"""Checkpoints: round trip (typed keys included), keep-last-N, cadence, refusals that list
what differs, damaged and half-written checkpoints, and the runner resuming exactly."""

import os
import shutil
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import checkpoint, experiment, runner, testing
from jaxrl.agents import ppo
from jaxrl.config import ConfigError, to_dict


class Buffer(NamedTuple):
    data: jax.Array  # [capacity, 3]
    priorities: jax.Array  # [capacity]
    index: jax.Array  # int32


@struct.dataclass
class ToyState:
    params: dict
    buffer: Buffer
    key: jax.Array  # typed PRNG key carried in the state
    step: jax.Array  # int32
    done: jax.Array  # bool [N]


def toy_tree(seed=0, num_seeds=3, capacity=5):
    """A seed-batched tree like the runner hands to a checkpoint: state [S, ...] and keys."""
    keys = jax.random.split(jax.random.key(seed), num_seeds)

    def one(key):
        a, b = jax.random.split(key)
        return ToyState(params={"w": jax.random.normal(a, (2, 4)), "b": jnp.zeros(4)},
                        buffer=Buffer(jax.random.uniform(b, (capacity, 3)),
                                      jnp.arange(capacity, dtype=jnp.float32),
                                      jnp.int32(capacity - 1)),
                        key=jax.random.fold_in(key, 7), step=jnp.int32(3),
                        done=jnp.array([True, False]))

    return {"state": jax.vmap(one)(keys), "run_keys": keys}


def leaves_equal(a, b):
    """Every leaf bitwise equal (typed keys through their raw data), same structure."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return True


META = {"agent": "toy", "config": {"width": 4, "capacity": 5}}


def save(directory, iterations, tree=None, keep=10, meta=META):
    saver = checkpoint.Checkpointer(str(directory), meta, keep=keep)
    for it in iterations:
        saver.save(it, toy_tree(seed=it) if tree is None else tree)
    saver.close()


def template(**kwargs):
    return jax.eval_shape(lambda: toy_tree(**kwargs))


def test_round_trip_keeps_values_dtypes_and_typed_keys(tmp_path):
    tree = toy_tree()
    save(tmp_path, [4], tree)
    restored, meta = checkpoint.restore(str(tmp_path), template(), expected=META)
    assert leaves_equal(restored, tree)
    assert isinstance(restored["state"], ToyState)
    assert jax.dtypes.issubdtype(restored["run_keys"].dtype, jax.dtypes.prng_key)
    assert jax.dtypes.issubdtype(restored["state"].key.dtype, jax.dtypes.prng_key)
    # The restored keys are usable keys and draw what the originals draw.
    np.testing.assert_array_equal(jax.random.uniform(restored["state"].key[1]),
                                  jax.random.uniform(tree["state"].key[1]))
    assert meta["iteration"] == 4 and meta["config"] == META["config"]
    assert ["['run_keys']", [3], "key<fry>"] in meta["tree"]


def test_keeps_the_newest_n(tmp_path):
    save(tmp_path, [2, 4, 6, 8, 10], keep=2)
    assert checkpoint.steps(str(tmp_path)) == [8, 10]
    restored, _ = checkpoint.restore(str(tmp_path), template(), step=8)
    assert leaves_equal(restored, toy_tree(seed=8))


class Chunks:
    """Feed a Checkpointer the chunk ends of a run, as the runner would."""

    def __init__(self, saver, num_iterations, chunk):
        tree = toy_tree()
        for first in range(0, num_iterations, chunk):
            end = min(first + chunk, num_iterations)
            saver.on_chunk(first, {}, {"iteration": end, "num_iterations": num_iterations,
                                       "state": tree["state"], "run_keys": tree["run_keys"]})
        saver.on_end(None)


@pytest.mark.parametrize("every, expected", [(None, [2, 4, 6, 8, 10]), (3, [4, 6, 10]),
                                             (20, [10])])
def test_cadence_is_at_chunk_ends_and_at_the_end(tmp_path, every, expected):
    Chunks(checkpoint.Checkpointer(str(tmp_path), META, every=every, keep=10), 10, 2)
    assert checkpoint.steps(str(tmp_path)) == expected


@pytest.mark.parametrize("every, keep", [(0, 3), (2, 0), (-1, 3), (2, 1.5)])
def test_bad_cadence_or_keep_is_a_config_error(tmp_path, every, keep):
    with pytest.raises(ConfigError, match="checkpoint_every|keep_checkpoints"):
        checkpoint.Checkpointer(str(tmp_path), META, every=every, keep=keep)


def test_a_different_config_lists_every_differing_field_and_leaf(tmp_path):
    save(tmp_path, [2])
    requested = {"agent": "toy", "config": {"width": 8, "capacity": 7, "new_field": 1}}
    with pytest.raises(ConfigError) as info:
        checkpoint.restore(str(tmp_path), template(capacity=7), expected=requested)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "2") in message
    assert "config.width: checkpoint 4, requested 8" in message
    assert "config.capacity: checkpoint 5, requested 7" in message
    assert "config.new_field: checkpoint (absent), requested 1" in message
    assert "leaf ['state'].buffer.data: checkpoint (3, 5, 3) float32, requested (3, 7, 3)" \
        in message
    assert "agent" not in message.replace("the requested run", "")  # equal fields not listed


def test_a_different_tree_is_refused_even_with_the_same_config(tmp_path):
    save(tmp_path, [2])
    wrong = template()
    wrong["state"] = wrong["state"].replace(step=jax.ShapeDtypeStruct((3,), jnp.float32))
    with pytest.raises(ConfigError, match=r"leaf \['state'\]\.step: checkpoint \(3,\) int32, "
                                          r"requested \(3,\) float32"):
        checkpoint.restore(str(tmp_path), wrong, expected=META)


def ppo_run(**config):
    config = ppo.Config(**{"num_envs": 4, "rollout_len": 8, "total_timesteps": 64,
                           "num_minibatches": 2, "hidden_sizes": (8,), **config})
    return experiment.Run(ppo.AGENT, config, ppo.HParams.create(),
                          {"seed": 0, "num_seeds": 2, "chunk_iterations": 1})


def zeros_like_shapes(shapes):
    def make(s):
        if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.zeros(s.shape + (2,), jnp.uint32))
        return jnp.zeros(s.shape, s.dtype)
    return jax.tree.map(make, shapes)


def test_a_ppo_run_with_another_width_or_env_count_is_refused(tmp_path):
    saved = ppo_run()
    init_fn, _ = runner.parts(ppo.AGENT, saved.config)
    state, keys = runner.state_shapes(init_fn, saved.hparams, num_seeds=2)
    saver = checkpoint.Checkpointer(str(tmp_path / checkpoint.CHECKPOINT_DIR),
                                    experiment._checkpoint_meta(saved))
    saver.save(1, zeros_like_shapes({"state": state, "run_keys": keys}))
    saver.close()
    restored, _ = experiment.restore_checkpoint(saved, ppo.setup(saved.config), str(tmp_path))
    assert restored["state"].params["params"]["actor_torso"]["Dense_0"]["kernel"].shape == \
        (2, 4, 8)
    with pytest.raises(ConfigError) as info:
        bigger = ppo_run(hidden_sizes=(16,), num_envs=8, total_timesteps=128)
        experiment.restore_checkpoint(bigger, ppo.setup(bigger.config), str(tmp_path))
    message = str(info.value)
    for text in ("config.hidden_sizes: checkpoint [8], requested [16]",
                 "config.num_envs: checkpoint 4, requested 8",
                 "leaf ['state'].params['params']"):
        assert text in message, message


def test_a_damaged_meta_document_names_the_checkpoint(tmp_path):
    save(tmp_path, [2, 4])
    meta_dir = tmp_path / "4" / "meta"
    for name in os.listdir(meta_dir):
        (meta_dir / name).write_text("{not json")
    with pytest.raises(ConfigError, match=f"checkpoint {tmp_path / '4'} is unreadable or "
                                          "corrupted.*delete it"):
        checkpoint.restore(str(tmp_path), template(), expected=META)
    restored, _ = checkpoint.restore(str(tmp_path), template(), step=2)  # the older one is fine
    assert leaves_equal(restored, toy_tree(seed=2))


def test_damaged_array_data_names_the_checkpoint(tmp_path):
    save(tmp_path, [2])
    state_dir = tmp_path / "2" / "state"
    for root, _, files in os.walk(state_dir):
        for name in files:
            if "metadata" not in name.lower():
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"\0garbage")
    with pytest.raises(ConfigError, match=f"checkpoint {tmp_path / '2'} is unreadable"):
        checkpoint.restore(str(tmp_path), template(), expected=META)


def test_a_step_folder_that_is_not_a_checkpoint_is_reported_not_skipped(tmp_path):
    save(tmp_path, [2])
    os.makedirs(tmp_path / "6")
    (tmp_path / "6" / "junk").write_text("x")
    with pytest.raises(ConfigError, match=f"checkpoint {tmp_path / '6'} is unreadable"):
        checkpoint.restore(str(tmp_path), template())


def test_a_half_written_checkpoint_is_never_picked_up_and_is_cleaned(tmp_path):
    save(tmp_path, [2, 4])
    # What a save killed mid-write leaves: orbax writes under a temporary name first.
    shutil.copytree(tmp_path / "4", tmp_path / "6.orbax-checkpoint-tmp")
    os.remove(tmp_path / "6.orbax-checkpoint-tmp" / "_CHECKPOINT_METADATA")
    assert checkpoint.steps(str(tmp_path)) == [2, 4]
    restored, meta = checkpoint.restore(str(tmp_path), template())
    assert meta["iteration"] == 4 and leaves_equal(restored, toy_tree(seed=4))
    save(tmp_path, [6])  # the next writer removes the leftover and saves for real
    assert sorted(os.listdir(tmp_path)) == ["2", "4", "6"]
    assert leaves_equal(checkpoint.restore(str(tmp_path), template())[0], toy_tree(seed=6))


def test_missing_or_unknown_checkpoints_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint in"):
        checkpoint.restore(str(tmp_path / "nothing"), template())
    save(tmp_path, [2])
    with pytest.raises(ConfigError, match="checkpoint 3 is not in .*; available: 2"):
        checkpoint.restore(str(tmp_path), template(), step=3)


# The runner resuming from a checkpoint: a toy agent whose every step draws from its key.
@struct.dataclass
class Walk:
    x: jax.Array  # float32 [2]
    key: jax.Array  # typed key, advanced every iteration
    step: jax.Array  # int32


def walk_init(key, hp):
    return Walk(x=jnp.zeros(2), key=key, step=jnp.int32(0))


def walk_iteration(state, key, hp):
    own, new_key = jax.random.split(state.key)
    dx = jax.random.normal(key, (2,)) + jax.random.uniform(own) * hp
    x = state.x + dx
    return (Walk(x=x, key=new_key, step=state.step + 1),
            {"loss/total": jnp.sum(x), "walk/step": state.step.astype(jnp.float32)})


def walk_run(directory, *, stop=None, start=None, num_iterations=10, hp=0.5):
    saver = checkpoint.Checkpointer(str(directory), META, keep=2)
    callbacks = [saver] + ([testing.StopAt(stop)] if stop else [])
    return runner.run(walk_init, walk_iteration, num_iterations=num_iterations,
                      steps_per_iteration=1, hparams=jnp.float32(hp), seed=5, num_seeds=3,
                      chunk_iterations=3, devices=1, callbacks=callbacks, start=start)


def test_runner_resumed_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    full = walk_run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        walk_run(tmp_path / "part", stop=6)
    assert checkpoint.steps(str(tmp_path / "part")) == [3, 6]
    shapes = runner.state_shapes(walk_init, jnp.float32(0.5), seed=5, num_seeds=3)
    tree, meta = checkpoint.restore(str(tmp_path / "part"),
                                    {"state": shapes[0], "run_keys": shapes[1]})
    resumed = walk_run(tmp_path / "part",
                       start=runner.Start(tree["state"], tree["run_keys"], meta["iteration"]))
    assert resumed.first_iteration == 6
    assert leaves_equal(resumed.state, full.state)
    for name, values in resumed.metrics.items():
        np.testing.assert_array_equal(values, full.metrics[name][:, 6:])
    # Chunks 7-9 and 10 (masked past the end) were saved as the uninterrupted run saved them.
    assert checkpoint.steps(str(tmp_path / "part")) == checkpoint.steps(str(tmp_path / "full"))


def poisoned_iteration(state, key, hp):
    """`walk_iteration`, with a NaN loss at iteration 8 (counted from 1)."""
    state, metrics = walk_iteration(state, key, hp)
    return state, {**metrics, "loss/total": jnp.where(state.step == 8, jnp.nan,
                                                      metrics["loss/total"])}


def test_a_non_finite_chunk_leaves_the_last_good_checkpoint(tmp_path):
    saver = checkpoint.Checkpointer(str(tmp_path), META, keep=5)
    with pytest.raises(runner.NonFiniteError, match="at iteration 8"):
        runner.run(walk_init, poisoned_iteration, num_iterations=12, steps_per_iteration=1,
                   hparams=jnp.float32(0.5), num_seeds=3, chunk_iterations=3, devices=1,
                   callbacks=[saver])
    assert sorted(os.listdir(tmp_path)) == ["3", "6"]  # not the chunk holding iteration 8
