"""M2's bound: enumeration over classes equals the explicit loop; the objective's parts."""

from __future__ import annotations

import pytest
import torch

import ssvae.m2 as m2_module
from ssvae.m2 import M2
from ssvae.m2_config import M2Config
from vaecore.errors import InputDataError

C, D, B = 4, 12, 5


def _model(likelihood: str = "bernoulli", batch_norm: bool = False, aux_dim: int = 0) -> M2:
    torch.manual_seed(0)
    model = M2(M2Config(x_dim=D, n_classes=C, z_dim=3, hidden=(16,), likelihood=likelihood,
                        batch_norm=batch_norm, aux_dim=aux_dim))
    with torch.no_grad():
        # q(z|x,y) (and q(a|x)) almost point masses (sigma = e^-7, the clamp), so the single
        # Monte Carlo sample cannot hide a mismatch; make the label matter a lot in both networks.
        heads = [model.encoder_head] + ([model.aux_encoder[-1]] if aux_dim else [])
        for head in heads:
            head.log_scale.weight.zero_()
            head.log_scale.bias.fill_(-30.0)
        model.decoder_net[0].weight[:, -C:] *= 20.0
        model.encoder_net[0].weight[:, -C:] *= 20.0
    return model


def _loop_bound(model: M2, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """L(x, y) for each class by an explicit Python loop, `[C, B]`.

    With ``seed``, every class starts from it, so all classes (and an enumeration started
    from the same seed) see the same first draw: the auxiliary a, whose log q(a|x) is random
    even for a point-mass q.
    """
    rows = []
    for c in range(C):
        if seed is not None:
            torch.manual_seed(seed)
        rows.append(model.bound(x, torch.full((x.shape[0],), c)))
    return torch.stack(rows)


def test_plain_bound_is_the_z_elbo_plus_log_py():
    model = _model()
    x, y = torch.rand(B, D).bernoulli(), torch.tensor([0, 1, 2, 3, 1])
    expected = model.labelled_bound(x, model.one_hot(y)).elbo + model.log_py
    assert torch.allclose(model.bound(x, y), expected, atol=1e-2)


@pytest.mark.parametrize("aux_dim", [0, 3])
def test_enumerated_bound_equals_explicit_loop_over_classes(aux_dim):
    model = _model(aux_dim=aux_dim)
    x = torch.rand(B, D).bernoulli()
    loop = _loop_bound(model, x, seed=1)
    torch.manual_seed(1)
    enumerated = model.enumerated_bound(x)
    assert enumerated.shape == (C, B)
    assert torch.allclose(enumerated, loop, atol=1e-2)
    # the classes really differ, so a permuted enumeration would fail the check above
    assert (loop[0] - loop[1]).abs().max() > 1.0


def test_unlabelled_bound_and_loss_match_their_definitions():
    model = _model("gaussian")
    x_l, y_l, x_u = torch.randn(3, D), torch.tensor([0, 2, 3]), torch.randn(B, D)
    terms = model.loss_terms(x_l, y_l, x_u, alpha=7.0, labelled_weight=0.3, unlabelled_weight=0.7)
    q = model.q_y(x_u).probs.T  # [C, B]
    u_loop = (q * _loop_bound(model, x_u)).sum(0) - (q * q.log()).sum(0)
    assert torch.allclose(terms["unlabelled_bound"], u_loop.mean(), rtol=1e-3, atol=1e-2)
    l_loop = torch.stack([_loop_bound(model, x_l[i:i + 1])[y_l[i], 0] for i in range(3)])
    assert torch.allclose(terms["labelled_bound"], l_loop.mean(), rtol=1e-3, atol=1e-2)
    ce = -model.q_y(x_l).log_prob(y_l)
    assert torch.allclose(terms["cross_entropy"], ce.mean(), atol=1e-5)
    expected = 0.3 * (-l_loop + 7.0 * ce).mean() + 0.7 * (-u_loop).mean()
    assert torch.allclose(terms["loss"], expected, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_split_first_layer_equals_the_encoder_on_the_concatenation(batch_norm):
    model = _model(batch_norm=batch_norm)  # training mode: batch norm uses the batch's statistics
    x, y = torch.rand(B, D), model.one_hot(torch.tensor([0, 1, 2, 3, 1]))
    expected = model.encoder_head(model.encoder_net(torch.cat([x, y], -1)))
    q = model.q_z(x, y)
    assert torch.allclose(q.mean, expected.mean, atol=1e-5)
    assert torch.allclose(q.stddev, expected.stddev, atol=1e-5)


def test_pairs_share_each_examples_first_layer_across_its_classes():
    model = _model()
    x_u, x_l, y_l = torch.rand(B, D), torch.rand(2, D), torch.tensor([3, 0])
    x_all, y_all, h_all = model._pairs(x_u, x_l, y_l)[:3]
    assert x_all.shape == (C * B + 2, D) and h_all.shape == (C * B + 2, 16)
    assert torch.allclose(h_all, model.encoder_input(x_all), atol=1e-6)
    assert torch.equal(y_all.argmax(-1), torch.cat([torch.arange(C).repeat_interleave(B), y_l]))
    assert torch.equal(x_all[2 * B + 1], x_u[1]) and torch.equal(x_all[C * B:], x_l)


def test_auxiliary_draw_is_shared_by_an_examples_pairs_and_its_classifier_input():
    torch.manual_seed(0)
    model = M2(M2Config(x_dim=D, n_classes=C, z_dim=3, hidden=(16,), aux_dim=2))
    x_u, x_l, y_l = torch.rand(B, D), torch.rand(2, D), torch.tensor([3, 0])
    pairs = model._pairs(x_u, x_l, y_l)
    assert pairs.inputs.shape == (B + 2, D + 2) and pairs.a.shape == (C * B + 2, 2)
    a = pairs.inputs[:, D:]
    assert a.std() > 0.1  # a real draw from q(a|x), not its mean
    assert torch.equal(pairs.a[2 * B + 1], a[1]) and torch.equal(pairs.a[C * B:], a[B:])
    assert torch.allclose(pairs.h, model.encoder_input(torch.cat([pairs.x, pairs.a], -1)), atol=1e-5)
    expected = model.aux_encoder(torch.cat([x_u, x_l])).log_prob(a)
    assert torch.allclose(pairs.log_q_a, torch.cat([expected[:B].repeat(C), expected[B:]]), atol=1e-5)


def test_auxiliary_bound_adds_log_p_a_minus_log_q_a():
    model = _model(aux_dim=3)
    x, y = torch.rand(B, D).bernoulli(), torch.tensor([0, 1, 2, 3, 1])
    pairs = model._pairs(x[:0], x, y)
    bound, terms = model._pair_bounds(pairs)
    log_p_a = model.aux_decoder_head(model.aux_decoder_net(torch.cat([x, pairs.y, terms.z[0]], -1))).log_prob(pairs.a)
    assert torch.allclose(bound, terms.elbo + model.log_py + log_p_a - pairs.log_q_a, atol=1e-3)
    # q(a|x) is a point mass here, so -log q(a|x) is large and the term really is in the bound
    assert (bound - terms.elbo - model.log_py).abs().min() > 10.0


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.2])
def test_entropy_weight_moves_the_optimal_q_to_a_tempered_softmax(weight):
    # U(q) = sum_y q_y L_y + w H(q) is maximised by q = softmax(L / w): zero gradient there,
    # and any other q scores lower.
    torch.manual_seed(0)
    bound_cy = 3.0 * torch.randn(C, B)
    logits = (bound_cy.T / weight).clone().requires_grad_(True)
    u = M2.unlabelled_bound(bound_cy, torch.distributions.Categorical(logits=logits), weight)
    (grad,) = torch.autograd.grad(u.sum(), logits)
    assert grad.abs().max() < 1e-4
    other = M2.unlabelled_bound(bound_cy, torch.distributions.Categorical(logits=bound_cy.T), weight)
    if weight != 1.0:
        assert (other < u.detach()).all()


