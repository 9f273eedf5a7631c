"""deepscope.robust: training that resists label noise (CrossSplit) and adversarial examples (A3T).

Nothing is imported here: import the module you need.

Label noise (CrossSplit, arXiv 2212.01674; docs/crosssplit.md)::

    from deepscope.robust.noise import make_label_noise      # symmetric / asymmetric / instance noise
    from deepscope.robust.crosssplit import train_crosssplit # the method, every ingredient switchable
    from deepscope.robust.baselines import train_ce, train_ce_early_stopping, train_coteaching, \\
        train_dividemix, train_confident_learning           # same networks, data and budget
    from deepscope.robust.augment import signal_views, cifar_views   # weak / strong views

    noisy = make_label_noise(y, "sym60", num_classes=10, generator=g)
    res = train_crosssplit(x, noisy.labels, num_classes=10, generator=g, x_test=xt, y_test=yt)
    res.predict(xt).argmax(1)                                # sum of the two networks' logits

Adversarial robustness (A3T, arXiv 1801.04055): :mod:`deepscope.robust.attacks`,
:mod:`deepscope.robust.adversarial`, :mod:`deepscope.robust.a3t`, :mod:`deepscope.robust.evaluate`.
"""
