"""unitgrad.optim: exact formulas against a flat-vector hand computation, invariants, round trips, AMP, BN."""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unitgrad.errors import UnitgradError
from unitgrad.optim import (
    ASAM,
    PUGD,
    SAM,
    UGD,
    bn_update_disabled,
    create_optimizer,
    is_two_pass,
    reference,
    train_step,
)

METHODS = ["sam", "asam", "pugd", "ugd"]
ALL = ["sgd", *METHODS]
EPS = 1e-12


def api_step(opt, model, x, y, closure_form=False, scaler=None, inject_inf=None):
    """One step of `opt` on (x, y) written out with the public API (README's loop, or the closure form);
    `inject_inf` = "first" | "second" poisons one gradient. Returns the loss, the logits and ‖g‖ at w."""

    def backward():
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        (loss if scaler is None else scaler.scale(loss)).backward()
        return loss.detach(), logits.detach()

    opt.zero_grad()
    at_w = backward()
    at_w += (_global([p.grad for p in model.parameters() if p.grad is not None]),)
    if inject_inf == "first":
        next(model.parameters()).grad.view(-1)[0] = math.inf
    if not is_two_pass(opt):
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
        return at_w

    def second_pass():
        with bn_update_disabled(model):
            loss = backward()[0]
        if inject_inf == "second":
            next(model.parameters()).grad.view(-1)[0] = math.inf
        return loss

    if closure_form:
        opt.step(second_pass, scaler=scaler)
    else:
        opt.first_step()
        second_pass()
        opt.second_step(scaler)
    return at_w


def tiny_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    return model.to(dtype)


def tiny_batches(n=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 3, generator=gen)
    batches = []
    for _ in range(n):
        x = torch.randn(32, 6, generator=gen)
        batches.append((x, (x @ w).argmax(1)))
    return batches


# ---------------------------------------------------------------- exact formulas (float64, hand computation)

A = torch.tensor([1.0, 3.0, 0.5, 2.0, 4.0, 1.5, 0.7], dtype=torch.float64)
B = torch.tensor([0.3, -0.2, 0.5, 0.1, -0.4, 0.25, 0.6], dtype=torch.float64)
W0 = torch.tensor([0.8, -1.2, 0.4, 1.5, -0.6, 0.9, -0.3], dtype=torch.float64)
SPLIT = [
    (0, 4),
    (4, 6),
    (6, 7),
]  # params: 2x2 and 2-vector in group 0, 1-vector in group 1
GROUP_OF = torch.tensor([0, 0, 0, 0, 0, 0, 1])
HP = [  # per-group hyper-parameters
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-2, "rho": 0.3, "eta": 0.05},
    {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.0, "rho": 0.7, "eta": 0.2},
]


def flat_loss(v):
    return 0.5 * (A * v * v).sum() + (B * torch.sin(3 * v)).sum()


def flat_grad(v):
    return A * v + 3 * B * torch.cos(3 * v)


def per_element(key):
    return torch.tensor([HP[g][key] for g in GROUP_OF.tolist()], dtype=torch.float64)


def hand_steps(method, steps, lr_factor):
    """The brief's formulas on one flat vector, SGD with momentum and weight decay as the base."""
    w, buf = W0.clone(), None
    lr, mom, wd, rho, eta = (per_element(k) for k in ("lr", "momentum", "weight_decay", "rho", "eta"))
    for t in range(steps):
        g = flat_grad(w)
        if method == "sam":
            d = flat_grad(w + rho * g / (g.norm() + EPS))
        elif method == "asam":
            tw = w.abs() + eta
            d = flat_grad(w + rho * tw * tw * g / ((tw * g).norm() + EPS))
        elif method == "pugd":
            big_g = g + flat_grad(w + rho * w.abs() * g / ((w.abs() * g).norm() + EPS))
            d = big_g / (big_g.norm() + EPS)
        elif method == "ugd":
            d = g / (g.norm() + EPS)
        else:
            d = g
        d = d + wd * w
        buf = d if buf is None else mom * buf + d
        w = w - lr * lr_factor(t) * buf
    return w


def make_params():
    chunks = [W0[a:b].clone() for a, b in SPLIT]
    chunks[0] = chunks[0].reshape(2, 2)
    return [c.requires_grad_() for c in chunks]