def test_objective_makes_one_bound_call_for_all_classes(monkeypatch):
    calls = []
    real = m2_module.elbo

    def spy(x, *args, **kwargs):
        calls.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(m2_module, "elbo", spy)
    model = _model()
    model.loss_terms(torch.rand(2, D), torch.tensor([1, 3]), torch.rand(B, D), alpha=1.0)
    assert calls == [C * B + 2]  # every (example, class) pair and the labelled pairs in one pass


@pytest.mark.parametrize("batch_norm,aux_dim", [(False, 0), (True, 0), (True, 3)])
def test_unlabelled_data_trains_the_classifier(batch_norm, aux_dim):
    model = _model(batch_norm=batch_norm, aux_dim=aux_dim)
    terms = model.loss_terms(torch.rand(1, D).bernoulli(), torch.tensor([2]), torch.rand(B, D).bernoulli(),
                             alpha=1.0, labelled_weight=0.0)
    terms["loss"].backward()
    assert model.classifier[0].weight.grad.abs().sum() > 0  # through q(y|x) weights and the entropy
    if aux_dim:  # the auxiliary encoder learns through the classifier, the encoder and its own term
        assert model.aux_encoder[0][0].weight.grad.abs().sum() > 0
        assert model.aux_decoder_net[0].weight.grad.abs().sum() > 0
    assert torch.isfinite(terms["loss"])
    assert 0.0 <= terms["labelled_accuracy"] <= 1.0


