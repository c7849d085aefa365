"""Networks: output shapes, the shared-trunk switch, heads and distributions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import networks
from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec

DISCRETE = EnvSpec(obs_shape=(4,), discrete=True, num_actions=3)
CONTINUOUS = EnvSpec(obs_shape=(2, 3), discrete=False, action_shape=(2,),
                     action_low=(-1.0, -1.0), action_high=(1.0, 1.0))


@pytest.mark.parametrize("shared", [False, True])
def test_discrete_actor_critic_shapes_and_trunk(shared):
    net = networks.make_actor_critic(DISCRETE, (32, 16), "relu", shared_trunk=shared)
    params = net.init(jax.random.key(0))
    logits, value = net.apply(params, jnp.ones((5, 4)))
    assert logits.shape == (5, 3) and value.shape == (5,)
    names = set(params["params"])
    if shared:
        assert "MLP_0" in names and "actor_torso" not in names
    else:
        assert {"actor_torso", "critic_torso"} <= names
    sizes = [x.size for x in jax.tree.leaves(params)]
    # Separate torsos hold two copies of the hidden layers.
    torso = 4 * 32 + 32 + 32 * 16 + 16
    heads = 16 * 3 + 3 + 16 + 1
    assert sum(sizes) == heads + torso * (1 if shared else 2)


def test_gaussian_head_flattens_observations_and_has_state_independent_std():
    net = networks.make_actor_critic(CONTINUOUS)
    params = net.init(jax.random.key(1))
    (mean, log_std), value = net.apply(params, jax.random.normal(jax.random.key(2), (7, 2, 3)))
    assert mean.shape == (7, 2) and log_std.shape == (7, 2) and value.shape == (7,)
    np.testing.assert_array_equal(log_std, np.zeros((7, 2)))  # initialised at std 1
    dist = networks.distribution((mean, log_std), discrete=False)
    assert dist.event_shape == (2,)
    np.testing.assert_allclose(dist.log_prob(mean),
                               -np.log(2 * np.pi) * np.ones(7), rtol=1e-5)  # 2 dims, std 1


def test_policy_output_is_small_at_init():
    # Orthogonal init with gain 0.01 on the policy layer: near-uniform initial policy.
    net = networks.make_actor_critic(DISCRETE)
    logits, _ = net.apply(net.init(jax.random.key(3)), jax.random.normal(jax.random.key(4),
                                                                         (100, 4)))
    assert np.abs(np.asarray(logits)).max() < 0.1


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="activation"):
        networks.make_actor_critic(DISCRETE, activation="sigmoid")
