"""Invariants of the mixture: ELBO <= log p(x), gradients, normalisation, Gaussian oracle, sampling.

They run on ``pytest --device cuda`` (or mps) as well as on the CPU (tests/conftest.py).
"""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from vmonf.model import ModelConfig, VMoNFModel
from vmonf.optim import LeanFusedAdam, make_adam

pytestmark = pytest.mark.usefixtures("on_device")


def make_model(k=3, d=2, **kw) -> VMoNFModel:
    model = VMoNFModel(ModelConfig(k, d, depth=2, hidden=16, posterior_hidden=16, **kw)).double()
    with torch.no_grad():
        for p in model.flows.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_elbo_below_log_prob_with_equality_at_exact_posterior():
    model = make_model(learn_prior=True)
    with torch.no_grad():
        model.prior_logits.copy_(torch.tensor([0.5, -0.3, 0.1]))
    x = torch.randn(64, 2, dtype=torch.float64)
    with torch.no_grad():
        elbo = model.elbo(x)
        log_p = model.log_prob(x)
        assert (elbo <= log_p + 1e-10).all()
        assert (log_p - elbo).max() > 1e-3  # the untrained q is not exact
        exact = model.responsibilities(x).log()
        terms = model.elbo_terms(x, log_q=exact)
        torch.testing.assert_close(terms.elbo, log_p)
        torch.testing.assert_close(terms.loglik + terms.logprior + terms.entropy, terms.elbo)


def test_training_loss_is_the_negative_mean_elbo_with_and_without_removed_components():
    model = make_model(learn_prior=True)
    with torch.no_grad():
        model.prior_logits.copy_(torch.tensor([0.5, -0.3, 0.1]))
    x = torch.randn(64, 2, dtype=torch.float64)
    torch.testing.assert_close(model.loss(x), -model.elbo(x).mean())  # the all-active fast path
    torch.testing.assert_close(model.loss(x, temperature=2.0), -model.elbo(x, temperature=2.0).mean())
    model.remove_components([1])  # q = 0 and log q = -inf for component 1: the guarded path
    loss = model.loss(x)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, -model.elbo(x).mean())


def test_every_trainable_parameter_gets_a_gradient():
    model = make_model(learn_prior=True)
    x = torch.randn(32, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2] + [-1] * 29)
    model.loss(x, y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fixed_prior_is_uniform_and_not_trained():
    assert make_model().prior_logits.requires_grad  # learned by default
    model = make_model(learn_prior=False)  # the paper's fixed uniform pi
    assert not model.prior_logits.requires_grad
    torch.testing.assert_close(model.log_pi.exp(), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_density_integrates_to_one_on_a_grid():
    model = make_model()
    model.set_standardization(torch.tensor([0.5, -0.2]), torch.tensor([0.7, 1.3]))
    g = torch.linspace(-9, 9, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    with torch.no_grad():
        p = model.log_prob(torch.stack([xx.ravel(), yy.ravel()], 1)).exp()
    integral = float(p.sum() * (g[1] - g[0]) ** 2)
    assert abs(integral - 1.0) < 0.02


def test_identity_flows_match_gaussian_oracle():
    model = VMoNFModel(ModelConfig(1, 3, depth=2, hidden=8)).double()
    shift, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 1.5])
    model.set_standardization(shift, scale)
    x = torch.randn(50, 3, dtype=torch.float64)
    with torch.no_grad():
        ours = model.log_prob(x).cpu().numpy()
    oracle = multivariate_normal(shift.cpu().numpy(), np.diag(scale.cpu().numpy() ** 2)).logpdf(x.cpu().numpy())
    np.testing.assert_allclose(ours, oracle, rtol=1e-10)


def test_labelled_points_pin_q():
    model = make_model()
    x = torch.randn(4, 2, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 1])
    with torch.no_grad():
        pinned = -model.loss(x, y, label_weight=0.0)
        lj = model.log_joint(x)
        torch.testing.assert_close(pinned, lj[torch.arange(4), y].mean())


def test_samples_follow_the_model(device):
    model = make_model()
    gen = torch.Generator(device=device).manual_seed(0)
    x, c = model.sample(4000, generator=gen)
    assert x.shape == (4000, 2) and set(c.unique().tolist()) == {0, 1, 2}
    x1, c1 = model.sample(10, component=1, generator=gen)
    assert (c1 == 1).all()
    # Samples drawn from the model score higher under it than points from a wide Gaussian.
    with torch.no_grad():
        assert model.log_prob(x).mean() > model.log_prob(3 * torch.randn(4000, 2, dtype=torch.float64)).mean()
    with pytest.raises(ValueError, match="component"):
        model.sample(3, component=5)


def test_maf_mixture_log_prob_and_sample():
    model = VMoNFModel(ModelConfig(2, 3, depth=2, hidden=12, flow="maf")).double()
    x, _ = model.sample(20)
    with torch.no_grad():
        assert torch.isfinite(model.log_prob(x)).all()


@pytest.mark.parametrize("kw, match", [
    (dict(n_components=0, dim=2), "n_components"),
    (dict(n_components=2, dim=2, depth=0), "depth"),
    (dict(n_components=2, dim=1), "maf"),
])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        VMoNFModel(ModelConfig(**kw))


def test_log_pi_sums_to_one():
    model = make_model(learn_prior=True)
    assert math.isclose(float(model.log_pi.detach().exp().sum()), 1.0, rel_tol=1e-12)


@pytest.mark.skipif(not isinstance(make_adam([torch.zeros(1, requires_grad=True)], torch.device("cpu")),
                                   LeanFusedAdam),
                    reason="this torch has no fused Adam on the CPU (torch < 2.4), so make_adam uses plain Adam")