def param_loss(params):
    return flat_loss(torch.cat([p.reshape(-1) for p in params]))


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("closure_form", [False, True])
def test_formula_matches_hand_computation_two_groups_momentum_wd_scheduler(method, closure_form):
    params = make_params()
    groups = [{"params": params[:2], **HP[0]}, {"params": params[2:], **HP[1]}]
    own = {"sam": ("rho",), "asam": ("rho", "eta"), "pugd": ("rho",)}.get(method, ())
    groups = [{k: v for k, v in g.items() if k in ("params", "lr", "momentum", "weight_decay", *own)} for g in groups]
    opt = create_optimizer(method, groups)
    lr_factor = lambda t: 1.0 / (1 + t)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    for _ in range(4):
        opt.zero_grad()
        param_loss(params).backward()
        if not is_two_pass(opt):
            opt.step()
        elif closure_form:
            opt.step(lambda: param_loss(params).backward())
        else:
            opt.first_step()
            param_loss(params).backward()
            opt.second_step()
        sched.step()
    got = torch.cat([p.detach().reshape(-1) for p in params])
    torch.testing.assert_close(got, hand_steps(method, 4, lr_factor), rtol=0, atol=1e-12)


def test_pugd_accumulates_first_and_second_gradient():
    """One PUGD step with plain SGD: w ← w − lr·G/‖G‖ with G = g(w) + g(w + e)."""
    (p,) = [W0.clone().requires_grad_()]
    opt = PUGD([p], torch.optim.SGD, rho=0.4, lr=0.2)
    flat_loss(p).backward()
    g = p.grad.clone()
    opt.first_step()
    e = 0.4 * W0.abs() * g / ((W0.abs() * g).norm() + EPS)
    torch.testing.assert_close(p.detach(), W0 + e, rtol=0, atol=1e-15)
    torch.testing.assert_close(p.grad, g, rtol=0, atol=0)  # not zeroed
    flat_loss(p).backward()
    opt.second_step()
    big_g = g + flat_grad(W0 + e)
    torch.testing.assert_close(p.detach(), W0 - 0.2 * big_g / (big_g.norm() + EPS), rtol=0, atol=1e-14)


def test_asam_eta_enters_numerator_and_norm():
    p = W0.clone().requires_grad_()
    opt = ASAM([p], torch.optim.SGD, rho=0.5, eta=0.3, lr=0.1)
    flat_loss(p).backward()
    g = p.grad.clone()
    opt.first_step()
    t = W0.abs() + 0.3
    torch.testing.assert_close(p.detach() - W0, 0.5 * t * t * g / ((t * g).norm() + EPS), rtol=0, atol=1e-15)
    assert p.grad is None  # SAM/ASAM drop g before the second pass


