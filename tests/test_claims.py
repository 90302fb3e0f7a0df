"""The learner believes only what it can check (learner/episodes.py, learner/confirm.py).

Episodes are derived from the rewards and flags a rollout carries, carried across
rollouts per actor; the actor's ep_returns/ep_lengths are claims checked against them.
A test per lie: episodes without ends, returns the rewards do not add up to, lengths
longer than the data, too few or too many claims, a transition where a reset must be,
and, end to end against a real learner, the hostile client of the issue that had the
learner stop as solved after 128 env steps.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from core.collector import RolloutCollector
from core.envs import make_vec_env
from learner.episodes import EpisodeChain, Episodes, check_claims
from protocol.checks import InvalidMessage
from protocol.codec import encode
from protocol.messages import Experience, Heartbeat, Pong
from protocol.spec import RunSpec
from scripts.procs import HANG_S, endpoint_of, start_learner
from tests.hostile import SMALL, join, raw_dealer, recv_until, zctx  # noqa: F401

CARTPOLE = RunSpec(
    env_id="CartPole-v1",
    algo="a2c",
    num_envs=4,
    rollout_len=7,
    obs_shape=(4,),
    action_kind="discrete",
    action_n=2,
)


def slow_episodes(rollouts) -> list[tuple[int, float, int]]:
    """(env, return, length) of every episode, env by env from the flat step stream:
    straight from the definitions (a valid step adds its reward; an end flag on a valid
    step closes the episode)."""
    out = []
    for i in range(rollouts[0].num_envs):
        ret, length = 0.0, 0
        for r in rollouts:
            for t in range(r.num_steps):
                if not r.valid[t, i]:
                    continue
                ret += float(r.rewards[t, i])
                length += 1
                if r.terminated[t, i] or r.truncated[t, i]:
                    out.append((i, ret, length))
                    ret, length = 0.0, 0
    return out


def test_chain_derives_exactly_the_collectors_episodes_across_rollouts():
    envs = make_vec_env("CartPole-v1", 4)
    rng = np.random.default_rng(0)
    collector = RolloutCollector(envs, CARTPOLE, seed=3)
    chain = EpisodeChain(4)
    rollouts, derived = [], []

    def act(obs, rows):
        return rng.integers(0, 2, len(obs)), np.zeros(len(obs), np.float32)

    try:
        for _ in range(40):  # 280 steps per env: many episodes span rollouts
            r = collector.collect(act)
            rollouts.append(r)
            got = chain.observe(r.rewards, r.terminated, r.truncated, r.valid)
            check_claims(got, r.ep_returns, r.ep_lengths)  # the honest claims pass
            assert got.ended == len(r.ep_returns) and len(got.unseen_lengths) == 0
            derived += zip(got.lengths.tolist(), got.returns.tolist(), strict=True)
    finally:
        envs.close()
    reference = slow_episodes(rollouts)
    assert len(reference) > 30
    assert sorted(derived) == sorted((n, ret) for _, ret, n in reference)
    assert any(n > CARTPOLE.rollout_len for n, _ in derived), "episodes span rollouts"


def steps(t: int, n: int, ends: dict[tuple[int, int], str] | None = None, reward: float = 1.0):
    """Rewards and flags of a rollout under next-step autoreset: ``ends`` maps (t, env)
    to "term" or "trunc"; the step after each end is the reset (not valid)."""
    rewards = np.full((t, n), reward, dtype=np.float32)
    term = np.zeros((t, n), dtype=bool)
    trunc = np.zeros((t, n), dtype=bool)
    valid = np.ones((t, n), dtype=bool)
    for (step, env), kind in (ends or {}).items():
        (term if kind == "term" else trunc)[step, env] = True
        if step + 1 < t:
            valid[step + 1, env] = False
            rewards[step + 1, env] = 0.0
    return rewards, term, trunc, valid


def test_an_episode_begun_before_a_break_is_not_counted_as_whole():
    chain = EpisodeChain(2)
    first = chain.observe(*steps(4, 2))
    assert first.ended == 0
    chain.break_()  # e.g. the next rollout was lost (a seq gap)
    got = chain.observe(*steps(6, 2, {(2, 0): "term", (3, 1): "trunc"}))
    # Env 0 ran 4 + (lost) + 3 steps: the learner saw 3 of them and vouches for none.
    assert got.returns.size == 0 and got.unseen_lengths.tolist() == [3, 4]
    check_claims(got, np.array([9.0, 12.0]), np.array([9, 12]))  # longer: allowed
    with pytest.raises(InvalidMessage, match="shorter"):
        check_claims(got, np.array([2.0, 3.0]), np.array([2, 3]))
    # The episodes after those are whole again: env 0's next one began after its reset
    # (step 3) and ran 2 + 6 steps.
    again = chain.observe(*steps(6, 2, {(5, 0): "term"}))
    assert again.returns.tolist() == [8.0] and again.lengths.tolist() == [8]


def test_an_env_error_mid_episode_is_a_cut_not_an_episode():
    chain = EpisodeChain(1)
    chain.observe(*steps(3, 1))
    rewards, term, trunc, valid = steps(3, 1)
    valid[0, 0], rewards[0, 0] = False, 0.0  # the env was reset after an error
    got = chain.observe(rewards, term, trunc, valid)
    assert got.cut == 1 and got.ended == 0


def claims(*pairs: tuple[float, int]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([r for r, _ in pairs], dtype=np.float64),
        np.array([n for _, n in pairs], dtype=np.int64),
    )


def two_episodes() -> Episodes:
    chain = EpisodeChain(3)
    # Env 0 ends at step 1 (return 2, length 2), env 2 at step 4 (5, 5).
    return chain.observe(*steps(5, 3, {(1, 0): "term", (4, 2): "trunc"}))


LIES = {
    "episodes_without_ends": (
        lambda: EpisodeChain(2).observe(*steps(64, 2)),
        claims(*[(500.0, 500)] * 100),
    ),
    "return_larger_than_the_rewards": (two_episodes, claims((2.0, 2), (500.0, 5))),
    "length_longer_than_the_data": (two_episodes, claims((2.0, 2), (5.0, 500))),
    "an_end_left_out": (two_episodes, claims((2.0, 2))),
    "an_extra_episode": (two_episodes, claims((2.0, 2), (5.0, 5), (1.0, 1))),
    "right_count_wrong_episodes": (two_episodes, claims((2.0, 2), (2.0, 2))),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_each_lie_is_refused_as_false_claim(lie):
    derive, (rets, lens) = LIES[lie]
    with pytest.raises(InvalidMessage) as info:
        check_claims(derive(), rets, lens)
    assert info.value.reason == "false_claim"


def test_honest_claims_pass_in_any_order():
    check_claims(two_episodes(), *claims((5.0, 5), (2.0, 2)))
    check_claims(two_episodes(), *claims((2.0, 2), (5.0, 5)))


def test_a_transition_where_the_reset_must_be_is_refused_across_rollouts():
    chain = EpisodeChain(1)
    chain.observe(*steps(3, 1, {(2, 0): "term"}))  # ends on the last step
    with pytest.raises(InvalidMessage) as info:
        chain.observe(*steps(3, 1))  # ... and the next rollout's first step is valid
    assert info.value.reason == "bad_flags"


# --- end to end: a hostile client speaking only the documented protocol -----------------


def lying_rollout(spec: dict, num_envs: int, reward: float, claim_episodes: int):
    """A well-formed rollout of the run ``spec`` describes, whose envs end an episode
    every 2 steps (flags true to that), with ``reward`` per step; it claims
    ``claim_episodes`` episodes of 500 when that is > 0, else what the flags show."""
    t, n = spec["rollout_len"], num_envs
    assert t % 3 == 0, "reset, step, end: the pattern repeats every 3 steps"
    rewards, term, trunc, valid = steps(
        t, n, {(s, e): "term" for s in range(2, t, 3) for e in range(n)}, reward
    )
    valid[0], rewards[0] = False, 0.0  # each rollout opens with the reset after an end
    ended = int(term.sum())
    rets = np.full(ended, 2 * reward) if not claim_episodes else np.full(claim_episodes, 500.0)
    lens = np.full(len(rets), 2 if not claim_episodes else 500, dtype=np.int64)
    if claim_episodes:  # no end at all in this one
        term[:] = False
        valid[:] = True
        rewards[:] = 1.0
    return {
        "obs": np.zeros((t + 1, n, 4), dtype="<f4"),
        "actions": np.zeros((t, n), dtype="<i8"),
        "logp": np.full((t, n), -0.69, dtype="<f4"),
        "rewards": rewards,
        "terminated": term,
        "truncated": trunc,
        "valid": valid,
        "ep_returns": rets.astype("<f8"),
        "ep_lengths": lens,
    }


def hostile_learner(tmp_path, *extra: str):
    return start_learner(
        tmp_path,
        "--algo", "a3c", "--actors", "0", "--target-return", "475", "--max-seconds", "120",
        *SMALL, "--rollout-len", "6", "--max-bad-messages", "1000", *extra,
    )  # fmt: skip


def send_rollouts(sock, welcome, count: int, **lie) -> None:
    for seq in range(1, count + 1):
        arrays = lying_rollout(welcome.run, 4, **lie)
        sock.send_multipart(
            encode(
                Experience(
                    arrays=arrays,
                    actor_id="liar",
                    incarnation="inc-1",
                    seq=seq,
                    learner_id=welcome.learner_id,
                    policy_version=0,
                )
            )
        )


def test_claimed_episodes_without_ends_do_not_solve_the_run(tmp_path, zctx):  # noqa: F811
    learner = hostile_learner(tmp_path)
    try:
        sock = raw_dealer(zctx, endpoint_of(learner))
        welcome = join(sock, "liar")
        # The attack: 64 steps, no episode ends, "100 episodes of 500".
        send_rollouts(sock, welcome, 5, reward=1.0, claim_episodes=100)
        rejected = learner.wait_for(
            "message_rejected", 60, where=lambda e: e["reason"] == "false_claim"
        )
        assert "100 episodes claimed, the flags end 0" in rejected["detail"]
        last = learner.wait_for("progress", HANG_S, where=lambda e: e["rejected"] >= 5)
        assert last["episodes"] == 0 and last["mean_return_100"] is None
        assert learner.popen.poll() is None, "still running: nothing was solved"
        assert learner.events("run_finished") == []
    finally:
        learner.stop()


def test_rewards_the_learner_cannot_check_are_caught_by_confirm_episodes(tmp_path, zctx):  # noqa: F811
    # Flags and claims consistent, rewards invented (1000 per 2-step episode): the
    # derived returns say solved; the learner's own 3 episodes of the policy do not.
    learner = hostile_learner(tmp_path, "--confirm-episodes", "3")
    try:
        sock = raw_dealer(zctx, endpoint_of(learner))
        welcome = join(sock, "liar")
        send_rollouts(sock, welcome, 15, reward=500.0, claim_episodes=0)  # 120 episodes
        started = learner.wait_for("confirm_started", HANG_S)
        assert started["mean_return_100"] == 1000.0
        verdict = learner.wait_for("solve_not_confirmed", HANG_S)
        assert verdict["confirm_episodes"] == 3 and verdict["confirm_mean_return"] < 475
        assert learner.events("message_rejected") == []
        # Still up and answering.
        sock.send_multipart(
            encode(Heartbeat(actor_id="liar", incarnation="inc-1", seq=15, policy_version=0))
        )
        assert recv_until(sock, Pong, HANG_S) is not None
        assert learner.events("run_finished") == []
    finally:
        learner.stop()


def test_a_heartbeat_whose_counter_goes_backwards_is_refused(tmp_path, zctx):  # noqa: F811
    learner = hostile_learner(tmp_path)
    try:
        sock = raw_dealer(zctx, endpoint_of(learner))
        welcome = join(sock, "liar")
        send_rollouts(sock, welcome, 3, reward=1.0, claim_episodes=0)  # seq 1, 2, 3
        for seq in (3, 1):  # as far as it got: fine; back to 1: a lie
            sock.send_multipart(
                encode(Heartbeat(actor_id="liar", incarnation="inc-1", seq=seq, policy_version=0))
            )
        rejected = learner.wait_for(
            "message_rejected", 60, where=lambda e: e["reason"] == "false_claim"
        )
        assert rejected["detail"] == "heartbeat seq 1 < 3"
        assert recv_until(sock, Pong, HANG_S) is not None  # the honest one was answered
    finally:
        learner.stop()


def test_a_raw_client_inventing_solved_episodes_cannot_end_a_default_run(tmp_path):
    """The held-out attack, with nothing but zmq, msgpack and the documented wire
    (protocol/messages.py): a client joins a default CartPole learner and sends rollouts
    consistent in every way the learner checks (reward 1 per step, every episode
    truncated at exactly 500 steps, the autoreset step after it marked, claims equal to
    the flags) that no environment produced: observations all zero, one constant
    action. By default the learner plays the policy itself before it believes
    "solved"; the run reports solve_not_confirmed and trains on to its budget."""
    import msgpack
    import zmq

    from protocol.messages import SCHEMA_VERSION

    budget = 120_000  # env steps: the invented 100 episodes of 500 end near 55k
    learner = start_learner(
        tmp_path, "--actors", "0", "--max-env-steps", str(budget), "--log-interval-s", "0.5"
    )
    ctx = zmq.Context()
    ctx.linger = 0
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.sndtimeo = int(HANG_S * 1000)
        sock.connect(endpoint_of(learner))

        def send(kind: str, fields: dict, arrays: dict | None = None) -> None:
            arrays = arrays or {}
            header = {
                "v": SCHEMA_VERSION,  # a raw client speaking the current schema
                "type": kind,
                "fields": fields,
                "arrays": [[k, a.dtype.str, list(a.shape)] for k, a in arrays.items()],
            }
            sock.send_multipart([msgpack.packb(header), *arrays.values()])

        def receive(kind: str, timeout_s: float) -> dict | None:
            deadline = time.monotonic() + timeout_s
            while (left := deadline - time.monotonic()) > 0:
                if sock.poll(int(left * 1000)):
                    header = msgpack.unpackb(sock.recv_multipart()[0])
                    if header["type"] == kind:
                        return header["fields"]
            return None

        send("hello", {"actor_id": "liar", "incarnation": "i1", "hostname": "h", "pid": 1,
                       "num_envs": 0, "temperature": 0.0})  # fmt: skip
        welcome = receive("welcome", HANG_S)
        assert welcome is not None, "no welcome"
        t, n = welcome["run"]["rollout_len"], welcome["run"]["num_envs"]
        version, step = 0, 0  # step: each env's step count (all envs in lockstep)
        for seq in range(1, budget // (t * n) + 20):
            if learner.popen.poll() is not None:
                break
            k = (np.arange(step, step + t) % 501)[:, None].repeat(n, axis=1)  # [T, N]
            step += t
            valid = k < 500  # the 501st step of each cycle is the autoreset step
            truncated = k == 499
            ended = int(truncated.sum())
            arrays = {
                "obs": np.zeros((t + 1, n, 4), "<f4"),
                "actions": np.zeros((t, n), "<i8"),
                "logp": np.full((t, n), np.log(0.5), "<f4"),
                "rewards": valid.astype("<f4"),
                "terminated": np.zeros((t, n), "|b1"),
                "truncated": truncated,
                "valid": valid,
                "ep_returns": np.full(ended, 500.0, "<f8"),
                "ep_lengths": np.full(ended, 500, "<i8"),
            }
            send("experience", {"actor_id": "liar", "incarnation": "i1", "seq": seq,
                                "learner_id": welcome["learner_id"],
                                "policy_version": version}, arrays)  # fmt: skip
            ack = receive("ack", HANG_S)
            if ack is None:
                break  # the run ended (or the learner is stuck: the asserts say which)
            version = ack["version"]
        learner.wait_exit(HANG_S)
        started = learner.events("confirm_started")
        assert started and started[0]["mean_return_100"] == 500.0, "the lie was believed"
        refused = learner.events("solve_not_confirmed")
        assert refused and refused[0]["confirm_mean_return"] < 100  # all-left CartPole
        finished = learner.wait_for("run_finished", 5)
        assert finished["reason"] == "max_env_steps" and finished["solved"] is False
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["solved"] is False and summary["env_steps"] >= budget
        assert summary["mean_return_100"] == 500.0  # the actors' word, kept apart ...
        assert summary["confirm_passed"] is False  # ... from the learner's own
        assert summary["confirm_attempts"] >= 1 and summary["confirm_mean_return"] < 100
    finally:
        ctx.destroy(linger=0)
        learner.stop()
