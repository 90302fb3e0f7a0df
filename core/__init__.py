"""What both roles share beyond the wire: the actor-critic network, the A2C loss math,
environment construction and log set-up. No sockets here; see protocol/."""
