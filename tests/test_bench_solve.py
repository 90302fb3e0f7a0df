"""The pure parts of ``make bench-solve`` (scripts/bench_solve.py, sb3_peer.py, zoo.py):
medians, summaries and tables, the solved criterion of the SB3 peer, the zoo table and
its translation, and the commands each side runs per env. Nothing timed is asserted;
nothing here trains. The tests that build SB3's peers skip without the bench extra.
"""

from __future__ import annotations

import math

import pytest

from scripts import bench_solve, sb3_peer, solve_summary, zoo


def _run(system: str, seed: int, wall_s: float | None, env_steps: int | None = None) -> dict:
    solved = wall_s is not None
    return {
        "system": system,
        "seed": seed,
        "solved": solved,
        "wall_s": wall_s if solved else 30.0,
        "env_steps": env_steps or 1000,
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0, 1.0, 2.0], 2.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([1.0, 2.0, None], 2.0),  # an unsolved run counts as infinitely slow
        ([1.0, None, None], None),  # most runs unsolved: no finite median
        ([2.0, None], None),
        ([], None),
    ],
)
def test_median_counts_unsolved_as_infinite(values, expected):
    assert solve_summary.median(values) == expected


def test_summarize_keeps_unsolved_runs_out_of_the_numbers():
    runs = [
        _run("ours", 1, 4.0, 100),
        _run("sb3-ppo", 1, 12.0, 600),
        _run("ours", 2, None),
        _run("sb3-ppo", 2, 10.0, 500),
        _run("ours", 3, 6.0, 300),
        _run("sb3-ppo", 3, 14.0, 700),
    ]
    s = solve_summary.summarize(runs)
    assert list(s) == ["ours", "sb3-ppo"]
    assert s["ours"]["wall_s"] == [4.0, None, 6.0]
    assert s["ours"]["env_steps"] == [100, None, 300]
    assert (s["ours"]["solved"], s["ours"]["n"]) == (2, 3)
    assert s["ours"]["median_wall_s"] == 6.0  # of 4, 6, inf
    assert s["ours"]["median_env_steps"] == 300
    assert s["sb3-ppo"]["median_wall_s"] == 12.0


def test_speedup_is_best_peer_median_over_ours():
    runs = [_run("ours", 1, 5.0), _run("sb3-a2c", 1, 40.0), _run("sb3-ppo", 1, 15.0)]
    sp = solve_summary.speedup(solve_summary.summarize(runs))
    assert sp["best_peer"] == "sb3-ppo"
    assert math.isclose(sp["ratio"], 3.0)
    assert "3.00x" in solve_summary.speedup_line(sp)


def test_speedup_is_undefined_without_finite_medians():
    assert solve_summary.speedup(solve_summary.summarize([_run("ours", 1, None)])) is None
    only_ours = solve_summary.summarize([_run("ours", 1, 5.0), _run("sb3-a2c", 1, None)])
    assert solve_summary.speedup(only_ours) is None
    assert "not defined" in solve_summary.speedup_line(None)


def test_a_failed_run_is_shown_left_out_of_the_medians_and_leaves_no_speedup():
    # sb3-ppo crashed on seed 2: it must not read as slow, nor drop out of the
    # comparison so that the speed-up quietly picks the other peer.
    crashed = {**_run("sb3-ppo", 2, None), "error": "exit 1; see sb3-ppo-seed2.log"}
    runs = [
        _run("ours", 1, 5.0),
        _run("ours", 2, 6.0),
        _run("sb3-a2c", 1, 40.0),
        _run("sb3-a2c", 2, 50.0),
        _run("sb3-ppo", 1, 15.0),
        crashed,
    ]
    s = solve_summary.summarize(runs)
    assert s["sb3-ppo"]["wall_s"] == [15.0, "failed"] and s["sb3-ppo"]["failed"] == 1
    assert s["sb3-ppo"]["median_wall_s"] == 15.0 and s["sb3-ppo"]["solved"] == 1
    assert solve_summary.speedup(s) is None
    row = next(r for r in solve_summary.solve_table(s).splitlines() if r.startswith("| sb3-ppo"))
    assert "15.0, failed" in row and "1/2 (1 failed)" in row


