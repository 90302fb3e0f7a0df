"""Recurrent cores: the memory between the encoder and the heads (``--core lstm|gru``).

    core = RecurrentCore("lstm", in_dim=64, size=64)
    state = core.initial_state(n)                          # [N, S] zeros
    y, state = core(x[None], state)                        # acting: one step, x [N, in]
    y, _ = core(x, state, first)                           # training: x [T, N, in]

The state is one flat float32 row per env, ``state_size`` values: the LSTM's [h, c]
(2 x size), the GRU's h (size). It is what an actor carries across steps and rollouts
and sends with each rollout (protocol/rollout.py's ``core_state``), and what the
learner unrolls from.

``first[t, n]`` True: env n's episode starts at step t, so its state is zeroed before
step t, as TorchBeast and IMPALA unroll across episode ends. Between such steps the
sequence goes through torch's fused LSTM/GRU in one call; a reset splits the unroll
into segments at the steps where any env resets, and where that is most steps the
cell kernel steps through them one by one instead. Acting with the same weights one step
at a time gives the same outputs (tests/test_recurrent.py).
"""

from __future__ import annotations

import torch
from torch import nn

CORES = ("none", "lstm", "gru")


def state_size(kind: str, size: int) -> int:
    """Values of state per env of a core of ``size`` units: the LSTM keeps h and c."""
    return 2 * size if kind == "lstm" else size


class RecurrentCore(nn.Module):
    def __init__(self, kind: str, in_dim: int, size: int) -> None:
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"a recurrent core is lstm or gru, not {kind!r}")
        self.kind = kind
        self.size = size
        self.rnn = nn.LSTM(in_dim, size) if kind == "lstm" else nn.GRU(in_dim, size)
        self.state_size = state_size(kind, size)
        # Orthogonal recurrent weights and zero biases (as SB3-contrib's RecurrentPPO
        # and rl_games do): the state neither explodes nor fades at the start.
        for name, p in self.rnn.named_parameters():
            if "weight_hh" in name:
                for gate in p.data.chunk(4 if kind == "lstm" else 3, dim=0):
                    nn.init.orthogonal_(gate)
            elif "bias" in name:
                nn.init.zeros_(p)

    @property
    def out_dim(self) -> int:
        return self.size

    def initial_state(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(n, self.state_size, device=device)  # [N, S]

    def _split(self, state: torch.Tensor):
        """[N, S] -> the rnn's own state: (h [1, N, H], c [1, N, H]) or h [1, N, H]."""
        if self.kind == "lstm":
            h, c = state.split(self.size, dim=-1)
            return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()
        return state.unsqueeze(0).contiguous()

    def _join(self, hx) -> torch.Tensor:
        if self.kind == "lstm":
            return torch.cat([hx[0][0], hx[1][0]], dim=-1)  # [N, 2H]
        return hx[0]  # [N, H]

    def _one_step(self, x: torch.Tensor, state: torch.Tensor):
        """Acting's one step through torch's cell kernels, the same weights and math as
        the fused unroll at half its per-call cost (x [N, in], state [N, S])."""
        r = self.rnn
        weights = (r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0)
        if self.kind == "lstm":
            h, c = torch.lstm_cell(x, tuple(state.split(self.size, dim=-1)), *weights)
            return h.unsqueeze(0), torch.cat([h, c], dim=-1)
        h = torch.gru_cell(x, state, *weights)
        return h.unsqueeze(0), h

    def forward(
        self, x: torch.Tensor, state: torch.Tensor, first: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, N, in], state [N, S] before step 0, first [T, N] bool (None: no episode
        starts inside) -> (outputs [T, N, size], state [N, S] after step T-1)."""
        if first is None and x.shape[0] == 1:
            return self._one_step(x[0], state)
        if first is None:
            y, hx = self.rnn(x, self._split(state))
            return y, self._join(hx)
        # Segment boundaries: step 0 and every step where some env's episode starts.
        cuts = first.any(dim=1)
        cuts[0] = True
        starts = cuts.nonzero().squeeze(1).tolist()  # one device sync per unroll
        ends = [*starts[1:], x.shape[0]]
        keep = (~first).to(x.dtype).unsqueeze(-1)  # [T, N, 1]
        if len(starts) > x.shape[0] // 2:
            # Restarts at most steps: the fused call per segment costs more than the
            # cell kernel per step (measured on the CPU: 11.6 against 8.9 ms for an
            # LSTM of 64 over [33, 32], forward and backward).
            steps = []
            for t in range(x.shape[0]):
                y, state = self._one_step(x[t], state * keep[t])
                steps.append(y[0])
            return torch.stack(steps), state
        outs = []
        for a, b in zip(starts, ends, strict=True):
            state = state * keep[a]  # zero the envs that start an episode at step a
            y, hx = self.rnn(x[a:b], self._split(state))
            outs.append(y)
            state = self._join(hx)
        return torch.cat(outs), state
