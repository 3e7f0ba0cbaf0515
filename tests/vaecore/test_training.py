"""vaecore.training: the weight average warms up, lerps every float tensor, and round-trips."""

import pytest
import torch

from vaecore.errors import InputDataError
from vaecore.training import WeightAverage


def test_weight_average_warms_up_then_follows_a_fixed_target():
    source = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(source, decay=0.999)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # the target moves away from the copied initial weights
    source[1].num_batches_tracked.fill_(7)
    for _ in range(50):
        average.update(source)
    # a fixed 0.999 would still hold 95% of the initial weights after 50 steps; with the
    # warm-up their share is the product of (1 + t) / (10 + t) over t < 50, about 1e-10
    for mine, theirs in zip(average.module.parameters(), source.parameters()):
        assert torch.allclose(mine, theirs, atol=1e-3)
    assert int(average.module[1].num_batches_tracked) == 7
    restored = WeightAverage(source, decay=0.999)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 50
    with pytest.raises(InputDataError, match="ema_decay"):
        WeightAverage(source, decay=1.5)


def test_weight_average_update_is_a_lerp_of_every_float_tensor():
    source = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(source, decay=0.999)
    before = {k: v.clone() for k, v in average.module.state_dict().items()}
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    source.train()(torch.randn(5, 3))  # moves the batch-norm statistics and counter
    average.update(source)  # the first update: decay min(0.999, 1 / 10) = 0.1
    for name, theirs in source.state_dict().items():
        mine = average.module.state_dict()[name]
        expected = theirs if not theirs.is_floating_point() else before[name] + 0.9 * (theirs - before[name])
        assert torch.allclose(mine, expected, atol=1e-6), name


def test_weight_average_update_dispatches_one_lerp_and_the_counter_copies():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Operators(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    average = WeightAverage(source, decay=0.999)
    with Operators() as seen:
        average.update(source)
    # It also detached every parameter and buffer of both modules (state_dict()): 18 more.
    assert sorted(seen.names) == ["aten._foreach_lerp_", "aten.copy_"], seen.names


@pytest.mark.parametrize("decay", [1.0, -0.1, float("nan"), "0.9", True])
def test_weight_average_decay_is_checked(decay: object) -> None:
    with pytest.raises(InputDataError, match="ema_decay must be a number in"):
        WeightAverage(torch.nn.Linear(2, 2), decay)  # type: ignore[arg-type]