def test_solve_table_has_a_row_per_system_and_marks_unsolved():
    runs = [_run("ours", 1, 4.25, 123456), _run("ours", 2, None), _run("sb3-a2c", 1, None)]
    table = solve_summary.solve_table(solve_summary.summarize(runs))
    lines = table.splitlines()
    assert lines[0].startswith("| system |") and lines[1].startswith("|---")
    assert lines[2] == "| ours | 4.2, — | — | 123456, — | — | 1/2 |"
    assert lines[3] == "| sb3-a2c | — | — | — | — | 0/1 |"


def test_without_sb3_only_ours_runs_and_the_report_says_why():
    systems, notes = bench_solve.plan(["ours", "sb3-a2c", "sb3-ppo"], sb3_installed=False)
    assert systems == ["ours"]
    assert len(notes) == 1 and "pip install -e '.[bench]'" in notes[0]
    assert bench_solve.plan(["ours", "sb3-ppo"], sb3_installed=True) == (["ours", "sb3-ppo"], [])


def test_machine_info_names_the_machine():
    info = bench_solve.machine_info()
    assert info["nproc"] >= 1 and info["cpu"] and info["torch"]


def test_solve_tracker_needs_a_full_window_at_the_target():
    tracker = sb3_peer.SolveTracker(target=475.0, window=100)
    assert not tracker.update([{"episode": {"r": 500.0}} for _ in range(99)])
    assert not tracker.update([{}, {"terminal_observation": None}])  # no episode ended
    assert tracker.update([{"episode": {"r": 500.0}}])
    assert tracker.episodes == 100
    # The window slides: 95 x 500 + 5 x 0 averages exactly 475 (solved), one more 0 not.
    assert tracker.update([{"episode": {"r": 0.0}} for _ in range(5)])
    assert not tracker.update([{"episode": {"r": 0.0}}])


def test_linear_schedule_decays_to_zero():
    schedule = zoo.linear(1e-3)
    assert schedule(1.0) == pytest.approx(1e-3) and schedule(0.0) == 0.0


def test_sb3_peer_explains_a_missing_install(monkeypatch, capsys):
    monkeypatch.setattr(sb3_peer, "_sb3_missing", lambda: True)
    assert sb3_peer.main(["--algo", "ppo", "--seed", "1"]) == 2
    assert "pip install -e '.[bench]'" in capsys.readouterr().err


# --- bench-solve per env ---------------------------------------------------------------

PRESETS = {
    "CartPole-v1": "cartpole",
    "Acrobot-v1": "acrobot",
    "LunarLander-v3": "lunarlander",
    "Pendulum-v1": "pendulum",
    "HalfCheetah-v5": "continuous",
}


def test_targets_per_env():
    assert sb3_peer.TARGETS == {
        "CartPole-v1": 475.0,
        "Acrobot-v1": -100.0,
        "LunarLander-v3": 200.0,
        "Pendulum-v1": -200.0,
        "HalfCheetah-v5": 3000.0,
    }
    assert set(bench_solve.MAX_SECONDS) == set(sb3_peer.TARGETS) == set(PRESETS)


def test_zoo_has_a2c_and_ppo_for_every_env_with_what_the_script_needs():
    assert set(zoo.ZOO) == set(sb3_peer.TARGETS)
    for env, entries in zoo.ZOO.items():
        assert set(entries) == {"a2c", "ppo"}, env
        for algo, entry in entries.items():
            assert entry["policy"] == "MlpPolicy", (env, algo)
            assert int(entry["n_timesteps"]) >= 100_000, (env, algo)
            s = zoo.settings(env, algo)
            assert s.n_envs >= 1 and s.n_timesteps == int(entry["n_timesteps"])
            assert not set(s.kwargs) & zoo.RUN_KEYS


def test_cartpole_peers_are_the_ones_the_bench_always_ran():
    a2c, ppo = zoo.settings("CartPole-v1", "a2c"), zoo.settings("CartPole-v1", "ppo")
    assert (a2c.n_envs, a2c.n_timesteps, a2c.normalize, a2c.kwargs) == (
        8,
        500_000,
        None,
        {"ent_coef": 0.0},
    )
    assert (ppo.n_envs, ppo.n_timesteps, ppo.normalize) == (8, 100_000, None)
    assert ppo.kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert ppo.kwargs["clip_range"](1.0) == pytest.approx(0.2)


