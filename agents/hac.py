"""Hierarchical actor-critic with hindsight (HAC; Levy et al. 2019, arXiv 1712.00948): the
per-transition kernels of a level above the bottom one.

A level `i > 0` proposes a subgoal (its action, a point of the goal space) to the level
below, which acts for at most `k` steps to reach it. From each such proposal HAC makes
(section 4.2-4.4 of the paper):

* a hindsight action transition (`hindsight_action_transition`): the proposed subgoal is
  replaced by the goal the level below actually achieved, so the transition is one in
  which the lower level is optimal; reward and termination come from the level's own
  goal;
* a subgoal-testing transition (`subgoal_test_transition`): when the proposal was tested
  (the levels below acted greedily, without noise, probability lambda) and the level
  below did not reach it, the proposed subgoal is penalised by `-k` with discount 0;
* hindsight goal transitions: `jaxrl.her.relabel` on a level's transitions, unchanged.

Status: these kernels are tested; the two-level agent that composes two replay agents
with them (one jitted run) is not built yet.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrl.types import Transition


def hindsight_action_transition(obs_tm1: jax.Array, obs_t: jax.Array, goal: jax.Array,
                                goal_env: Any, env_params: Any) -> Transition:
    """A level's transition with its subgoal action replaced by the achieved goal.

    Levy et al. 2019, section 4.2: "the subgoal action is replaced with the state actually
    achieved" by the level below; reward `goal_reward(achieved, goal)` (0 at the goal,
    -1 elsewhere for our envs) and termination `goal_reached`, as for the env's own step.

    Args:
      obs_tm1: [*obs_shape] observation where the subgoal was proposed.
      obs_t: [*obs_shape] observation when the level below stopped (reached its subgoal,
        ran out of its `k` steps, or the episode ended).
      goal: [G] this level's goal (the env's goal at the top, else the subgoal from above).
      goal_env: the goal-conditioned env (`jaxrl.envs.maze`, `jaxrl.envs.goals`).
      env_params: its params (goal tolerances).

    Returns:
      A `Transition` without batch axes; `action` is `[G]`, the achieved goal.
    """
    achieved = goal_env.obs_achieved(obs_t)
    reached = goal_env.goal_reached(achieved, goal, env_params)
    return Transition(obs=goal_env.with_goal(obs_tm1, goal),
                      action=achieved.astype(jnp.float32),
                      reward=goal_env.goal_reward(achieved, goal, env_params),
                      terminated=reached, truncated=jnp.bool_(False),
                      next_obs=goal_env.with_goal(obs_t, goal))


def subgoal_test_transition(obs_tm1: jax.Array, subgoal: jax.Array, obs_t: jax.Array,
                            goal: jax.Array, tested: jax.Array, penalty: float | jax.Array,
                            goal_env: Any, env_params: Any) -> tuple[Transition, jax.Array]:
    """The subgoal-testing penalty transition, and whether it applies.

    Levy et al. 2019, section 4.3: if a tested subgoal is not achieved, the level gets
    reward `-k` (the lower level's step budget) with discount 0, so it learns which
    subgoals are out of the lower level's reach; untested or reached subgoals give no
    penalty transition.

    Args:
      obs_tm1, obs_t, goal, goal_env, env_params: as `hindsight_action_transition`.
      subgoal: [G] the proposed subgoal (kept as the action).
      tested: bool scalar, the levels below acted greedily for this proposal.
      penalty: k, positive.

    Returns:
      `(transition, valid)`: `valid` (bool scalar) is `tested` and the subgoal unreached;
      the transition (reward `-penalty`, terminated) is to be stored only where valid.
    """
    reached = goal_env.goal_reached(goal_env.obs_achieved(obs_t), subgoal, env_params)
    transition = Transition(obs=goal_env.with_goal(obs_tm1, goal),
                            action=subgoal.astype(jnp.float32),
                            reward=-jnp.asarray(penalty, jnp.float32),
                            terminated=jnp.bool_(True), truncated=jnp.bool_(False),
                            next_obs=goal_env.with_goal(obs_t, goal))
    return transition, jnp.logical_and(tested, ~reached)
