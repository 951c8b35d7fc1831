"""Contract tests for every transform: inverse, log-det against the autograd Jacobian, shapes.

They run on ``pytest --device cuda`` (or mps) as well as on the CPU (tests/conftest.py).
"""

import math

import pytest
import torch

from vmonf.flows import AffineCoupling, ComponentFlows, ElementwiseAffine, MADEAffine, _coupling_masks

K, N, D = 3, 5, 4
pytestmark = pytest.mark.usefixtures("on_device")


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Move off the identity start so the tests see a non-trivial transform."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module.double()


TRANSFORMS = {
    "affine": lambda: ElementwiseAffine(K, D),
    "coupling": lambda: AffineCoupling(K, D, 8, _coupling_masks(D, 1)[0]),
    "made": lambda: MADEAffine(K, D, 12, torch.arange(D).flip(0)),
    "realnvp-flow": lambda: ComponentFlows(K, D, 4, 8, "realnvp"),
    "maf-flow": lambda: ComponentFlows(K, D, 3, 12, "maf"),
    "shared-flow": lambda: ComponentFlows(K, D, 4, 8, "realnvp", shared=True),
    "uneven-realnvp": lambda: ComponentFlows(K, D, 1, 8, "realnvp", depths=(1, 4, 2)),
    "uneven-maf": lambda: ComponentFlows(K, D, 1, 12, "maf", depths=(3, 1, 2)),
}


@pytest.fixture(params=list(TRANSFORMS))
def transform(request):
    return randomize(TRANSFORMS[request.param]())


def test_inverse_of_forward_is_identity(transform):
    x = torch.randn(K, N, D, dtype=torch.float64)
    z, ld = transform(x)
    x2, ld_inv = transform.inverse(z)
    assert z.shape == x.shape and ld.shape == (K, N) and ld_inv.shape == (K, N)
    torch.testing.assert_close(x2, x, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-9, rtol=1e-9)


def test_logdet_matches_autograd_jacobian(transform):
    x = torch.randn(K, 1, D, dtype=torch.float64)
    _, ld = transform(x)
    for k in range(K):
        def f(v, k=k):
            full = x.clone()
            full[k, 0] = v
            return transform(full)[0][k, 0]

        jac = torch.autograd.functional.jacobian(f, x[k, 0])
        torch.testing.assert_close(ld[k, 0], torch.linalg.slogdet(jac).logabsdet, atol=1e-9, rtol=1e-9)


def test_components_are_independent():
    flows = randomize(ComponentFlows(K, D, 2, 8))
    x = torch.randn(K, N, D, dtype=torch.float64)
    z, _ = flows(x)
    x_changed = x.clone()
    x_changed[1] += 1.0
    z2, _ = flows(x_changed)
    torch.testing.assert_close(z2[0], z[0])
    torch.testing.assert_close(z2[2], z[2])
    assert not torch.allclose(z2[1], z[1])


def untransformed_dims(flows: ComponentFlows) -> list[int]:
    """Dimensions that the coupling (or MADE) blocks leave exactly as they came, for component 0.

    The elementwise affine is set to the identity first: it scales every dimension, so with it a dimension
    that no block touches would still look transformed.
    """
    d = flows.d
    with torch.no_grad():
        flows.affine.loc.zero_()
        flows.affine.log_scale.zero_()
    x = torch.randn(1, 1, d, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flows(v.view(1, 1, d))[0].view(d), x.view(d))
    eye = torch.eye(d, dtype=torch.float64)
    return [i for i in range(d) if torch.equal(jac[i], eye[i])]


@pytest.mark.parametrize("flow, d, depth", [("realnvp", 2, 2), ("realnvp", 3, 2), ("realnvp", 5, 4),
                                            ("realnvp", 6, 3), ("maf", 4, 2)])
def test_every_dimension_is_transformed(flow, d, depth):
    assert untransformed_dims(randomize(ComponentFlows(1, d, depth, 8, flow))) == []