def test_settings_translate_normalize_schedules_and_policy_kwargs():
    from torch import nn

    pendulum = zoo.settings("Pendulum-v1", "a2c")
    assert pendulum.normalize == {"gamma": 0.9}  # the zoo passes the entry's gamma on
    assert pendulum.kwargs["use_sde"] is True
    assert pendulum.kwargs["learning_rate"](1.0) == pytest.approx(7e-4)
    assert pendulum.kwargs["policy_kwargs"] == {"log_std_init": -2, "ortho_init": False}
    cheetah = zoo.settings("HalfCheetah-v5", "a2c")
    assert (cheetah.n_envs, cheetah.normalize, cheetah.kwargs) == (1, {}, {})  # no gamma given
    ppo = zoo.settings("HalfCheetah-v5", "ppo")
    assert ppo.normalize == {"gamma": 0.98}
    assert ppo.kwargs["policy_kwargs"]["activation_fn"] is nn.ReLU
    assert zoo.settings("LunarLander-v3", "a2c").normalize is None
    assert zoo.settings("Pendulum-v1", "ppo").kwargs["sde_sample_freq"] == 4


def test_policy_kwargs_are_parsed_as_the_zoo_writes_them():
    from torch import nn

    # As YAML folds the zoo's multi-line string.
    text = (
        "dict( log_std_init=-2, ortho_init=False, activation_fn=nn.ReLU, "
        "net_arch=dict(pi=[256, 256], vf=[256, 256]) )"
    )
    assert zoo.parse_policy_kwargs(text) == {
        "log_std_init": -2,
        "ortho_init": False,
        "activation_fn": nn.ReLU,
        "net_arch": {"pi": [256, 256], "vf": [256, 256]},
    }
    assert zoo.parse_policy_kwargs("dict(log_std_init=-3.29)") == {"log_std_init": -3.29}


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "dict(activation_fn=nn.Foo)",
        "dict(x=os.getcwd())",
        "dict(**other)",
        "dict(x=lambda: 0)",
        "dict(x='text')",
        "dict(x=-True)",
        "[256, 256]",
        "dict(",
    ],
)
def test_policy_kwargs_refuse_anything_else(text):
    with pytest.raises(ValueError, match="policy_kwargs"):
        zoo.parse_policy_kwargs(text)


def test_only_linear_schedules():
    assert zoo.schedule("lin_0.00083")(1.0) == pytest.approx(0.00083)
    with pytest.raises(ValueError, match="lin_"):
        zoo.schedule("exp_0.1")


@pytest.mark.parametrize("env", sorted(PRESETS))
def test_ours_runs_the_env_preset_with_the_target(env, tmp_path):
    from learner.flags import parse

    cmd = bench_solve.ours_command(env, 3, 60.0, tmp_path, "")
    assert cmd[1:5] == ["-m", "learner", "--env", env] and "--algo" not in " ".join(cmd)
    cfg, _ = parse(cmd[3:])
    assert (cfg.preset, cfg.env, cfg.seed, cfg.actors) == (PRESETS[env], env, 3, 2)
    assert cfg.target_return == sb3_peer.TARGETS[env] and cfg.max_seconds == 60.0


def test_cartpole_runs_the_configuration_the_bench_always_ran(tmp_path):
    from learner.flags import parse

    new = parse(bench_solve.ours_command("CartPole-v1", 1, 120.0, tmp_path)[3:])[0].resolved()
    before = "--algo a2c --actors 2 --envs 16 --rollout-len 32 --lr 4e-3 --gae-lambda 0.95"
    rest = f"--seed 1 --port 0 --run-dir {tmp_path} --milestones 475 --max-seconds 120"
    old = parse([*before.split(), *rest.split(), "--checkpoint-every-s", "0"])[0].resolved()
    # Then the target was CartPole's threshold by default; now it is said. And ours now
    # has the largest peer budget (the zoo's a2c n_timesteps) where it had none.
    assert (old.pop("target_return"), new.pop("target_return")) == (None, 475.0)
    assert (old.pop("max_env_steps"), new.pop("max_env_steps")) == (None, 500_000)
    assert new == old


def test_the_peer_is_told_the_env_and_target():
    cmd = bench_solve.peer_command("sb3-a2c", "Pendulum-v1", 2, 30.0)
    assert cmd[1:3] == ["-m", "scripts.sb3_peer"]
    assert cmd[3:] == [
        "--env",
        "Pendulum-v1",
        "--algo",
        "a2c",
        "--target=-200",
        "--seed",
        "2",
        "--max-seconds",
        "30",
    ]


