"""Beyond the paper (its future work): the mechanics of consistency, weight sharing, annihilation, uneven depths."""

import numpy as np
import pytest
import torch

from vmonf import VMoNF
from vmonf.checkpoint import checkpoint_bytes, load_checkpoint
from vmonf.data import augment_images, augmented_features, load_dataset, make_toy
from vmonf.flows import SharedLinear
from vmonf.model import ModelConfig, VMoNFModel
from vmonf.train import TrainConfig, Trainer


def randomize(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


# -- consistency ----------------------------------------------------------------------------------
def test_consistency_is_zero_when_q_ignores_the_perturbation():
    model = randomize(VMoNFModel(ModelConfig(3, 2))).requires_grad_(False)
    x, x2 = torch.randn(64, 2), torch.randn(64, 2)
    assert float(model.consistency_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(model.consistency_loss(x, x2)) > 1e-4  # q does depend on x
    model.posterior[0].weight.zero_()  # now q(c|x) is the same everywhere
    assert float(model.consistency_loss(x, x2)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("flows", [True, False])
@pytest.mark.parametrize("labelled", [False, True])
def test_loss_with_consistency_is_the_sum_of_its_parts(flows, labelled):
    """The training step's one-pass loss (clean and perturbed batch together) equals loss + weight x term."""
    model = randomize(VMoNFModel(ModelConfig(3, 2))).double()
    x, x2 = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    y = torch.where(torch.arange(64) % 4 == 0, torch.arange(64) % 3, -1) if labelled else None
    together = model.loss(x, y, x_perturbed=x2, consistency=2.5, consistency_flows=flows)
    apart = model.loss(x, y) + 2.5 * model.consistency_loss(x, x2, flows=flows)
    assert together.item() == pytest.approx(apart.item(), rel=1e-10)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.autograd.grad(v, params, retain_graph=True) for v in (together, apart)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_consistency_on_the_flows_adds_their_kl_and_reaches_them():
    model = randomize(VMoNFModel(ModelConfig(3, 2)))
    x, x2 = torch.randn(64, 2), torch.randn(64, 2)
    only_q = model.consistency_loss(x, x2)
    both = model.consistency_loss(x, x2, flows=True)
    with torch.no_grad():
        log_q, log_r = model.posterior_log_probs(x), torch.log_softmax(model.log_joint(x2), dim=1)
        by_hand = float((log_q.exp() * (log_q - log_r)).sum(1).mean())  # KL(q(c|x) || p(c|x'))
    assert by_hand > 1e-3
    assert both.item() == pytest.approx(only_q.item() + by_hand, rel=1e-4)
    flow_params = list(model.flows.parameters())
    assert all(g is None for g in torch.autograd.grad(only_q, flow_params, allow_unused=True))
    grads = torch.autograd.grad(both, flow_params, allow_unused=True)
    assert any(g is not None and float(g.abs().max()) > 0 for g in grads)


def test_consistency_trains_q_toward_invariance():
    x, _ = make_toy("gaussian mixture", 400, components=3, seed=0)
    xt = torch.as_tensor(x)
    model = randomize(VMoNFModel(ModelConfig(3, 2, depth=1, hidden=8)))
    model.set_standardization(xt.mean(0), xt.std(0))
    trainer = Trainer(model, xt, config=TrainConfig(consistency=5.0, consistency_noise=0.3, q_hold_steps=0))
    noisy = torch.stack([trainer.perturb(torch.arange(len(xt))) for _ in range(4)])
    assert not torch.allclose(noisy[0], noisy[1])

    def mean_kl():
        with torch.no_grad():
            return float(np.mean([float(model.consistency_loss(xt, n)) for n in noisy]))

    before = mean_kl()
    trainer.run(150)
    assert mean_kl() < before


def test_image_perturbations_are_small_shifts_and_rotations():
    data = load_dataset("digits", pca=8)
    moved = augment_images(data.pixels[:50], data.image_shape, seed=1, max_shift=1, max_angle=0)
    assert moved.shape == (50, 64) and 0 <= moved.min() and moved.max() <= 1
    assert not np.allclose(moved, data.pixels[:50])
    same = augment_images(data.pixels[:50], data.image_shape, max_shift=0, max_angle=0)
    np.testing.assert_allclose(same, data.pixels[:50], atol=1e-5)
    feats = augmented_features(data, copies=2)
    assert feats.shape == (2, *data.x.shape)
    with pytest.raises(ValueError, match="not an image data set"):
        augmented_features(load_dataset("moons"))
    with pytest.raises(ValueError, match="X_perturbed"):
        VMoNF(2, max_steps=1).fit(data.x, X_perturbed=feats[:, :10])


# -- weight sharing ---------------------------------------------------------------------------------
def test_shared_weights_are_one_tensor_with_gradients_from_every_component():
    k = 4
    model = randomize(VMoNFModel(ModelConfig(k, 2, depth=2, hidden=8, share_weights=True)))
    shared = model.flows.blocks[0].net[2]
    assert isinstance(shared, SharedLinear) and shared.weight.shape == (8, 8)  # no K axis: one tensor
    x = torch.randn(32, 2)
    for c in range(k):
        model.zero_grad()
        model.component_log_prob(x)[:, c].sum().backward()
        assert shared.weight.grad is not None and shared.weight.grad.abs().sum() > 0, f"component {c}"
        emb = model.flows.blocks[0].net[0].embedding.grad
        assert emb[c].abs().sum() > 0 and all(emb[o].abs().sum() == 0 for o in range(k) if o != c)


def test_sharing_cuts_parameters():
    plain = VMoNFModel(ModelConfig(10, 2, depth=4, hidden=64))
    shared = VMoNFModel(ModelConfig(10, 2, depth=4, hidden=64, share_weights=True))
    assert shared.parameter_count() < plain.parameter_count() / 5
    per, common = shared.component_parameter_counts()
    assert len(per) == 10 and common > 10 * per[0]
    with pytest.raises(ValueError, match="RealNVP"):
        ModelConfig(2, 2, flow="maf", share_weights=True).validate()


# -- annihilation -----------------------------------------------------------------------------------
def test_removed_component_is_never_sampled_nor_responsible():
    model = randomize(VMoNFModel(ModelConfig(4, 2, learn_prior=True)))
    assert model.remove_components([1, 3]) == [1, 3]
    _, comps = model.sample(3000)
    assert set(comps.tolist()) <= {0, 2}
    x = torch.randn(200, 2)
    assert float(model.responsibilities(x)[:, [1, 3]].abs().max()) == 0.0
    assert float(model.posterior_log_probs(x).exp()[:, [1, 3]].max()) == 0.0
    assert torch.isfinite(model.elbo(x)).all() and (model.elbo(x) <= model.log_prob(x) + 1e-5).all()
    exact = torch.log_softmax(model.log_joint(x), -1)
    torch.testing.assert_close(model.elbo_terms(x, log_q=exact).elbo, model.log_prob(x))
    with pytest.raises(ValueError, match="removed"):
        model.sample(5, component=1)
    assert model.remove_components([0, 2]) == [0]  # the last one always stays
    loss = model.loss(x, torch.full((200,), -1))
    loss.backward()
    assert torch.isfinite(loss)


def test_overestimated_k_is_pruned_during_training():
    x, _ = make_toy("gaussian mixture", 800, components=2, std=0.3, seed=0)
    est = VMoNF(6, depth=1, hidden=16, max_steps=800, init="kmeans", learn_prior=True, prune_below=0.08,
                seed=0).fit(x)
    active = est.model_.active.sum().item()
    assert 2 <= active < 6, f"{active} components left of 6"
    assert est.trainer_.pruned and np.isclose(est.weights_.sum(), 1.0)
    assert (est.weights_[~est.model_.active.numpy()] == 0).all()


# -- uneven depths and the checkpoint ---------------------------------------------------------------
def test_uneven_depths_leave_shallow_components_alone():
    model = randomize(VMoNFModel(ModelConfig(3, 2, depths=(1, 3, 2), hidden=8)))
    assert len(model.flows.blocks) == 3
    per, common = model.component_parameter_counts()
    assert per[0] < per[2] < per[1] and common == 0
    x = torch.randn(20, 2)
    before = model.component_log_prob(x)
    with torch.no_grad():
        for p in model.flows.blocks[2].parameters():  # only component 1 (depth 3) uses block 2
            p.add_(1.0)
    after = model.component_log_prob(x)
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]])
    assert not torch.allclose(after[:, 1], before[:, 1])
    with pytest.raises(ValueError, match="one depth"):
        ModelConfig(3, 2, depths=(1, 2)).validate()


