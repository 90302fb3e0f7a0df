"""What both roles share beyond the wire: the algorithms (algos/), the network
(models/), environment families (envs/), rollout collection and the acting policy
(collector.py, policy.py), tensors for the loss (batch.py), log and CLI set-up. No
sockets here; see protocol/."""