def test_lean_adam_matches_torch_fused_adam_step_for_step():
    """LeanFusedAdam caches what torch's fused Adam rebuilds each step; the updates must be identical,
    through a step where one parameter has no gradient and through a state reload (rollback)."""
    import copy

    torch.manual_seed(0)
    x = torch.randn(64, 2)
    models = [VMoNFModel(ModelConfig(3, 2, depth=2, hidden=8)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    params = [[p for p in m.parameters() if p.requires_grad] for m in models]
    lean = LeanFusedAdam(params[0], lr=1e-2, weight_decay=1e-4)
    ref = torch.optim.Adam(params[1], lr=1e-2, weight_decay=1e-4, fused=True)
    saved = None
    for step in range(8):
        for model, opt in zip(models, (lean, ref), strict=True):
            opt.zero_grad(set_to_none=True)
            model.loss(x, fit_q=step != 3).backward()  # step 3: q gets no gradient (None grads)
            opt.step()
        if step == 4:
            saved = [copy.deepcopy(opt.state_dict()) for opt in (lean, ref)]  # as Trainer keeps its rollback state
        if step == 6:  # roll both back to the step-4 optimiser state
            lean.load_state_dict(saved[0])
            ref.load_state_dict(saved[1])
        for a, b in zip(params[0], params[1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert lean._lists is not None  # the cached path ran


def test_adam_on_a_gpu_is_torchs_own_fused_adam():
    """LeanFusedAdam's saving is CPU-side Python bookkeeping; on CUDA torch's fused Adam is used as it is."""
    params = [torch.zeros(3, requires_grad=True, device="cpu")]
    opt = make_adam(params, torch.device("cuda"), lr=1e-3)
    assert type(opt) is torch.optim.Adam and opt.defaults["fused"]


def test_a_device_is_named_as_a_user_reads_it(device):
    from vmonf.devices import describe_device

    name = describe_device(device)
    assert name.startswith(device.type) and (device.type != "cuda" or "(" in name)  # a GPU with its model name


def test_explain_gives_the_library_numbers_and_the_gap_is_the_kl():
    model = make_model(learn_prior=True)
    with torch.no_grad():
        model.prior_logits.copy_(torch.tensor([0.5, -0.3, 0.1]))
    x = torch.randn(16, 2, dtype=torch.float64)
    t = model.explain(x)
    with torch.no_grad():
        torch.testing.assert_close(t.log_p, model.log_prob(x))
        torch.testing.assert_close(t.p, model.responsibilities(x))
        torch.testing.assert_close(t.elbo, model.elbo(x))
        torch.testing.assert_close(t.log_joint, model.log_joint(x))
        kl = (t.q * (t.q.log() - t.p.log())).sum(-1)
    torch.testing.assert_close(t.gap, kl)
    assert (t.gap >= -1e-12).all() and torch.allclose(t.q.sum(-1), torch.ones(16, dtype=torch.float64))


def test_evaluation_uses_the_temperature_training_is_at():
    from vmonf.train import TrainConfig, Trainer

    x = torch.randn(300, 2)
    model = VMoNFModel(ModelConfig(3, 2, depth=1, hidden=8))
    model.set_standardization(x.mean(0), x.std(0))
    with torch.no_grad():  # a q that is far from uniform, so that its temperature shows
        for p in model.posterior.parameters():
            p.add_(torch.randn_like(p))
    trainer = Trainer(model, x[:250], config=TrainConfig(temperature_decay=0.01, consistency=0.0, eval_every=10_000),
                      x_val=x[250:])
    trainer.run(60)
    t = trainer.temperature()
    assert 0.5 < t < 0.6
    row = trainer.evaluate()
    with torch.no_grad():
        assert row["val_elbo"] == pytest.approx(float(model.elbo(x[250:], temperature=t).mean()), rel=1e-5)
        assert row["val_elbo"] != pytest.approx(float(model.elbo(x[250:]).mean()), rel=1e-4)
        assert row["val_loglik"] == pytest.approx(float(model.log_prob(x[250:]).mean()), rel=1e-5)  # no T in it


def test_a_semi_supervised_fit_keeps_its_start_when_training_makes_the_held_out_labels_worse():
    """With labelled validation points, the start is a candidate for the best state and states are ranked by
    how well they classify those points: training that makes them worse cannot end the fit."""
    from vmonf.data import make_toy
    from vmonf.starts import start_training
    from vmonf.train import TrainConfig

    x, y = make_toy("two circles", 600, seed=0, noise=0.04)
    labels = np.full_like(y, -1)
    labels[:200] = y[:200]  # many labels, so that the validation split holds some
    cfg = TrainConfig(init="labels", consistency=0.0, eval_every=10_000)
    trainer = start_training(x, labels, ModelConfig(2, 2, depth=2, hidden=16), cfg,
                             device=torch.device("cpu"), val_fraction=0.2).trainer
    assert trainer.y_check is not None and len(trainer.y_check) >= 10
    start_acc, start_ll = trainer.best_val
    assert trainer.best_step == trainer.step_count and start_acc >= 0.9  # the start was scored
    with torch.no_grad():  # a model that calls every point component 0
        trainer.model.flows.affine.initialize(torch.zeros(2, 2), torch.tensor([[1.0, 1.0], [1e-3, 1e-3]]))
    row = trainer.evaluate()
    assert row["val_label_acc"] < start_acc and trainer.best_val == (start_acc, start_ll)
    trainer.restore_best()
    assert trainer._check_row()["val_label_acc"] == start_acc