def test_checkpoint_keeps_every_option():
    model = randomize(VMoNFModel(ModelConfig(3, 2, depths=(1, 2, 3), share_weights=True)))
    model.remove_components([2])
    again, _ = load_checkpoint(checkpoint_bytes(model))
    assert again.config == model.config and again.active.tolist() == [True, True, False]
    x = torch.randn(10, 2)
    torch.testing.assert_close(again.log_prob(x), model.log_prob(x))


def test_weight_entropy_concentrates_the_mixture_weights():
    x, _ = make_toy("gaussian mixture", 400, components=2, seed=0)
    xt = torch.as_tensor(x)

    def entropy_after(pressure):
        torch.manual_seed(0)
        model = VMoNFModel(ModelConfig(4, 2, depth=1, hidden=8, learn_prior=True))
        model.set_standardization(xt.mean(0), xt.std(0))
        Trainer(model, xt, config=TrainConfig(weight_entropy=pressure, q_hold_steps=0)).run(200)
        pi = model.log_pi.exp()
        return float(-(pi * pi.log()).sum())

    assert entropy_after(5.0) < entropy_after(0.0) - 0.05


def test_a_component_with_labelled_points_is_never_removed():
    x, y = make_toy("gaussian mixture", 300, components=3, seed=0)
    labels = np.full_like(y, -1)
    labels[np.flatnonzero(y == 1)[:5]] = 1
    xt = torch.as_tensor(x)
    model = VMoNFModel(ModelConfig(3, 2, depth=1, hidden=8))
    model.set_standardization(xt.mean(0), xt.std(0))
    trainer = Trainer(model, xt, torch.as_tensor(labels))
    assert trainer.remove([1, 2]) == [2]
    assert model.active.tolist() == [True, True, False]
    loss = trainer.step()
    assert np.isfinite(loss)