def test_beta_scales_the_kl():
    model = _model()
    x, y = torch.rand(B, D).bernoulli(), model.one_hot(torch.zeros(B, dtype=torch.long))
    torch.manual_seed(1)
    full = model.labelled_bound(x, y, beta=1.0)
    torch.manual_seed(1)
    half = model.labelled_bound(x, y, beta=0.5)
    assert torch.allclose(half.elbo - full.elbo, 0.5 * full.kl, atol=1e-4)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_training_step_reads_nothing_back_from_the_device(host_reads, likelihood):
    # On a GPU every read of a tensor value into Python is a device sync; a step must make none.
    model = _model(likelihood, batch_norm=True)
    x_l, x_u = torch.rand(3, D).bernoulli(), torch.rand(B, D).bernoulli()
    terms = model.loss_terms(x_l, torch.tensor([0, 1, 3]), x_u, alpha=1.0, beta=0.5)
    terms["loss"].backward()
    assert not host_reads, dict(host_reads)


def test_a_convolutional_classifier_needs_images_of_the_inputs_size():
    with pytest.raises(InputDataError, match=r"classifier_channels=\(4,\) needs inputs that are images: "
                                             r"image_shape=None for x_dim=12"):
        M2(M2Config(x_dim=D, n_classes=C, classifier_channels=(4,)))
    with pytest.raises(InputDataError, match=r"image_shape=\(3, 5\) for x_dim=12"):
        M2(M2Config(x_dim=D, n_classes=C, classifier_channels=(4,), image_shape=(3, 5)))
    with pytest.raises(InputDataError, match=r"classifier_channels must be positive, got \(4, 0\)"):
        M2Config(classifier_channels=(4, 0))


