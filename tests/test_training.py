"""Tests of bayesfn.training.optimize against independent references.

References: an uninterrupted fit for resume after a real SIGKILL, hand-written optimiser
loops on the batches the loop drew, NumPy's least-squares solution, scripted validation
curves, and a single-process fit for data-parallel training under ``torchrun``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bayesfn import io
from bayesfn.training import FitResult, StepInfo, optimize

TESTS = Path(__file__).resolve().parent
D = torch.float64


def _load_helper(name: str):
    spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


resume_worker = _load_helper("_resume_worker")
ddp_worker = _load_helper("_ddp_worker")


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    """A stray WORLD_SIZE from the environment would make optimize() start gloo."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(extra)
    return env


def _regression(n=24, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D)
    y = torch.sin(x[:, :1]) + 0.1 * torch.randn(n, 1, generator=g, dtype=D)
    return x, y


def _mlp(d=2, hidden=8, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
        ).double()


def _mse(net):
    return lambda batch: ((net(batch[0]) - batch[1]) ** 2).mean()


def _params(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs"


# --------------------------------------------------------------------------- resume / kill


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """Run the helper fit in a subprocess that SIGKILLs itself at step 13."""
    ckpt = tmp_path_factory.mktemp("killed") / "ckpt"
    proc = subprocess.run(
        [
            sys.executable,
            str(TESTS / "_resume_worker.py"),
            "--ckpt",
            str(ckpt),
            "--max-steps",
            "30",
            "--kill-at",
            "13",
            "--threads",
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=_subprocess_env(),
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    echoed = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    losses = {int(step): float(value) for step, value in echoed}
    return ckpt, losses


@pytest.fixture(scope="module")
def uninterrupted():
    net, result = resume_worker.fit(None, 30)
    return _params(net), result


def _forbid_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)


def test_resume_after_sigkill_is_exact(killed_run, uninterrupted, tmp_path, monkeypatch):
    ckpt, killed_losses = killed_run
    ref_params, ref = uninterrupted
    assert len(ref.losses) == 30
    # the killed process followed the reference trajectory up to its death at step 13
    assert sorted(killed_losses) == list(range(1, 14))
    assert [killed_losses[s] for s in range(1, 14)] == ref.losses[:13]

    work = tmp_path / "ckpt"
    shutil.copytree(ckpt, work)
    _forbid_pickle(monkeypatch)
    net, result = resume_worker.fit(str(work), 30)

    assert result.resumed_from == 10
    assert result.num_steps == 30
    assert len(result.losses) == 30
    assert result.losses == ref.losses  # exact: same floats, step by step
    _assert_same_params(_params(net), ref_params)


def test_resume_at_max_steps_does_nothing(killed_run, uninterrupted, tmp_path):
    ckpt, _ = killed_run
    ref_params, ref = uninterrupted
    work = tmp_path / "ckpt"
    shutil.copytree(ckpt, work)
    resume_worker.fit(str(work), 30)  # finishes the fit and checkpoints step 30
    net, result = resume_worker.fit(str(work), 30)
    assert result.resumed_from == 30
    assert result.losses == ref.losses
    _assert_same_params(_params(net), ref_params)


def test_checkpoint_folder_holds_safetensors_and_json_only(killed_run):
    ckpt, _ = killed_run
    assert sorted(os.listdir(ckpt)) == ["latest"]
    folder = ckpt / "latest"
    assert sorted(os.listdir(folder)) == ["config.json", "weights.safetensors"]

    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "bayesfn-checkpoint"
    assert config["state"]["step"] == 10  # last multiple of checkpoint_every before the kill
    assert len(config["state"]["result"]["losses"]) == 10

    raw = (folder / "weights.safetensors").read_bytes()
    assert raw[:1] != b"\x80" and raw[:2] != b"PK"  # neither a pickle nor torch's zip
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    with safe_open(str(folder / "weights.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(header) - {"__metadata__"}
        assert len(list(f.keys())) > 0


def test_checkpoint_of_tied_weights_round_trips(tmp_path):
    """Two state_dict entries naming one tensor (weight tying) must checkpoint."""

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(3, 3, bias=False)
            self.dec = torch.nn.Linear(3, 3, bias=False)
            self.dec.weight = self.enc.weight

        def forward(self, x):
            return self.dec(torch.tanh(self.enc(x)))

    x, _ = _regression(n=10, d=3)

    def run(max_steps, ckpt):
        net = Tied().double()
        with torch.no_grad():
            net.enc.weight.copy_(torch.eye(3, dtype=D) * 0.5)
        res = optimize(
            net,
            lambda b: ((net(b[0]) - b[0]) ** 2).mean(),
            data=(x,),
            batch_size=5,
            max_steps=max_steps,
            seed=0,
            checkpoint_dir=ckpt,
            checkpoint_every=2,
            progress_bar=False,
        )
        return net, res

    ref, ref_res = run(6, None)
    run(4, tmp_path)
    net, res = run(6, tmp_path)
    assert res.resumed_from == 4
    assert net.dec.weight is net.enc.weight
    assert torch.equal(net.enc.weight, ref.enc.weight)
    assert res.losses == ref_res.losses


# --------------------------------------------------------------------------- early stopping


def _scripted_fit(values, *, val_every, patience, restore_best=True, min_delta=0.0):
    x, y = _regression()
    net = _mlp()
    script = iter(values)
    modes = []
    recorded: dict[int, dict[str, torch.Tensor]] = {}

    def val_fn():
        modes.append((net.training, torch.is_grad_enabled()))
        return next(script)

    def record(info: StepInfo):
        recorded[info.step] = _params(info.module)

    result = optimize(
        net,
        _mse(net),
        data=(x, y),
        batch_size=6,
        max_steps=1000,
        seed=0,
        val_fn=val_fn,
        val_every=val_every,
        patience=patience,
        min_delta=min_delta,
        restore_best=restore_best,
        callbacks=[record],
        progress_bar=False,
    )
    return net, result, recorded, modes


def test_early_stopping_restores_best_parameters():
    values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 0.0, 0.0]  # best at the 3rd evaluation
    net, result, recorded, modes = _scripted_fit(values, val_every=2, patience=3)
    assert result.stopped_early is True
    assert result.num_steps == 12 and len(result.losses) == 12  # 3 bad evaluations after step 6
    assert result.val_history == [[2, 5.0], [4, 4.0], [6, 3.0], [8, 3.5], [10, 3.2], [12, 3.1]]
    assert result.best_step == 6
    _assert_same_params(_params(net), recorded[6])
    assert not any(torch.equal(recorded[6][k], recorded[12][k]) for k in recorded[6])
    assert modes == [(False, False)] * 6  # eval mode, no autograd
    assert not net.training


def test_early_stopping_without_restore_keeps_last_parameters():
    values = [2.0, 1.0, 1.5, 1.2]
    net, result, recorded, _ = _scripted_fit(values, val_every=3, patience=2, restore_best=False)
    assert result.stopped_early and result.num_steps == 12
    _assert_same_params(_params(net), recorded[12])


def test_min_delta_counts_small_gains_as_no_improvement():
    values = [1.0, 0.95, 0.91, 0.5]  # gains of 0.05, 0.04 are below min_delta=0.1
    _, result, _, _ = _scripted_fit(values, val_every=1, patience=2, min_delta=0.1)
    assert result.stopped_early and result.num_steps == 3 and result.best_step == 1


# --------------------------------------------------------------------------- callbacks, seeds


def test_callback_returning_true_stops_and_sees_step_numbers():
    x, y = _regression()
    net = _mlp()
    infos: list[StepInfo] = []
    other: list[int] = []

    def stopper(info):
        infos.append(info)
        return info.step == 7

    result = optimize(
        net,
        _mse(net),
        data=(x, y),
        batch_size=6,
        max_steps=50,
        seed=0,
        callbacks=[stopper, lambda info: other.append(info.step)],
        val_fn=lambda: 1.0,
        val_every=3,
        progress_bar=False,
    )
    assert result.num_steps == 7 and len(result.losses) == 7
    assert not result.stopped_early  # a callback stop is not early stopping
    assert [i.step for i in infos] == list(range(1, 8))
    assert other == list(range(1, 8))  # every callback still runs on the stopping step
    assert [i.loss for i in infos] == result.losses
    assert [i.val_metric for i in infos] == [None, None, 1.0, None, None, 1.0, None]
    assert all(i.module is net and i.result is result for i in infos)


def test_loop_matches_hand_written_adam_on_the_batches_it_drew():
    x, y = _regression(n=20)
    net = _mlp()
    start = _params(net)
    drawn: list[torch.Tensor] = []

    def loss_fn(batch):
        drawn.append(batch[0].clone())
        return ((net(batch[0]) - batch[1]) ** 2).mean()

    result = optimize(
        net, loss_fn, data=(x, y), batch_size=6, max_steps=9, lr=0.03, seed=5, progress_bar=False
    )

    # every epoch uses 3 disjoint batches of 6 (the ragged 2 are dropped), and every batch
    # is made of rows of x with matching y
    rows = [(b[:, None, :] == x[None]).all(-1).nonzero()[:, 1] for b in drawn]
    for epoch in range(3):
        ids = torch.cat(rows[3 * epoch : 3 * epoch + 3])
        assert len(set(ids.tolist())) == 18
    assert len({tuple(r.tolist()) for r in rows}) == 9

    ref = _mlp()
    ref.load_state_dict(start)
    opt = torch.optim.Adam(ref.parameters(), lr=0.03)
    losses = []
    for r in rows:
        opt.zero_grad()
        loss = ((ref(x[r]) - y[r]) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the loop uses torch's fused Adam kernel; the textbook update here agrees to rounding
    torch.testing.assert_close(result.losses, losses, rtol=1e-12, atol=0)
    for a, b in zip(_params(net).values(), _params(ref).values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_same_seed_same_fit_different_seed_different_order():
    x, y = _regression()

    def run(seed, global_seed):
        torch.manual_seed(global_seed)  # the global RNG state before the fit is irrelevant
        net = _mlp()
        firsts = []

        def loss_fn(batch):
            firsts.append(batch[0].clone())
            return ((net(batch[0]) - batch[1]) ** 2).mean()

        optimize(
            net, loss_fn, data=(x, y), batch_size=6, max_steps=8, seed=seed, progress_bar=False
        )
        return _params(net), firsts

    a, order_a = run(0, 1)
    b, order_b = run(0, 2)
    c, order_c = run(1, 1)
    _assert_same_params(a, b)
    assert all(torch.equal(u, v) for u, v in zip(order_a, order_b, strict=True))
    assert not torch.equal(order_a[0], order_c[0])
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_seed_also_seeds_the_stochastic_loss():
    def run(seed):
        net = _mlp()
        optimize(
            net,
            lambda b: ((net(b[0]) + torch.randn(()) - 1.0) ** 2).mean(),
            data=(torch.ones(4, 2, dtype=D),),
            max_steps=5,
            seed=seed,
            progress_bar=False,
        )
        return _params(net)

    _assert_same_params(run(3), run(3))
    a, b = run(3), run(4)
    assert any(not torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- errors


def test_non_finite_loss_names_the_step():
    net = _mlp()
    calls = []

    def loss_fn(batch):
        calls.append(1)
        loss = (net(batch[0]) ** 2).mean()
        return loss * float("nan") if len(calls) == 4 else loss

    seen = []
    with pytest.raises(FloatingPointError, match=r"nan at step 4\b"):
        optimize(
            net,
            loss_fn,
            data=(torch.ones(5, 2, dtype=D),),
            max_steps=10,
            seed=0,
            callbacks=[lambda info: seen.append(info.step)],
            progress_bar=False,
        )
    assert seen == [1, 2, 3]  # the step that failed is the 4th

    with pytest.raises(FloatingPointError, match=r"inf at step 1\b"):
        optimize(
            net,
            lambda b: (net(torch.ones(1, 2, dtype=D)) * float("inf")).sum(),
            max_steps=3,
            progress_bar=False,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"data": (torch.zeros(5, 2), torch.zeros(4, 1))},
            r"data\[1\] has 4 rows; data\[0\] has 5",
        ),
        ({"data": (torch.zeros(5, 2),), "batch_size": 6}, r"batch_size must be in \[1, 5\]; got 6"),
        ({"data": (torch.zeros(5, 2),), "batch_size": 0}, r"batch_size must be in \[1, 5\]; got 0"),
        ({"data": (torch.zeros(5, 2),), "patience": 3}, r"patience= needs val_fn="),
        ({"data": (torch.zeros(0, 2),)}, r"data is empty"),
        ({"batch_size": 2}, r"batch_size= needs data="),
        ({"max_steps": -1}, r"max_steps must be a non-negative integer; got -1"),
        ({"max_steps": 2.5}, r"max_steps must be a non-negative integer; got 2\.5"),
        ({"checkpoint_every": 0}, r"checkpoint_every and val_every must be positive"),
        ({"optimizer": "lbfgs"}, r"optimizer must be one of .*'lbfgs'"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    net = _mlp()
    with pytest.raises(ValueError, match=match):
        optimize(net, lambda b: net(torch.ones(1, 2, dtype=D)).sum(), progress_bar=False, **kwargs)


def test_non_scalar_loss_and_no_parameters_raise():
    net = _mlp()
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar; got shape \(3, 1\)"):
        optimize(net, lambda b: net(torch.ones(3, 2, dtype=D)), max_steps=2, progress_bar=False)
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        optimize(frozen, lambda b: frozen(torch.ones(1, 2, dtype=D)).sum(), progress_bar=False)


# --------------------------------------------------------------------------- closed form


def test_full_batch_gradient_descent_reaches_lstsq():
    rng = np.random.default_rng(0)
    n, d = 60, 3
    x_np = rng.normal(size=(n, d))
    y_np = x_np @ np.array([1.5, -2.0, 0.5]) + 0.7 + rng.normal(scale=0.3, size=n)
    design = np.hstack([x_np, np.ones((n, 1))])
    coef, *_ = np.linalg.lstsq(design, y_np, rcond=None)
    # step size 1/L for L = the Lipschitz constant of the mean squared error's gradient
    lipschitz = 2.0 / n * np.linalg.eigvalsh(design.T @ design).max()

    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)[:, None]
    lin = torch.nn.Linear(d, 1).double()
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()

    def loss_fn(batch):
        assert torch.equal(batch[0], x) and torch.equal(batch[1], y)  # the full data, as is
        return ((lin(batch[0]) - batch[1]) ** 2).mean()

    result = optimize(
        lin,
        loss_fn,
        data=(x, y),
        batch_size=None,
        optimizer="sgd",
        lr=1.0 / lipschitz,
        max_steps=400,
        seed=0,
        progress_bar=False,
    )
    got = np.concatenate([lin.weight.detach().numpy().ravel(), lin.bias.detach().numpy()])
    np.testing.assert_allclose(got, coef, rtol=0, atol=1e-6)
    steps = zip(result.losses, result.losses[1:], strict=False)
    assert all(b <= a + 1e-12 for a, b in steps)  # monotone descent with step 1/L
    residual = design @ coef - y_np
    assert result.losses[-1] == pytest.approx(np.mean(residual**2), rel=1e-9)


def test_grad_clip_matches_clipped_sgd_by_hand():
    w0 = torch.tensor([3.0, -4.0], dtype=D)  # gradient of ||w||^2 is 2w, norm 10
    w = torch.nn.Parameter(w0.clone())
    holder = torch.nn.Module()
    holder.w = w
    optimize(
        holder,
        lambda b: (holder.w**2).sum(),
        optimizer="sgd",
        lr=0.1,
        grad_clip=1.0,
        max_steps=1,
        progress_bar=False,
    )
    expected = w0 - 0.1 * (2 * w0) / torch.linalg.norm(2 * w0)
    # clip_grad_norm_ divides by (norm + 1e-6), hence the tolerance
    torch.testing.assert_close(w.detach(), expected, rtol=1e-6, atol=0)


def test_progress_bar_runs_cleanly(capsys):
    net = _mlp()
    optimize(
        net,
        lambda b: net(torch.ones(1, 2, dtype=D)).pow(2).sum(),
        max_steps=12,
        progress_bar=True,
        desc="bar-test",
    )
    assert "bar-test" in capsys.readouterr().err


def test_result_extends_given_fit_result():
    net = _mlp()
    prior = FitResult(diagnostics={"note": 1})
    out = optimize(
        net,
        lambda b: net(torch.ones(1, 2, dtype=D)).pow(2).sum(),
        max_steps=3,
        result=prior,
        progress_bar=False,
    )
    assert out is prior and out.diagnostics == {"note": 1} and out.num_steps == 3


# --------------------------------------------------------------------------- torchrun


def test_data_parallel_two_gloo_ranks_match_single_process(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(TESTS / "_ddp_worker.py"),
        "--out",
        str(out),
    ]
    env = _subprocess_env(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    if Path("/sys/class/net/lo").exists():  # keep gloo on loopback, whatever the hostname says
        env["GLOO_SOCKET_IFNAME"] = "lo"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    info = json.loads((out / "result.json").read_text())
    ddp_params = load_file(str(out / "params.safetensors"))
    assert info["world_size"] == 2

    net, x, y = ddp_worker.make_problem()
    result, seen = ddp_worker.fit(net, x, y)
    assert len(result.losses) == ddp_worker.STEPS

    # each step, the two ranks took disjoint halves of exactly the single-process batch
    rank0, rank1 = info["rows"]
    for step in range(ddp_worker.STEPS):
        assert len(rank0[step]) == len(rank1[step]) == ddp_worker.BATCH // 2
        assert set(rank0[step]).isdisjoint(rank1[step])
        assert sorted(rank0[step] + rank1[step]) == sorted(seen[step])

    np.testing.assert_allclose(info["losses"], result.losses, rtol=1e-12, atol=1e-14)
    single = net.state_dict()
    assert ddp_params.keys() == single.keys()
    for k in single:
        assert ddp_params[k].dtype == torch.float64
        torch.testing.assert_close(ddp_params[k], single[k], rtol=1e-10, atol=1e-12)


def test_io_is_what_checkpoints_use(tmp_path):
    """optimize's checkpoint can be read back by bayesfn.io alone."""
    x, y = _regression(n=8)
    net = _mlp()
    optimize(
        net,
        _mse(net),
        data=(x, y),
        batch_size=4,
        max_steps=3,
        seed=0,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        progress_bar=False,
    )
    header, state = io.read_state(tmp_path / "latest")
    assert header["format"] == "bayesfn-checkpoint"
    assert header["identity"]["step"] == 3 and header["identity"]["max_steps"] == 3
    assert state["step"] == 3
    _assert_same_params(state["module"], _params(net))


# ------------------------------------------------------------ stale checkpoints, crash safety


def _ckpt_fit(ckpt, *, x=None, y=None, max_steps=4, **kw):
    if x is None:
        x, y = _regression(n=12)
    net = _mlp()
    kw = {"batch_size": 4, "seed": 0, "checkpoint_every": 2, "progress_bar": False, **kw}
    res = optimize(net, _mse(net), data=(x, y), max_steps=max_steps, checkpoint_dir=ckpt, **kw)
    return net, res


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x": "other data"}, r"the data differ"),
        ({"lr": 0.5}, r"lr: checkpoint 0\.01, now 0\.5"),
        ({"batch_size": 3}, r"batch_size: checkpoint 4, now 3"),
        ({"seed": 1}, r"seed: checkpoint 0, now 1"),
        ({"fingerprint": {"kernel": "matern"}}, r"settings or captured data differ"),
        ({"max_steps": 2}, r"at step 4, beyond max_steps=2"),
    ],
)
def test_a_checkpoint_of_another_fit_is_refused(tmp_path, change, match):
    _ckpt_fit(tmp_path, fingerprint={"kernel": "rbf"})
    kw = {"fingerprint": {"kernel": "rbf"}, **change}
    if kw.pop("x", None) is not None:
        kw["x"], kw["y"] = _regression(n=12, seed=5)
    with pytest.raises(ValueError, match=r"checkpoint_dir=.* holds a checkpoint of another fit"):
        _ckpt_fit(tmp_path, **kw)
    with pytest.raises(ValueError, match=match):
        _ckpt_fit(tmp_path, **kw)


def test_a_checkpoint_of_another_fit_restarts_when_asked(tmp_path):
    _ckpt_fit(tmp_path)
    x, y = _regression(n=12, seed=5)
    ref_net, ref = _ckpt_fit(None, x=x, y=y)
    net, res = _ckpt_fit(tmp_path, x=x, y=y, checkpoint_mismatch="restart")
    assert res.resumed_from is None
    assert res.losses == ref.losses  # a fresh fit of the new data, not the old one's end
    _assert_same_params(_params(net), _params(ref_net))
    # and the checkpoint now belongs to the new fit
    assert _ckpt_fit(tmp_path, x=x, y=y)[1].resumed_from == 4
    with pytest.raises(ValueError, match="checkpoint_mismatch must be"):
        _ckpt_fit(tmp_path, checkpoint_mismatch="ignore")


def test_a_checkpoint_without_identity_is_refused(tmp_path):
    _ckpt_fit(tmp_path)
    header, state = io.read_state(tmp_path / "latest")
    io.write_state(tmp_path / "latest", {"format": header["format"]}, state)  # older bayesfn
    with pytest.raises(ValueError, match="records no identity"):
        _ckpt_fit(tmp_path)


def test_resume_reaches_the_backup_left_between_the_renames(tmp_path):
    ref_net, ref = _ckpt_fit(None, max_steps=6)
    _ckpt_fit(tmp_path, max_steps=4)
    os.replace(tmp_path / "latest", tmp_path / ".latest.old")  # killed between renames
    net, res = _ckpt_fit(tmp_path, max_steps=6)
    assert res.resumed_from == 4  # not a restart from step 0
    assert res.losses == ref.losses
    _assert_same_params(_params(net), _params(ref_net))
    assert sorted(os.listdir(tmp_path)) == ["latest"]


@pytest.mark.parametrize("seed", ["abc", 1.5, True])
def test_a_seed_that_is_not_an_integer_is_a_type_error(seed):
    net = _mlp()
    with pytest.raises(TypeError, match="seed must be an integer or None"):
        optimize(net, lambda b: net(torch.ones(1, 2, dtype=D)).sum(), seed=seed, max_steps=1)