@pytest.mark.parametrize("d", [2, 5])
def test_one_coupling_leaves_the_masked_dimensions_alone(d):
    """The check above can fail: one RealNVP coupling passes the dimensions of its mask through."""
    flows = randomize(ComponentFlows(1, d, 1, 8))
    untouched = untransformed_dims(flows)
    assert untouched == torch.nonzero(flows.blocks[0].mask).flatten().tolist() and 0 < len(untouched) < d


def test_identity_at_start():
    flows = ComponentFlows(K, D, 4, 8)
    x = torch.randn(N, D)
    z, ld = flows(x)
    torch.testing.assert_close(z, x.expand(K, -1, -1))
    torch.testing.assert_close(ld, torch.zeros(K, N))


def test_bad_flow_type():
    with pytest.raises(ValueError, match="realnvp"):
        ComponentFlows(2, 2, 1, 4, "glow")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("d", [2, 3, 5])
def test_fused_path_matches_the_modules_in_value_and_gradient(d, dtype):
    """The hand-differentiated stack (vmonf/fused.py) against autograd through the modules (in float32 too:
    what training uses, where the two paths differ only by rounding)."""
    flows = randomize(ComponentFlows(K, d, 4, 8)).to(dtype)
    assert flows.fused
    x = torch.randn(K, N, d, dtype=dtype, requires_grad=True)
    weights = torch.randn(K, N, d, dtype=dtype)  # a loss that uses z and the log-det unevenly
    results = []
    for run in (flows.forward, flows.forward_modules):
        z, ld = run(x)
        loss = (weights * z).sum() + (ld * torch.arange(N)).sum()
        grads = torch.autograd.grad(loss, [x, *flows.parameters()])
        results.append((z, ld, grads))
    (z, ld, grads), (z_ref, ld_ref, grads_ref) = results
    tol = {} if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z, z_ref, **tol)
    torch.testing.assert_close(ld, ld_ref, **tol)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("d", "n"), [(2, N), (3, N), (5, N), (2, 1)])
def test_fused_inverse_matches_the_modules_and_undoes_forward(d, n, dtype):
    """Without gradients the way back is fused (vmonf/fused.py): the same points and log-det as the modules,
    the forward pass undone, and the caller's ``z`` left alone (one point: its transpose is ``z`` itself)."""
    flows = randomize(ComponentFlows(K, d, 4, 8)).to(dtype)
    x = torch.randn(K, n, d, dtype=dtype)
    tol = {} if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        z, ld = flows(x)
        kept = z.clone()
        x_back, ld_inv = flows.inverse(z)
        x_ref, ld_ref = flows.inverse_modules(z)
    torch.testing.assert_close(z, kept, rtol=0, atol=0)
    torch.testing.assert_close(x_back, x_ref, **tol)
    torch.testing.assert_close(ld_inv, ld_ref, **tol)
    torch.testing.assert_close(x_back, x, **tol)
    torch.testing.assert_close(ld_inv, -ld, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("points", "k"), [("grid", K), ("grid", 1), ("repeats", K), ("distinct", K),
                                         ("per-component", K)])
def test_density_without_gradients_matches_the_modules(points, k, dtype):
    """Without gradients log p(x|k) takes vmonf.fused.coupling_stack_eval: tanh's affine parts folded into the
    conditioners' weights, and the first coupling's conditioner computed once per distinct value where every
    component reads the same points and they repeat (a density grid). The same values as the modules."""
    torch.manual_seed(0)
    flows = randomize(ComponentFlows(k, 2, 4, 8)).to(dtype)
    axis = torch.linspace(-3, 3, 16, dtype=dtype)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    x = {"grid": grid, "repeats": torch.randn(128, 2, dtype=dtype).index_fill_(1, torch.tensor([0]), 0.5),
         "distinct": torch.randn(128, 2, dtype=dtype), "per-component": torch.randn(k, 128, 2, dtype=dtype)}[points]
    z_ref, ld_ref = flows.forward_modules(x if x.dim() == 3 else x.expand(k, -1, -1))
    expected = (-0.5 * (z_ref**2).sum(-1) - 0.5 * 2 * math.log(2 * math.pi) + ld_ref)
    with torch.no_grad():
        got = flows.log_prob(x)
        z, ld = flows(x)
    tol = {} if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.T, expected.detach(), **tol)
    torch.testing.assert_close(z, z_ref.detach(), **tol)
    torch.testing.assert_close(ld, ld_ref.detach(), **tol)