@pytest.mark.parametrize("channels", [(), (4,)])
def test_a_context_reaches_the_classifier_only(channels):
    # x_dim = 5 modelled values, then a 3 x 4 image of context (M1+M2: z1, then the pixels).
    torch.manual_seed(0)
    m2 = M2(M2Config(x_dim=5, n_classes=C, z_dim=3, hidden=(16,), classifier_channels=channels,
                     image_shape=(3, 4) if channels else None, context_dim=D))
    z, y = torch.randn(B, 5), torch.arange(B) % C
    x, x_other = torch.cat([z, torch.rand(B, D)], -1), torch.cat([z, torch.rand(B, D)], -1)
    bounds = []
    for rows in (x, x_other):
        torch.manual_seed(1)  # the same z draws: p(x|y,z) models the first 5 values only
        bounds.append(m2.bound(rows, y))
    assert torch.equal(bounds[0], bounds[1])
    assert not torch.allclose(m2.logits(x), m2.logits(x_other))  # but q(y|.) sees the context
    assert m2.decoder_net[-1].out_features == 5 and m2.encoder_net[0].in_features == 5 + C
    terms = m2.loss_terms(x[:2], y[:2], x, alpha=1.0)
    terms["loss"].backward()
    first = m2.classifier.convolutions[1] if channels else m2.classifier[0]
    assert first.weight.grad.abs().sum() > 0
    if channels:  # z1 joins the 4 channels x 2 x 2 of the convolutions at the MLP
        assert m2.classifier.head[0].in_features == 4 * 2 * 2 + 5
    else:
        assert first.in_features == D + 5


def test_a_context_must_match_the_image_shape():
    with pytest.raises(InputDataError, match=r"image_shape=\(3, 5\) for x_dim=5, context_dim=12"):
        M2(M2Config(x_dim=5, n_classes=C, classifier_channels=(4,), image_shape=(3, 5), context_dim=D))
    with pytest.raises(InputDataError, match="context_dim must be an integer >= 0, got -1"):
        M2Config(context_dim=-1)


@pytest.mark.parametrize("aux_dim", [0, 2])
def test_the_objective_trains_a_convolutional_classifier(aux_dim):
    torch.manual_seed(0)
    conv = M2(M2Config(x_dim=D, n_classes=C, z_dim=3, hidden=(16,), classifier_channels=(4,), image_shape=(3, 4),
                       aux_dim=aux_dim))
    x = torch.rand(B, D)
    assert isinstance(conv.classifier.convolutions[1], torch.nn.Conv2d)
    assert conv.logits(x).shape == (B, C)
    terms = conv.loss_terms(x[:2], torch.tensor([0, 1]), x, alpha=1.0)
    terms["loss"].backward()
    assert conv.classifier.convolutions[1].weight.grad.abs().sum() > 0  # the objective trains the convolutions
    if aux_dim:  # q(y|a,x): a joins the 4 channels x 2 x 2 of the convolutions at the MLP
        assert conv.classifier.head[0].in_features == 4 * 2 * 2 + aux_dim


@pytest.mark.parametrize("aux_dim", [0, 3])
def test_log_joint_converges_to_each_classes_marginal_likelihood(aux_dim):
    # One latent dimension, so log p(x, y) = log p(y) + log of the integral of
    # p(x|y,z) N(z; 0, 1) dz comes from a fine grid, class by class: a permuted
    # enumeration would fail too. p(x|y) does not involve ADGM's a.
    torch.manual_seed(0)
    model = M2(M2Config(x_dim=3, n_classes=C, z_dim=1, hidden=(16,), likelihood="gaussian",
                        batch_norm=False, aux_dim=aux_dim)).eval()
    with torch.no_grad():
        # A poor but wide proposal: the ELBO falls well short of log p(x, y), while the
        # importance weights stay bounded, so 20,000 draws pin the estimate down.
        model.encoder_head.loc.bias += 1.0
        model.encoder_head.log_scale.bias += 1.0
        model.decoder_net[0].weight[:, -C:] *= 5.0  # make the label matter
    x = torch.randn(B, 3)
    grid = torch.linspace(-10, 10, 4001)
    exact = []
    for c in range(C):
        with torch.no_grad():
            log_p = model.p_x(grid.reshape(-1, 1, 1).expand(-1, B, 1), model.one_hot(torch.full((B,), c))).log_prob(x)
        log_p = log_p + torch.distributions.Normal(0.0, 1.0).log_prob(grid).unsqueeze(-1)  # [G, B]
        exact.append(log_p.logsumexp(0) + (grid[1] - grid[0]).log())
    exact = torch.stack(exact, -1) + model.log_py
    torch.manual_seed(1)
    estimate = model.log_joint(x, k=20_000)
    assert estimate.shape == (B, C)
    # measured: within 0.02 (0.06 with the auxiliary a, whose proposal is poorer), against
    # 1.1-1.6 between the classes and an ELBO 1.4-27 short
    assert torch.allclose(estimate, exact, atol=0.1), (estimate - exact).abs().max()
    # k = 1 is the single-draw ELBO, short by KL(q || the posterior): so k matters here
    elbo = torch.stack([model.log_joint(x, k=1) for _ in range(500)]).mean(0)
    assert (exact - elbo).min() > 0.3, (exact - elbo).min()
    assert (exact[:, 0] - exact[:, 1]).abs().max() > 0.5  # the classes differ by more than the tolerance


