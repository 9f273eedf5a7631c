"""RunConfig: the generic checks every recipe's Config inherits."""


def test_literal_choices_are_checked_from_python_too():
    import pytest

    from deepscope.recipes.crosssplit import Config as CrossSplit
    from deepscope.recipes.mine_gaussians import Config as Gaussians

    with pytest.raises(ValueError, match=r"^dataset == 'mnist-1d', must be one of 'mnist1d', "):
        CrossSplit(dataset="mnist-1d")
    with pytest.raises(ValueError, match=r"^methods == \('mine', 'mien'\), must be one or more of "):
        Gaussians(methods=("mine", "mien"))
    with pytest.raises(ValueError, match=r"^logger == \('tensorbord',\), must be one or more of 'tensorboard', 'wandb'"):
        Gaussians(logger=("tensorbord",))
    assert Gaussians(methods=("mine",)).methods == ("mine",)