def test_an_unknown_env_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_solve.main(["--env", "MountainCar-v0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown env 'MountainCar-v0'" in err and "HalfCheetah-v5" in err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_peers_choose_among_the_systems():
    assert bench_solve.select_systems("ours,sb3-a2c,sb3-ppo", "ppo") == ["ours", "sb3-ppo"]
    assert bench_solve.select_systems("ours,sb3-a2c,sb3-ppo", "ppo,a2c") == [
        "ours",
        "sb3-a2c",
        "sb3-ppo",
    ]
    assert bench_solve.select_systems("ours,sb3-ppo", "") == ["ours"]
    with pytest.raises(ValueError, match="unknown peers"):
        bench_solve.select_systems("ours", "sac")
    with pytest.raises(ValueError, match="unknown systems"):
        bench_solve.select_systems("ours,sb3-sac", "a2c")


def test_report_for_a_fake_results_set():
    ours = {"preset": "continuous", "algo": "ppo"}
    runs = [
        {**_run("ours", 1, 900.0, 2_500_000), **ours},
        _run("sb3-a2c", 1, None),
        _run("sb3-ppo", 1, 1800.0, 900_000),
        {**_run("ours", 2, None), **ours},
        _run("sb3-a2c", 2, None),
        _run("sb3-ppo", 2, 1500.0, 800_000),
    ]
    info = {"nproc": 2}
    body = bench_solve.report_body("HalfCheetah-v5", "1,2", 3600.0, "", runs, [], info)
    assert body.startswith("HalfCheetah-v5, solved = mean return of the last 100 episodes >= 3000;")
    rows = [ln for ln in body.splitlines() if ln.startswith("| ") and "system" not in ln]
    assert rows == [
        "| ours | 900.0, — | — | 2500000, — | — | 1/2 |",
        "| sb3-a2c | —, — | — | —, — | — | 0/2 |",
        "| sb3-ppo | 1800.0, 1500.0 | 1650.00 | 900000, 800000 | 850000 | 2/2 |",
    ]
    assert "Speed-up: not defined" in body
    assert (
        "`python -m learner --env HalfCheetah-v5 --actors 2 --target-return=3000"
        " --max-env-steps 1000000`" in body
    )
    assert "preset `continuous`, algo ppo" in body
    assert "`hyperparams/a2c.yml` entry `HalfCheetah-v4`" in body
    assert "`hyperparams/ppo.yml` entry `HalfCheetah-v4`" in body and "1,000,000 env steps" in body
    assert "- nproc: 2" in body


# SB3 is the optional bench extra: these build (never train) the peers when it is here.


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
@pytest.mark.parametrize("env", sorted(PRESETS))
def test_sb3_accepts_every_zoo_entry(env, algo):
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 (the bench extra) absent")
    from stable_baselines3.common.vec_env import VecNormalize

    entry = zoo.ZOO[env][algo]
    model = sb3_peer.build(env, algo, seed=1)
    try:
        envs = model.get_env()
        assert envs.num_envs == entry.get("n_envs", 1)
        assert isinstance(envs, VecNormalize) == bool(entry.get("normalize"))
        if isinstance(envs, VecNormalize):
            assert envs.gamma == entry.get("gamma", 0.99)
        for key in ("n_steps", "gamma", "gae_lambda", "ent_coef", "batch_size", "n_epochs"):
            if key in entry:
                assert getattr(model, key) == entry[key], key
        assert model.use_sde == entry.get("use_sde", False)
        assert model.device.type == "cpu"
    finally:
        model.get_env().close()


def test_the_tracker_reads_raw_returns_through_vecnormalize():
    pytest.importorskip("stable_baselines3", reason="stable-baselines3 (the bench extra) absent")
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    envs = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=1), gamma=0.9)
    tracker = sb3_peer.SolveTracker(target=-200.0, window=1)
    envs.reset()
    raw = 0.0
    for _ in range(200):  # one Pendulum episode
        _, reward, done, infos = envs.step(np.zeros((1, 1), dtype=np.float32))
        raw += float(envs.get_original_reward()[0])
        tracker.update(infos)
    envs.close()
    assert done[0] and tracker.episodes == 1
    assert tracker.returns[0] == pytest.approx(raw, rel=1e-5)
    assert abs(float(reward[0])) <= 10.0 and raw < -200.0  # normalised vs raw
