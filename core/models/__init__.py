"""The network: encoders (observations -> features), heads (features -> action
distribution), and the actor-critic that joins them. See actor_critic.py."""

from core.models.actor_critic import (
    ActorCritic,
    ModelConfig,
    load_arrays,
    param_shapes,
    weights_to_arrays,
)

__all__ = ["ActorCritic", "ModelConfig", "load_arrays", "param_shapes", "weights_to_arrays"]