def test_sam_rho_zero_equals_base_step_bitwise():
    batches = tiny_batches(4)
    model_a, model_b = tiny_model(), tiny_model()
    sam = SAM(
        model_a.parameters(),
        torch.optim.SGD,
        rho=0.0,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
    )
    sgd = torch.optim.SGD(model_b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for x, y in batches:
        train_step(sam, model_a, F.cross_entropy, x, y)
        train_step(sgd, model_b, F.cross_entropy, x, y)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("method", METHODS)
def test_fast_update_is_the_reference_loop(method):
    """unitgrad.optim's foreach update equals `unitgrad.optim.reference`'s per-parameter loop (float64, BN model)."""
    kwargs = {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        **{"sam": {"rho": 0.3}, "asam": {"rho": 0.5, "eta": 0.05}, "pugd": {"rho": 0.7}, "ugd": {}}[method],
    }
    fast_model, loop_model = tiny_model(dtype=torch.float64), tiny_model(dtype=torch.float64)
    fast = create_optimizer(method, fast_model.parameters(), **kwargs)
    loop = reference.OPTIMIZERS[method](loop_model.parameters(), torch.optim.SGD, **kwargs)
    for x, y in tiny_batches(4):
        for opt, model in ((fast, fast_model), (loop, loop_model)):
            train_step(opt, model, F.cross_entropy, x.double(), y)
    for a, b in zip(fast_model.state_dict().values(), loop_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert not torch.equal(next(fast_model.parameters()).float(), next(tiny_model().parameters()))  # it moved


# ---------------------------------------------------------------- behaviour


@pytest.mark.parametrize("method", ALL)
def test_converges_on_ill_conditioned_quadratic(method):
    curvature = torch.tensor([1.0, 25.0])
    w = torch.tensor([2.0, 1.0], requires_grad=True)
    opt = create_optimizer(
        method,
        [w],
        lr=0.03,
        momentum=0.9,
        **({"rho": 0.05} if method != "sgd" and method != "ugd" else {}),
    )
    steps = 400
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = lambda: 0.5 * (curvature * w * w).sum()
    start = loss_fn().item()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        if is_two_pass(opt):
            opt.step(lambda: loss_fn().backward())
        else:
            opt.step()
        sched.step()
    assert loss_fn().item() < 1e-4 * start
    assert w.detach().norm() < 0.02


@pytest.mark.parametrize("method", ALL)
def test_loss_falls_on_tiny_model(method):
    model = tiny_model()
    opt = create_optimizer(method, model.parameters(), lr=0.05, momentum=0.9)
    x, y = tiny_batches(1)[0]
    start = F.cross_entropy(model(x), y).item()
    for _ in range(25):
        train_step(opt, model, F.cross_entropy, x, y)
    assert F.cross_entropy(model(x), y).item() < 0.5 * start


def _global(tensors):
    return torch.sqrt(sum((t * t).sum() for t in tensors))


@pytest.mark.parametrize("method", METHODS)
def test_group_with_zero_lr_is_frozen_but_counts_in_global_norm(method):
    """The frozen group's gradients enter the one global norm: e and the unit gradient match a hand computation."""
    model = tiny_model(dtype=torch.float64)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    frozen = [p.detach().clone() for p in rest]
    w = {p: p.detach().clone() for p in model.parameters()}
    own = {"sam": {"rho": 0.2}, "asam": {"rho": 0.2, "eta": 0.1}, "pugd": {"rho": 0.2}, "ugd": {}}[method]
    opt = create_optimizer(method, [{"params": decay}, {"params": rest, "lr": 0.0}], lr=0.1, **own)
    x, y = tiny_batches(1)[0]
    x = x.double()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g = {p: p.grad.clone() for p in model.parameters()}
    if method == "ugd":  # w ← w − lr·g/‖g‖, the norm over both groups
        opt.step()
        unit = {p: g[p] / (_global(g.values()) + EPS) for p in decay}
    else:
        opt.first_step()
        if method == "sam":
            d, factor = g, dict.fromkeys(g, 1.0)
        elif method == "asam":
            factor = {p: w[p].abs() + 0.1 for p in w}
            d = {p: factor[p] * g[p] for p in w}
        else:
            d, factor = {p: w[p].abs() * g[p] for p in w}, dict.fromkeys(g, 1.0)
        norm = _global(d.values())
        for p in model.parameters():  # both groups are perturbed, by e = rho·factor·d/‖d‖ over both
            torch.testing.assert_close(p.detach() - w[p], 0.2 * factor[p] * d[p] / (norm + EPS), rtol=0, atol=1e-14)
        with bn_update_disabled(model):
            F.cross_entropy(model(x), y).backward()
        second = {p: p.grad.clone() for p in model.parameters()}
        opt.second_step()
        unit = {p: second[p] / (_global(second.values()) + EPS) if method == "pugd" else second[p] for p in decay}
    for p in decay:
        torch.testing.assert_close(p.detach(), w[p] - 0.1 * unit[p], rtol=0, atol=1e-14)
    assert all(torch.equal(p, f) for p, f in zip(rest, frozen))


@pytest.mark.parametrize("method", METHODS)
def test_scheduler_on_wrapper_drives_base_lr_without_warnings(method):
    model = tiny_model()
    opt = create_optimizer(method, model.parameters(), lr=0.4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x, y in tiny_batches(3):
            train_step(opt, model, F.cross_entropy, x, y)
            sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups is opt.base_optimizer.param_groups


def _checkpoint(model, opt, sched):
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _fresh(method):
    model = tiny_model(seed=5)  # different init: everything must come from the checkpoint
    opt = create_optimizer(
        method,
        [
            {"params": list(model.parameters())[:2]},
            {"params": list(model.parameters())[2:], "weight_decay": 0.0},
        ],
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    return model, opt, sched


@pytest.mark.parametrize("method", ALL)
def test_state_dict_resume_is_bit_identical(method):
    batches = tiny_batches(6)
    model, opt, sched = _fresh(method)
    model.load_state_dict(tiny_model().state_dict())
    for x, y in batches[:3]:
        train_step(opt, model, F.cross_entropy, x, y)
        sched.step()
    ckpt = _checkpoint(model, opt, sched)
    assert all("w" not in s for s in ckpt["opt"]["state"].values())  # no stale weight copies between steps
    for x, y in batches[3:]:
        train_step(opt, model, F.cross_entropy, x, y)
        sched.step()

    model2, opt2, sched2 = _fresh(method)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    for x, y in batches[3:]:
        train_step(opt2, model2, F.cross_entropy, x, y)
        sched2.step()
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    base, base2 = (getattr(o, "base_optimizer", o) for o in (opt, opt2))
    assert opt2.param_groups is base2.param_groups
    for a, b in zip(base.state.values(), base2.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["sam", "asam", "pugd"])
def test_resume_between_first_and_second_step(method):
    """A checkpoint taken at w + e holds the saved w: the resumed second step restores it exactly."""
    (x, y), (x2, y2) = tiny_batches(2)
    model, opt, sched = _fresh(method)
    model.load_state_dict(tiny_model().state_dict())
    train_step(opt, model, F.cross_entropy, x, y)
    opt.zero_grad()
    F.cross_entropy(model(x2), y2).backward()
    opt.first_step()
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    ckpt = _checkpoint(model, opt, sched)
    assert len(ckpt["opt"]["state"]) == len(list(model.parameters()))  # the saved w of every parameter
    with bn_update_disabled(model):
        F.cross_entropy(model(x2), y2).backward()
    opt.second_step()

    model2, opt2, _ = _fresh(method)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    for p, g in zip(model2.parameters(), grads):
        p.grad = g
    with bn_update_disabled(model2):
        F.cross_entropy(model2(x2), y2).backward()
    opt2.second_step()
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- factory


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sgd", torch.optim.AdamW),
        ("sam", SAM),
        ("asam", ASAM),
        ("pugd", PUGD),
        ("ugd", UGD),
    ],
)
def test_create_optimizer_names(name, cls):
    """The name "sgd" gives the plain base optimizer, here AdamW; the others wrap it."""
    opt = create_optimizer(name, tiny_model().parameters(), base="adamw", lr=1e-3)
    assert type(opt) is cls
    inner = opt if name == "sgd" else opt.base_optimizer
    assert type(inner) is torch.optim.AdamW
    assert is_two_pass(opt) == (name in ("sam", "asam", "pugd"))


def test_create_optimizer_defaults_and_custom_base():
    opt = create_optimizer("asam", tiny_model().parameters(), base=torch.optim.RMSprop, lr=1e-3)
    assert isinstance(opt.base_optimizer, torch.optim.RMSprop)
    assert (opt.param_groups[0]["rho"], opt.param_groups[0]["eta"]) == (0.5, 0.01)
    assert create_optimizer("pugd", tiny_model().parameters(), lr=0.1).param_groups[0]["rho"] == 1.0


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("adam", {}, "unknown optimizer 'adam'"),
        ("sam", {"base": "lion"}, "unknown base optimizer 'lion'"),
        ("sam", {"base": dict}, "base must be"),
        ("ugd", {"rho": 0.1}, "takes no rho"),
        ("sam", {"eta": 0.1}, "takes no eta"),
        ("sgd", {"rho": 0.1}, "takes no rho"),
        ("sam", {"rho": -0.1}, "rho must be a number >= 0"),
        ("asam", {"eta": float("nan")}, "eta must be a number >= 0"),
        ("pugd", {"momentun": 0.9}, "cannot build optimizer 'pugd'"),
        ("sam", {"lr": -1.0}, "cannot build optimizer 'sam'"),
        ("sgd", {"params": []}, "cannot build optimizer 'sgd'"),
    ],
)
def test_create_optimizer_bad_input_is_one_line_error(name, kwargs, match):
    params = kwargs.pop("params", tiny_model().parameters())
    with pytest.raises(UnitgradError, match=match) as info:
        create_optimizer(name, params, **{"lr": 0.1, **kwargs})
    assert "\n" not in str(info.value)