def test_bayes_logits_add_the_generative_posterior_to_the_classifier():
    model = _model().eval()
    x = torch.rand(B, D).bernoulli()
    torch.manual_seed(2)
    joint = model.log_joint(x, k=4)
    torch.manual_seed(2)
    assert torch.allclose(model.bayes_logits(x, k=4),
                          model.logits(x).log_softmax(-1) + joint.log_softmax(-1), atol=1e-5)


def test_a_seeded_log_joint_gives_each_example_its_own_estimate():
    # A classifier by Bayes' rule drew k samples batch after batch from one seeded stream, so an
    # image's answer changed with the images scored beside it and their order.
    model = _model().eval()
    x = torch.rand(B, D).bernoulli()
    together = model.log_joint(x, k=8, seed=0)
    alone = torch.cat([model.log_joint(x[i:i + 1], k=8, seed=0) for i in range(B)])
    reversed_order = model.log_joint(x.flip(0), k=8, seed=0).flip(0)
    torch.testing.assert_close(alone, together)
    torch.testing.assert_close(reversed_order, together)
    state = torch.get_rng_state()
    model.bayes_logits(x, k=8, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is not drawn from
    assert not torch.allclose(model.log_joint(x, k=8, seed=1), together)  # the seed sets the draws
    # Named, not torch's "manual_seed expected a long, but got float" (and -1 taken silently).
    for seed in (1.5, -1, "a"):
        with pytest.raises(InputDataError, match=f"seed must be a non-negative integer below 2\\*\\*64, got {seed!r}"):
            model.log_joint(x, k=8, seed=seed)
    with pytest.raises(InputDataError, match="k must be an integer >= 1, got 1.5"):
        model.log_joint(x, k=1.5, seed=0)


def test_generate_names_labels_and_latents_it_cannot_take():
    # Each was an error from deep inside torch (one_hot's "Class values must be smaller than
    # num_classes", an expand's sizes).
    model = _model().eval()
    d = model.config.z_dim
    assert model.generate(torch.tensor([0, C - 1]), torch.zeros(2, d)).shape == (2, D)
    for y, shown in ((torch.tensor([0, C]), rf"\[0, {C}\]"), (torch.tensor([-1]), r"\[-1\]"),
                     (torch.tensor([0.0]), r"\[0.0\]"), (torch.zeros(2, 1, dtype=torch.int64), r"\[\[0\], \[0\]\]")):
        with pytest.raises(InputDataError, match=rf"y must be integer labels \[B\] in 0..{C - 1}, got {shown}"):
            model.generate(y, torch.zeros(len(y), d))
    with pytest.raises(InputDataError, match=rf"z must be \[B, z_dim\] = \[2, {d}\] for 2 labels, got \[3, {d}\]"):
        model.generate(torch.tensor([0, 1]), torch.zeros(3, d))
