"""utils.second_device: the stand-in GPU must compute real values and refuse what CUDA refuses,
or the device tests built on it (tests/grading/test_devices.py, the notebooks' stand-in runs) prove nothing."""

import pytest
import torch

from utils.second_device import Relocated, second_device, to_cpu

SAME_DEVICE = "Expected all tensors to be on the same device"


def test_values_are_computed_for_real_on_the_second_device():
    x, w = torch.randn(3, 4), torch.randn(4, 2)
    with second_device() as dev:
        y = x.to(dev) @ w.to(dev)
        assert y.device == dev and isinstance(y, Relocated)
        assert torch.equal(to_cpu(y), x @ w)
        assert torch.equal(y.cpu(), x @ w) and type(y.cpu()) is torch.Tensor
        assert y.sum().item() == pytest.approx((x @ w).sum().item(), rel=1e-6)
        assert f"{y.sum():.2f}" == f"{(x @ w).sum():.2f}"


@pytest.mark.parametrize("mix", [
    lambda x: x @ torch.ones(4, 2),
    lambda x: x + torch.arange(4),
    lambda x: torch.cat([x, torch.zeros(1, 4)]),
    lambda x: torch.randn(3)[torch.tensor([0, 1]).to(x.device)],
], ids=["matmul", "add", "cat", "cpu tensor, device indices"])
def test_a_cpu_tensor_meeting_a_device_tensor_raises_as_on_cuda(mix):
    with second_device() as dev:
        with pytest.raises(RuntimeError, match="same device|indices should be"):
            mix(torch.randn(3, 4).to(dev))


@pytest.mark.parametrize("fine", [
    lambda x: x * torch.tensor(2.0),                      # a 0-d CPU tensor is a scalar, as on CUDA
    lambda x: x[torch.tensor([0, 2])],                    # CPU indices into a device tensor
    lambda x: x[[0, 2]],
    lambda x: x + torch.arange(4, device=x.device),
    lambda x: x + torch.tensor([1.0, 2.0, 3.0, 4.0], device=x.device),
    lambda x: x @ torch.ones(4, 2).to(x),
    lambda x: torch.multinomial(x.softmax(-1), 1, generator=torch.Generator(device=x.device).manual_seed(0)),
], ids=["0-d scalar", "cpu indices", "list indices", "arange on x.device", "tensor on x.device", ".to(x)",
        "device generator"])
def test_device_correct_code_runs(fine):
    with second_device() as dev:
        assert fine(torch.randn(3, 4).to(dev)).device == dev


def test_generators_serve_only_their_own_device():
    with second_device() as dev:
        with pytest.raises(RuntimeError, match="device type for generator"):
            torch.randn(3, device=dev, generator=torch.Generator().manual_seed(0))
        with pytest.raises(RuntimeError, match="device type for generator"):
            torch.randn(3, generator=torch.Generator(device=dev).manual_seed(0))
    assert torch.Generator is torch._C.Generator  # put back after the block


def test_numpy_needs_cpu_first_as_on_cuda():
    with second_device() as dev:
        x = torch.randn(2).to(dev)
        with pytest.raises(TypeError, match="cpu"):
            x.numpy()
        assert x.cpu().numpy().shape == (2,)


def test_a_model_trains_on_the_second_device():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    with second_device() as dev:
        model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=0.1)
        losses = []
        for _ in range(20):
            loss = torch.nn.functional.mse_loss(model(x.to(dev)), y.to(dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert model.weight.device == dev
        with pytest.raises(RuntimeError, match=SAME_DEVICE):
            model(x)
    assert losses[-1] < 0.9 * losses[0]


def test_a_transformer_lens_model_runs_there():
    from utils.grading.models import tiny_model

    tokens = torch.randint(0, 12, (2, 5))
    expected = tiny_model("cpu")(tokens)
    with second_device() as dev:
        model = tiny_model(dev)
        logits = model(tokens.to(dev))
        assert logits.device == dev
        torch.testing.assert_close(logits.cpu(), expected, atol=1e-4, rtol=1e-4)
        assert model.W_O.device == dev  # TransformerLens reads the weights (it refuses real meta tensors)
    tiny_model.cache_clear()


def test_the_blocks_nest_and_each_puts_back_what_it_found():
    with second_device() as dev:
        with second_device():
            pass
        generator = torch.Generator(device=dev).manual_seed(0)  # still the stand-in's after the inner block
        assert torch.randn(2, device=dev, generator=generator).device == dev
    assert torch.Generator is torch._C.Generator


def test_a_vector_times_a_matrix_keeps_matmuls_shape():
    """matmul with a vector squeezes in place inside PyTorch, which a wrapper tensor cannot follow."""
    with second_device():
        v = torch.randn(4, device="meta", requires_grad=True)
        m = torch.randn(2, 4, 3, device="meta", requires_grad=True)
        assert (v @ m).shape == (2, 3) and (m.transpose(1, 2) @ v).shape == (2, 3) and (v @ v).shape == ()
        (v @ m).sum().backward()
        assert v.grad.shape == (4,) and m.grad.shape == (2, 4, 3)
