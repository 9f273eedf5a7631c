import math

import pytest
import torch
import torch.nn.functional as F

from deepscope.nets import MLP, build_net
from deepscope.robust.a3t import A3T, linear_cka, representation_gap, split_model, train_a3t
from deepscope.robust.adversarial import FGSMAT, PGDAT, TRADES, Standard, train_robust
from deepscope.robust.methods import make_objective
from deepscope.train.rng import fork_seeded, make_generator
from tests.killing import KillAt, Killed


def _data(n=96, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    y = (x[:, :k].argmax(1)).long()  # learnable labels
    return x, y


def _net(seed=0, d=12, k=3, hidden=(32, 16)):
    with fork_seeded(make_generator(seed, "model")):
        return MLP(d, list(hidden), k)


def _setup(a3t, net, seed=0):
    a3t.setup(net, generator=make_generator(seed, "disc"), device=torch.device("cpu"))
    return a3t


def test_split_model_shares_parameters_and_reproduces_the_output():
    net = _net()
    x, _ = _data()
    for layer in (1, 2, "features"):
        enc, head = split_model(net, layer)
        torch.testing.assert_close(head(enc(x)), net(x), rtol=0, atol=0)
    enc, head = split_model(net, 1)
    assert enc[1].weight is net[1].weight
    cnn = build_net("cnn1d", input_shape=(40,), num_classes=10, channels=4)
    enc, head = split_model(cnn, "features")
    xc = torch.randn(3, 40)
    torch.testing.assert_close(head(enc(xc)), cnn(xc), rtol=0, atol=0)
    with pytest.raises(ValueError, match="for a CNN1D use layer='features'"):
        split_model(cnn, 1)
    with pytest.raises(ValueError, match=r"layer == 3, must be an int in 1..2"):
        split_model(net, 3)


def test_discriminator_gradient_reaches_the_encoder_with_the_intended_sign_and_not_the_head():
    net = _net()
    x, y = _data()
    a3t = _setup(A3T(eps=0.1, layer=1, beta=1.0), net)
    enc, head = a3t.encoder_, a3t.head_
    x_adv = a3t.adversarial(net, x, y, None)
    fool = a3t.fool_loss(enc(x_adv))
    enc_params, head_params = list(enc.parameters()), list(head.parameters())
    grads = torch.autograd.grad(fool, enc_params + head_params + list(a3t.disc_.parameters()),
                                allow_unused=True)
    g_enc, g_rest = grads[:len(enc_params)], grads[len(enc_params):]
    assert all(g is not None and g.abs().sum() > 0 for g in g_enc)
    assert all(g is None for g in g_rest)  # neither the head nor D is in the fooling term's graph

    # Intended sign: a small step of the encoder down the fooling loss makes D(E(x_adv)) look
    # more "clean" (higher probability of the clean class).
    def p_clean():
        with torch.no_grad():
            return torch.sigmoid(a3t.disc_(enc(x_adv))).mean().item()

    before = p_clean()
    with torch.no_grad():
        for p, g in zip(enc_params, g_enc):
            p -= 1e-2 * g
    assert p_clean() > before


def test_one_a3t_step_updates_the_discriminator_only_inside_the_objective():
    net = _net()
    x, y = _data()
    a3t = _setup(A3T(eps=0.1, layer=2), net)
    d_before = [p.clone() for p in a3t.disc_.parameters()]
    loss, metrics = a3t.loss(net, x, y, None)
    # D took its step on detached representations: no gradient reached the classifier yet
    assert all(p.grad is None for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(d_before, a3t.disc_.parameters()))
    d_grads = [p.grad.clone() for p in a3t.disc_.parameters()]
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    # the classifier's backward pass leaves D's gradients alone
    assert all(torch.equal(a, p.grad) for a, p in zip(d_grads, a3t.disc_.parameters()))
    assert set(metrics) >= {"loss", "ce_clean", "ce_adv", "fool", "disc_loss", "disc_acc"}


def test_the_discriminator_learns_to_tell_clean_from_adversarial():
    net = _net()
    x, y = _data()
    a3t = _setup(A3T(eps=0.3, layer=1, beta=0.0), net)
    x_adv = a3t.adversarial(net, x, y, None)

    def p_clean(inputs):
        with torch.no_grad():
            return torch.sigmoid(a3t.disc_(a3t.encoder_(inputs))).mean().item()

    losses = [a3t.loss(net, x, y, None)[1]["disc_loss"] for _ in range(60)]
    assert abs(losses[0] - math.log(2)) < 0.05         # an untrained D is at chance
    assert losses[-1] < 0.6 * losses[0]
    assert p_clean(x) > 0.5 > p_clean(x_adv)           # label 1 = clean, as fool_loss assumes


def test_a3t_with_beta_zero_is_fgsm_adversarial_training_and_trades_with_beta_zero_is_standard():
    net = _net()
    x, y = _data()
    a3t = _setup(A3T(eps=0.1, alpha=0.3, beta=0.0), net)
    la, _ = a3t.loss(net, x, y, None)
    lf, _ = FGSMAT(eps=0.1, alpha=0.3).loss(net, x, y, None)
    torch.testing.assert_close(la, lf, rtol=0, atol=1e-6)
    lt, _ = TRADES(eps=0.1, beta=0.0, steps=2).loss(net, x, y, make_generator(0, "t"))
    ls, _ = Standard().loss(net, x, y, None)
    torch.testing.assert_close(lt, ls, rtol=0, atol=0)
    l1, _ = FGSMAT(eps=0.1, alpha=1.0).loss(net, x, y, None)
    torch.testing.assert_close(l1, ls, rtol=0, atol=0)
    lp, _ = PGDAT(eps=0.1, steps=3).loss(net, x, y, make_generator(0, "p"))
    assert lp > ls


@pytest.mark.parametrize("method", ["a3t", "pgd-at", "trades"])
def test_kill_and_resume_gives_identical_numbers(tmp_path, method):
    x, y = _data(n=70)

    def train(dir, kill_at=None):
        run = KillAt(dir, config={"m": method}, seed=3, progress=False, kill_at=kill_at)
        g = make_generator(3, "train")
        net = _net(3)
        obj = make_objective(method, eps=0.1, bounds=(0.0, 1.0), steps=2) if method != "a3t" \
            else A3T(eps=0.1, attack="pgd", pgd_steps=2, disc_hidden=(8,))
        res = train_robust(net, x, y, obj, generator=g, run=run,
                           options={"epochs": 3, "batch_size": 16}, log_every=1)
        assert res.model is net and len(res.history) == 15
        return net, obj, run

    full, obj_full, run_full = train(tmp_path / "a")
    with pytest.raises(Killed):
        train(tmp_path / "b", kill_at=8)        # last checkpoint at step 5 (epoch 1), mid-epoch 2
    torch.randn(7)                                # the global RNG is not what the loop draws from
    res, obj_res, run_res = train(tmp_path / "b")
    for a, b in zip(full.state_dict().values(), res.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if method == "a3t":
        for a, b in zip(obj_full.disc_.state_dict().values(), obj_res.disc_.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(run_res.metrics()) == strip(run_full.metrics())
    assert len(run_full.metrics()) == 15  # 3 epochs of ceil(70 / 16) = 5 steps


def test_train_a3t_learns_and_leaves_the_global_rng_alone():
    x, y = _data(n=200)
    net = _net()

    def fit():
        with torch.no_grad():
            return F.cross_entropy(net(x), y).item(), (net(x).argmax(1) == y).float().mean().item()

    ce0, acc0 = fit()
    state = torch.get_rng_state()
    res = train_a3t(net, x, y, eps=0.05, generator=make_generator(0, "t"),
                    options={"epochs": 15, "batch_size": 32}, disc_hidden=(16,))
    assert res.model is net and type(res.info["objective"].disc_).__name__ == "MLP"
    assert torch.equal(torch.get_rng_state(), state)
    ce1, acc1 = fit()
    assert ce1 < ce0 and acc1 > acc0


def test_bad_options_name_the_option_and_the_fix():
    with pytest.raises(ValueError, match=r"method == 'madry', must be one of \['standard'"):
        make_objective("madry", eps=0.1)
    with pytest.raises(ValueError, match=r"eps == 0, must be a finite number > 0"):
        A3T(eps=0)
    with pytest.raises(ValueError, match=r"alpha == 1.5, must be a number >= 0.0 and <= 1.0"):
        A3T(eps=0.1, alpha=1.5)
    with pytest.raises(ValueError, match=r"beta == -1, must be >= 0"):
        A3T(eps=0.1, beta=-1)
    with pytest.raises(ValueError, match=r"layer == 0, must be an int >= 1"):
        A3T(eps=0.1, layer=0)
    with pytest.raises(ValueError, match=r"attack == 'cw', must be 'fgsm'"):
        A3T(eps=0.1, attack="cw")
    with pytest.raises(ValueError, match=r"encoder_loss == 'grl', must be 'paper'"):
        A3T(eps=0.1, encoder_loss="grl")
    with pytest.raises(ValueError, match=r"steps == 0, must be an integer >= 1"):
        PGDAT(eps=0.1, steps=0)
    with pytest.raises(RuntimeError, match="A3T is not set up"):
        A3T(eps=0.1).loss(_net(), *_data(), None)
    x, y = _data()
    with pytest.raises(ValueError, match=r"epochs == 0, must be an integer >= 1"):
        train_robust(_net(), x, y, Standard(), generator=make_generator(0), options={"epochs": 0})
    with pytest.raises(ValueError, match=r"num_classes is None, must be given to build net 'mlp'"):
        train_robust("mlp", x, y, Standard())
    with pytest.raises(ValueError, match=r"amp == True, must be False for train_robust"):
        train_robust(_net(), x, y, Standard(), options={"amp": True})


def test_reversal_form_is_minus_the_discriminator_loss_and_pushes_d_towards_chance():
    net = _net()
    x, y = _data()
    a3t = _setup(A3T(eps=0.3, layer=1, beta=1.0, encoder_loss="reversal"), net)
    for _ in range(40):        # D first learns to tell them apart
        a3t.loss(net, x, y, None)
    enc = a3t.encoder_
    x_adv = a3t.adversarial(net, x, y, None)
    fool = a3t.fool_loss(enc(x_adv), enc(x))
    with torch.no_grad():
        torch.testing.assert_close(fool, -a3t.disc_loss(enc(x), enc(x_adv)))
    enc_params = list(enc.parameters())
    grads = torch.autograd.grad(fool, enc_params + list(a3t.disc_.parameters()), allow_unused=True)
    assert all(g is None for g in grads[len(enc_params):])      # D takes no gradient from it
    d_before = a3t.disc_loss(enc(x), enc(x_adv)).item()
    with torch.no_grad():      # the encoder's step raises D's loss: gradient reversal
        for p, g in zip(enc_params, grads[:len(enc_params)]):
            p -= 1e-2 * g
        assert a3t.disc_loss(enc(x), enc(x_adv)).item() > d_before
    with pytest.raises(ValueError, match="z is None, must be the clean representations"):
        a3t.fool_loss(enc(x_adv))
    # trains through train_robust like the paper's form
    res = train_robust(_net(), x, y, A3T(eps=0.1, beta=0.1, encoder_loss="reversal",
                                         disc_hidden=(8,)), generator=make_generator(0),
                       options={"epochs": 2, "batch_size": 32}, log_every=1)
    assert {"disc_acc", "cka", "shift"} <= set(res.history[-1])


def test_pgd_training_attack_makes_pgd_examples():
    net = _net()
    x, y = _data()
    a3t = _setup(A3T(eps=0.1, attack="pgd", pgd_steps=5), net)
    x_pgd = a3t.adversarial(net, x, y, make_generator(0, "p"))
    x_fgsm = _setup(A3T(eps=0.1), net).adversarial(net, x, y, None)
    assert (x_pgd - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(x_pgd, x_fgsm)
    with torch.no_grad():
        assert F.cross_entropy(net(x_pgd), y) >= F.cross_entropy(net(x_fgsm), y) - 1e-4


def test_beta_zero_trains_the_same_classifier_whatever_layer_d_watches():
    # the paired comparison's reference: at beta = 0 D watches but never pushes back, so the
    # trained classifier is FGSM-AT's whatever the layer (D's init takes one generator draw)
    x, y = _data()
    nets = []
    for layer in (1, 2):
        res = train_robust("mlp", x, y, A3T(eps=0.1, layer=layer, beta=0.0), num_classes=3,
                           net_kwargs={"hidden": [16, 8]}, generator=make_generator(0, "train"),
                           options={"epochs": 2, "batch_size": 32})
        nets.append(res.model)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    moved = train_robust("mlp", x, y, A3T(eps=0.1, layer=2, beta=1.0), num_classes=3,
                         net_kwargs={"hidden": [16, 8]}, generator=make_generator(0, "train"),
                         options={"epochs": 2, "batch_size": 32}).model
    assert any(not torch.equal(a, b) for a, b in zip(nets[0].state_dict().values(),
                                                       moved.state_dict().values()))


def test_linear_cka_and_the_representation_gap():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert linear_cka(a, 2.5 * a @ q + 1.0) == pytest.approx(1.0)     # rotation, scale, shift
    assert linear_cka(a, torch.randn(200, 6, generator=g)) < 0.1      # unrelated
    enc = torch.nn.Linear(4, 3)
    x = torch.rand(50, 4, generator=g)
    disc = torch.nn.Linear(3, 1)
    gap = representation_gap(enc, x, x + 0.5, disc=disc)
    assert gap["cka"] == pytest.approx(1.0) and gap["shift"] > 0       # CKA misses a shift
    assert 0.0 <= gap["disc_acc"] <= 1.0