def test_fused_path_passes_gradcheck():
    flows = randomize(ComponentFlows(2, 3, 2, 4))
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    params = list(flows.parameters())
    assert torch.autograd.gradcheck(lambda x, *_: flows(x), (x, *params))


@pytest.mark.parametrize("d", [2, 3])
def test_fused_log_prob_matches_the_modules_in_value_and_gradient(d):
    """log p(x|k) with the base density added inside the fused node, against autograd through the modules."""
    flows = randomize(ComponentFlows(K, d, 4, 8))
    x = torch.randn(N, d, dtype=torch.float64, requires_grad=True)
    z, ld = flows.forward_modules(x.expand(K, -1, -1))
    expected = (-0.5 * (z**2).sum(-1) - 0.5 * d * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64)) + ld).T
    got = flows.log_prob(x)
    torch.testing.assert_close(got, expected)
    weights = torch.randn(N, K, dtype=torch.float64)  # weigh the entries unevenly
    params = [x, *flows.parameters()]
    for g, g_ref in zip(torch.autograd.grad((weights * got).sum(), params),
                        torch.autograd.grad((weights * expected).sum(), params, retain_graph=True), strict=True):
        torch.testing.assert_close(g, g_ref)
    # Both outputs used at once (z and the log-density): the gradients add up.
    z_t, log_p = flows._forward_fused(x.expand(K, -1, -1), base=True)
    ref = (-0.5 * (z**2).sum(-1) - 0.5 * d * math.log(2 * math.pi) + ld)
    loss = (z_t**3).sum() + (weights.T * log_p).sum()
    loss_ref = (z.transpose(1, 2) ** 3).sum() + (weights.T * ref).sum()
    for g, g_ref in zip(torch.autograd.grad(loss, params), torch.autograd.grad(loss_ref, params), strict=True):
        torch.testing.assert_close(g, g_ref)


def test_fused_log_prob_passes_gradcheck():
    flows = randomize(ComponentFlows(2, 3, 2, 4))
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    params = list(flows.parameters())
    assert torch.autograd.gradcheck(lambda x, *_: flows.log_prob(x), (x, *params))


def test_fused_path_follows_replaced_parameters():
    flows = randomize(ComponentFlows(K, 2, 2, 8))
    x = torch.randn(N, 2, dtype=torch.float64)
    before = flows.log_prob(x)
    other = randomize(ComponentFlows(K, 2, 2, 8))
    flows.load_state_dict(other.state_dict(), assign=True)  # new Parameter objects
    torch.testing.assert_close(flows.log_prob(x), other.log_prob(x))
    assert not torch.allclose(flows.log_prob(x), before)


def test_same_weights_folds_once_gives_the_same_values_and_forgets_the_folds_after():
    import vmonf.fused

    flows = randomize(ComponentFlows(K, 2, 3, 8))
    x, z = torch.randn(N, 2, dtype=torch.float64), torch.randn(K, N, 2, dtype=torch.float64)
    folds = []
    real = vmonf.fused._folded

    def counted(*args):
        folds.append(args[1])
        return real(*args)

    with torch.no_grad():
        expected, back = flows.log_prob(x), flows.inverse(z)
        vmonf.fused._folded = counted
        try:
            with flows.same_weights():
                got = flows.log_prob(x)
                with flows.same_weights():  # a nested block keeps the outer one's folds
                    got_back = flows.inverse(z)
                again = flows.log_prob(x)
        finally:
            vmonf.fused._folded = real
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(again, expected, rtol=0, atol=0)
        for a, b in zip(got_back, back, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert sorted(folds) == [0, 1, 2]  # each of the three couplings folded once, for three passes
        flows.load_state_dict(randomize(ComponentFlows(K, 2, 3, 8)).state_dict())  # the weights change after it
        assert not torch.allclose(flows.log_prob(x), expected)