def test_train_step_without_closure_and_foreign_state_dict_are_errors():
    opt = SAM(tiny_model().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(UnitgradError, match="needs a closure"):
        opt.step()
    with pytest.raises(UnitgradError, match="no 'base' entry"):
        opt.load_state_dict(torch.optim.SGD(tiny_model().parameters(), lr=0.1).state_dict())


# ---------------------------------------------------------------- BatchNorm


def test_bn_update_disabled_leaves_buffers_untouched_and_uses_batch_stats():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.BatchNorm1d(64, momentum=None),
    )
    model.train()
    model(torch.randn(8, 3, 6, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = copy.deepcopy(model)
    x = torch.randn(8, 3, 6, 6) * 3 + 1
    with bn_update_disabled(model):
        out = model(x)
        model(x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    torch.testing.assert_close(out, reference(x), rtol=0, atol=0)  # train mode: batch statistics
    assert reference[1].num_batches_tracked.item() == 2 and model[1].num_batches_tracked.item() == 1
    with pytest.raises(RuntimeError), bn_update_disabled(model):
        raise RuntimeError("boom")
    assert all(m.track_running_stats for m in (model[1], model[3]))
    model(x)
    assert model[1].num_batches_tracked.item() == 2  # updates resume after the context


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("closure_form", [False, True])
def test_fp16_scaler_without_overflow_matches_unscaled_step(method, closure_form):
    x, y = tiny_batches(1)[0]
    model_a, model_b = tiny_model(), tiny_model()
    opt_a = create_optimizer(method, model_a.parameters(), lr=0.1, momentum=0.9)
    opt_b = create_optimizer(method, model_b.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    api_step(opt_a, model_a, x, y, closure_form=closure_form, scaler=scaler)
    scaler.update()
    train_step(opt_b, model_b, F.cross_entropy, x, y)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)
    assert scaler.get_scale() == 2.0**12


@pytest.mark.parametrize(
    ("method", "where"),
    [(m, w) for m in METHODS for w in ("first", "second") if (m, w) != ("ugd", "second")],
)
def test_fp16_scaler_skips_whole_step_on_overflow_in_either_pass(method, where):
    x, y = tiny_batches(1)[0]
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    opt = create_optimizer(method, model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    api_step(opt, model, x, y, scaler=scaler, inject_inf=where)
    scaler.update()
    for k, v in model.state_dict().items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, before[k]), k
    assert len(opt.base_optimizer.state) == 0  # no momentum buffer: the base step never ran
    assert scaler.get_scale() == 2.0**11


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_step_is_finite(method):
    model = tiny_model()
    opt = create_optimizer(method, model.parameters(), lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    for x, y in tiny_batches(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            train_step(opt, model, F.cross_entropy, x, y)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("method", METHODS)
def test_bf16_weights_step_is_finite(method):
    model = tiny_model(dtype=torch.bfloat16)
    opt = create_optimizer(method, model.parameters(), lr=0.1)
    x, y = tiny_batches(1)[0]
    train_step(opt, model, F.cross_entropy, x.bfloat16(), y)
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("method", ["sam", "asam", "pugd"])
def test_parameter_without_gradient_is_neither_perturbed_nor_restored(method):
    """A weight that had a gradient last step but has none now keeps its value (no stale restore)."""
    used = torch.tensor([1.0, -2.0], requires_grad=True)
    sometimes = torch.tensor([0.5, 0.25], requires_grad=True)
    opt = create_optimizer(method, [used, sometimes], lr=0.1)
    ((used * sometimes) ** 2).sum().backward()
    opt.step(lambda: ((used * sometimes) ** 2).sum().backward())
    assert not torch.equal(sometimes, torch.tensor([0.5, 0.25]))
    after_first = sometimes.detach().clone()
    opt.zero_grad()
    (used**2).sum().backward()
    opt.first_step()
    assert torch.equal(sometimes, after_first)
    (used**2).sum().backward()
    opt.second_step()
    assert torch.equal(sometimes, after_first)


# ---------------------------------------------------------------- base implementation (fused)


def _base_impl(opt):
    defaults = getattr(opt, "base_optimizer", opt).defaults
    return defaults.get("fused"), defaults.get("foreach")


def test_create_optimizer_fuses_the_wrapped_base_unless_the_caller_chose():
    params = lambda: tiny_model().parameters()
    for name in ("sam", "asam", "pugd", "ugd"):
        assert _base_impl(create_optimizer(name, params(), lr=0.1)) == (True, None)
        assert _base_impl(create_optimizer(name, params(), base="adamw", lr=1e-3)) == (True, None)
        assert _base_impl(create_optimizer(name, params(), lr=0.1, foreach=False)) == (None, False)
        assert _base_impl(create_optimizer(name, params(), lr=0.1, fused=False)) == (False, None)
    assert _base_impl(create_optimizer("sgd", params(), lr=0.1)) == (None, None)  # torch's default
    assert _base_impl(SAM(params(), torch.optim.SGD, lr=0.1)) == (None, None)  # direct use: the caller's choice
    rms = create_optimizer("pugd", params(), base=torch.optim.RMSprop, lr=1e-3)
    assert _base_impl(rms) == (None, None)  # no fused RMSprop: torch's default
    groups = ({"params": p} for p in params())  # a generator of groups is read once, as before
    assert len(create_optimizer("sam", groups, lr=0.1).param_groups) == len(list(params()))


@pytest.mark.parametrize("method", METHODS)
def test_fused_base_makes_the_same_update_as_the_loop_base(method):
    params_fused, params_loop = make_params(), make_params()
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-2}
    fused = create_optimizer(method, params_fused, **kwargs)
    loop = create_optimizer(method, params_loop, foreach=False, **kwargs)
    assert _base_impl(fused)[0] is True
    for params, opt in ((params_fused, fused), (params_loop, loop)):
        for _ in range(3):
            opt.zero_grad()
            param_loss(params).backward()
            if is_two_pass(opt):
                opt.step(lambda params=params: param_loss(params).backward())
            else:
                opt.step()
    for a, b in zip(params_fused, params_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_fp16_overflow_on_the_first_step_leaves_no_uninitialised_fused_momentum():
    """torch's fused SGD under GradScaler stores empty momentum when its first step is skipped; ours skips it."""
    x, y = tiny_batches(1)[0]
    model, reference = tiny_model(), tiny_model()
    opt = create_optimizer("pugd", model.parameters(), lr=0.1, momentum=0.9)
    ref = create_optimizer("pugd", reference.parameters(), lr=0.1, momentum=0.9, fused=False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    ref_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for o, m, s in ((opt, model, scaler), (ref, reference, ref_scaler)):
        api_step(o, m, x, y, scaler=s, inject_inf="first")
        s.update()
        api_step(o, m, x, y, scaler=s)
        s.update()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["sam", "asam", "pugd"])
def test_work_buffers_are_reused_and_never_checkpointed(method):
    model = tiny_model()
    opt = create_optimizer(method, model.parameters(), lr=0.1, momentum=0.9)
    x, y = tiny_batches(1)[0]
    train_step(opt, model, F.cross_entropy, x, y)
    buffers = lambda: {(id(p), k): v.data_ptr() for p, s in opt.state.items() for k, v in s.items()}
    first = buffers()
    per_param = {"sam": {"w"}, "asam": {"w", "scratch"}, "pugd": {"w", "scratch"}}[method]
    assert set(first) == {(id(p), k) for p in model.parameters() for k in per_param}
    train_step(opt, model, F.cross_entropy, x, y)
    assert buffers() == first
    assert opt.state_dict()["state"] == {}
    train_step(opt, model, F.cross_entropy, x, y, m=8)  # m-sharpness keeps its sums in the gradients
    assert buffers() == first


# ---------------------------------------------------------------- train_step and m-sharpness


@pytest.mark.parametrize("method", ALL)
def test_train_step_with_m_none_or_batch_is_readmes_loop_bitwise(method):
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    variants = [None, 32] if is_two_pass(create_optimizer(method, tiny_model().parameters(), lr=0.1)) else [None]
    models = [tiny_model() for _ in range(len(variants) + 1)]
    opts = [create_optimizer(method, m.parameters(), **kwargs) for m in models]
    for x, y in tiny_batches(3):
        loss, logits, grad_norm = api_step(opts[0], models[0], x, y)
        for m, model, opt in zip(variants, models[1:], opts[1:]):
            got = train_step(opt, model, F.cross_entropy, x, y, m=m)
            assert torch.equal(got[0], loss) and torch.equal(got[1], logits)
            torch.testing.assert_close(got[2], grad_norm, rtol=1e-6, atol=0)
    for model in models[1:]:  # weights and BatchNorm running statistics
        for a, b in zip(model.state_dict().values(), models[0].state_dict().values()):
            assert torch.equal(a, b)


def _chunk_by_hand(method, model, x, y, chunks, kwargs):
    """Each chunk perturbs with its own gradient; the second-pass gradients are averaged; then SGD by hand."""
    params = list(model.parameters())
    w = [p.detach().clone() for p in params]
    norm = lambda ts: torch.sqrt(sum((t * t).sum() for t in ts))
    second, first_norms = [], []
    for xc, yc in zip(x.chunk(chunks), y.chunk(chunks)):
        g = torch.autograd.grad(F.cross_entropy(model(xc), yc), params)
        first_norms.append(norm(g))
        d = [wi.abs() * gi for wi, gi in zip(w, g)] if method == "pugd" else list(g)
        e = [kwargs["rho"] * di / (norm(d) + EPS) for di in d]
        with torch.no_grad():
            for p, ei in zip(params, e):
                p.add_(ei)
        g_star = torch.autograd.grad(F.cross_entropy(model(xc), yc), params)
        with torch.no_grad():
            for p, wi in zip(params, w):
                p.copy_(wi)
        second.append([a + b for a, b in zip(g, g_star)] if method == "pugd" else list(g_star))
    mean = [sum(parts) / chunks for parts in zip(*second)]
    if method == "pugd":
        mean = [s / (norm(mean) + EPS) for s in mean]
    return [wi - kwargs["lr"] * s for wi, s in zip(w, mean)], sum(first_norms) / chunks


@pytest.mark.parametrize("method", ["sam", "pugd"])
def test_chunked_step_perturbs_each_chunk_with_its_own_gradient(method):
    """m = 8 on a batch of 32: four perturbations, averaged second-pass gradients (BN-free model, float64)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    reference = copy.deepcopy(model)
    x, y = tiny_batches(1)[0]
    x = x.double()
    kwargs = {"lr": 0.1, "rho": 0.3}
    opt = create_optimizer(method, model.parameters(), **kwargs)
    loss, logits, grad_norm = train_step(opt, model, F.cross_entropy, x, y, m=8)
    want, want_norm = _chunk_by_hand(method, reference, x, y, 4, kwargs)
    for got, expected in zip(model.parameters(), want):
        torch.testing.assert_close(got.detach(), expected, rtol=0, atol=1e-14)
    chunk_losses = [F.cross_entropy(reference(xc), yc) for xc, yc in zip(x.chunk(4), y.chunk(4))]
    torch.testing.assert_close(loss, torch.stack(chunk_losses).mean().float(), rtol=0, atol=0)
    torch.testing.assert_close(logits, reference(x).detach(), rtol=0, atol=1e-14)
    torch.testing.assert_close(grad_norm, want_norm, rtol=0, atol=1e-14)
    assert opt.state_dict()["state"] == {}  # accumulated gradients are stale after the step: not checkpointed


@pytest.mark.parametrize(
    ("method", "m"),
    [("sam", 0), ("sam", -8), ("asam", 5), ("pugd", 64), ("sam", True), ("pugd", 2.5), ("sam", "8"), ("sgd", 8)],
)
def test_train_step_bad_m_is_one_line_error_naming_the_key(method, m):
    model = tiny_model()
    opt = create_optimizer(method, model.parameters(), lr=0.1)
    before = copy.deepcopy(model.state_dict())
    x, y = tiny_batches(1)[0]
    with pytest.raises(UnitgradError, match=rf"optim\.{method}\.m") as info:
        train_step(opt, model, F.cross_entropy, x, y, m=m)
    assert "\n" not in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing ran


@pytest.mark.parametrize(
    ("m", "bn_first_pass_only", "updates"), [(None, True, 1), (None, False, 2), (8, True, 4), (8, False, 8)]
)
def test_train_step_batchnorm_updates_per_pass_and_chunk(m, bn_first_pass_only, updates):
    """Running statistics: once per first pass (of each chunk), or in both passes (the official PUGD code)."""
    model = tiny_model()
    opt = create_optimizer("pugd", model.parameters(), lr=0.1)
    x, y = tiny_batches(1)[0]
    train_step(opt, model, F.cross_entropy, x, y, m=m, bn_first_pass_only=bn_first_pass_only)
    assert model[1].num_batches_tracked.item() == updates


def test_train_step_enters_autocast_around_every_forward():
    model = tiny_model()
    opt = create_optimizer("sam", model.parameters(), lr=0.1)
    entered = []

    def autocast():
        entered.append(1)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    x, y = tiny_batches(1)[0]
    loss, logits, _ = train_step(opt, model, F.cross_entropy, x, y, m=16, autocast=autocast)
    assert len(entered) == 4 and logits.dtype == torch.bfloat16 and torch.isfinite(loss)


class _TwoLosses(nn.Module):
    """Image 0 gives the loss a·a, image 1 the loss a·b: with m = 1, b has a gradient in the second chunk only."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.5, 3.0], dtype=torch.float64))

    def forward(self, x):
        return ((self.a * self.a).sum() if x.item() == 0 else (self.a * self.b).sum()).reshape(1)


def test_parameter_with_a_gradient_in_some_chunks_gets_its_share_of_the_mean():
    """rho = 0: g* = g. Chunk 1 touches only a, chunk 2 both: grad a = (2a + b)/2, grad b = a/2, b kept once."""
    model = _TwoLosses()
    a, b = model.a, model.b
    opt = create_optimizer("sam", model.parameters(), rho=0.0, lr=0.1)
    x, y = torch.tensor([[0.0], [1.0]]), torch.zeros(2)
    for _ in range(2):  # the second step must not reuse anything of the first
        want_a = a.detach() - 0.1 * (2 * a.detach() + b.detach()) / 2
        want_b = b.detach() - 0.1 * a.detach() / 2
        train_step(opt, model, lambda out, _: out.sum(), x, y, m=1)
        torch.testing.assert_close(a.detach(), want_a, rtol=0, atol=1e-15)
        torch.testing.assert_close(b.detach(), want_b, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("chunk", "where"), [(0, "first"), (1, "first"), (0, "second"), (1, "second")])
def test_chunked_fp16_step_is_skipped_when_any_chunk_overflows(chunk, where):
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    opt = create_optimizer("pugd", model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    passes = iter([(0, "first"), (0, "second"), (1, "first"), (1, "second")])

    def loss_fn(logits, y):  # an infinite loss in one pass of one chunk: that pass overflows
        loss = F.cross_entropy(logits, y)
        return loss * math.inf if next(passes) == (chunk, where) else loss

    x, y = tiny_batches(1)[0]
    train_step(opt, model, loss_fn, x, y, m=16, scaler=scaler)
    scaler.update()
    for k, v in model.state_dict().items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, before[k]), k
    assert len(opt.base_optimizer.state) == 0 and scaler.get_scale() == 2.0**11


# ---------------------------------------------------------------- ASAM's rules by hand: a 2-element weight, a bias


def _linear_with_grads(weight, bias, grad_w, grad_b):
    layer = nn.Linear(2, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight], dtype=torch.float64))
        layer.bias.copy_(torch.tensor([bias], dtype=torch.float64))
    layer.weight.grad = torch.tensor([grad_w], dtype=torch.float64)
    layer.bias.grad = torch.tensor([grad_b], dtype=torch.float64)
    return layer


def test_asam_paper_rule_scales_every_parameter_by_hand():
    # w = (0.5, -1.5), b = 1.5, eta = 0.5: T = (1, 2 | 2); g = (2, 1 | 0.5): Tg = (2, 2 | 1), ‖Tg‖ = 3
    layer = _linear_with_grads([0.5, -1.5], 1.5, [2.0, 1.0], 0.5)
    opt = create_optimizer("asam", layer.parameters(), rho=0.3, eta=0.5, lr=0.1)
    opt.first_step()
    # e = ρ·T·(Tg)/‖Tg‖ = 0.3·(1·2, 2·2 | 2·1)/3 = (0.2, 0.4 | 0.2)
    want_w, want_b = [[0.5 + 0.6 / (3 + EPS), -1.5 + 1.2 / (3 + EPS)]], [1.5 + 0.6 / (3 + EPS)]
    torch.testing.assert_close(layer.weight.detach(), torch.tensor(want_w, dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(layer.bias.detach(), torch.tensor(want_b, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("named", ["named_parameters", "named_groups"])
def test_asam_official_rule_leaves_bias_unscaled_by_hand(named):
    # same tensors; the bias gets T = 1: d = (2, 2 | 0.5), ‖d‖ = sqrt(8.25)
    layer = _linear_with_grads([0.5, -1.5], 1.5, [2.0, 1.0], 0.5)
    params = (
        layer.named_parameters()
        if named == "named_parameters"
        else [{"params": [("weight", layer.weight)]}, {"params": [("bias", layer.bias)], "weight_decay": 0.0}]
    )
    opt = create_optimizer("asam", params, rho=0.3, eta=0.5, rule="official", lr=0.1)
    opt.first_step()
    norm = math.sqrt(8.25) + EPS
    want_w = [0.5 + 0.3 * 1 * 2 / norm, -1.5 + 0.3 * 2 * 2 / norm]
    want_b = [1.5 + 0.3 * 0.5 / norm]
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([want_w], dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(layer.bias.detach(), torch.tensor(want_b, dtype=torch.float64), rtol=0, atol=1e-15)


def test_asam_official_rule_scales_batchnorm_weight_but_not_its_shift():
    bn = nn.BatchNorm1d(1).double()
    with torch.no_grad():
        bn.weight.fill_(3.0)
    bn.weight.grad = torch.tensor([1.0], dtype=torch.float64)
    bn.bias.grad = torch.tensor([4.0], dtype=torch.float64)
    opt = create_optimizer("asam", bn.named_parameters(), rho=1.0, eta=0.0, rule="official", lr=0.1)
    opt.first_step()
    # d = (3·1 | 4) → ‖d‖ = 5; e = (3·3/5 | 4/5)
    want_w, want_b = [3.0 + 9 / (5 + EPS)], [4 / (5 + EPS)]
    torch.testing.assert_close(bn.weight.detach(), torch.tensor(want_w, dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(bn.bias.detach(), torch.tensor(want_b, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "params", "kwargs", "match"),
    [
        ("asam", "plain", {"rule": "official"}, "needs their names"),
        ("asam", "named", {"rule": "weights"}, "rule must be 'paper' or 'official'"),
        ("sam", "named", {"rule": "official"}, "takes no rule"),
    ],
)
def test_asam_rule_bad_input_is_one_line_error(name, params, kwargs, match):
    model = tiny_model()
    chosen = model.parameters() if params == "plain" else model.named_parameters()
    with pytest.raises(UnitgradError, match=match) as info:
        create_optimizer(name, chosen, lr=0.1, **kwargs)
    assert "\n" not in str(info.value)


def test_asam_official_rule_is_kept_across_a_checkpoint():
    model = tiny_model()
    opt = create_optimizer("asam", model.named_parameters(), rule="official", lr=0.1)
    state = opt.state_dict()
    fresh = create_optimizer("asam", tiny_model().named_parameters(), lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["rule"] == "official"
    for o in (opt, fresh):  # the loaded rule is the one applied: the bias moves by rho*g/||d||, unscaled
        for p in o.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
    with torch.no_grad():
        bias_before = [model[-1].bias.clone(), fresh.param_groups[0]["params"][-1].clone()]
    opt.first_step()
    fresh.first_step()
    moved = [model[-1].bias - bias_before[0], fresh.param_groups[0]["params"][-1] - bias_before[1]]
    torch.testing.assert_close(moved[0], moved[1], rtol=0, atol=0)
