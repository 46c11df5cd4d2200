import torch

from models.encoder import EncoderConfig, ObservationEncoder
from models.ldnet import LDNet, LDNetConfig


def small_ldnet() -> LDNet:
    torch.manual_seed(0)
    return LDNet(
        LDNetConfig(
            latent_dim=4,
            param_dim=2,
            dynamics_depth=2,
            dynamics_width=16,
            reconstruction_depth=2,
            reconstruction_width=16,
            n_fourier=8,
            dt=0.1,
        )
    )


def test_first_stored_latent_is_one_euler_step_from_zero() -> None:
    net = small_ldnet()
    u = torch.randn(3, 2)
    s = net.rollout(u, n_steps=5)
    assert s.shape == (3, 5, 4)
    expected_first = 0.1 * net.dynamics(torch.cat([torch.zeros(3, 4), u], dim=-1))
    torch.testing.assert_close(s[:, 0], expected_first)
    torch.testing.assert_close(s[:, 1], net.step(s[:, 0], u))


def test_reconstruction_shared_and_per_frame_points_agree() -> None:
    net = small_ldnet()
    s = torch.randn(5, 4)
    xi = torch.rand(7, 2) * 2 - 1
    shared = net.reconstruct(s, xi)
    per_frame = net.reconstruct(s, xi.expand(5, -1, -1))
    assert shared.shape == (5, 7, 3)
    torch.testing.assert_close(shared, per_frame)
    # each member's field depends on its own latent only
    torch.testing.assert_close(net.reconstruct(s[2:3], xi)[0], shared[2])


def test_encoder_step_matches_sequence() -> None:
    torch.manual_seed(0)
    enc = ObservationEncoder(EncoderConfig(obs_dim=6, latent_dim=4, param_dim=2, hidden=8, layers=2))
    y = torch.randn(3, 5, 6)
    s_seq, u_seq = enc(y)
    h, c = enc.initial_state(3)
    for t in range(5):
        s_t, u_t, h, c = enc.step(y[:, t], h, c)
        torch.testing.assert_close(s_t, s_seq[:, t])
        torch.testing.assert_close(u_t, u_seq[:, t])


def test_checkpoint_rebuilds_the_exact_model(tmp_path) -> None:
    from models.checkpoint import load_model, save_checkpoint

    net = small_ldnet()
    save_checkpoint(tmp_path / "ckpt.pt", "ldnet", net, epoch=3)
    rebuilt, payload = load_model(tmp_path / "ckpt.pt")
    assert payload["epoch"] == 3
    u = torch.randn(2, 2)
    torch.testing.assert_close(rebuilt.rollout(u, 4), net.rollout(u, 4), rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))


def test_moving_frame_features_follow_the_predicted_shift() -> None:
    torch.manual_seed(0)
    net = LDNet(
        LDNetConfig(
            latent_dim=4,
            dynamics_depth=2,
            dynamics_width=16,
            reconstruction_depth=2,
            reconstruction_width=16,
            n_fourier=8,
            shift_frames=2,
        )
    )
    s = torch.randn(5, 4)
    xi = torch.rand(7, 2) * 2 - 1
    torch.testing.assert_close(net.reconstruct(s, xi), net.reconstruct(s, xi.expand(5, -1, -1)))
    # the shifted features are those of xi - c(s): with the shift net zeroed and the latent's own
    # input weights zeroed, the output is the same as at points moved by the shift's bias
    assert net.frame_shift is not None
    with torch.no_grad():
        net.frame_shift.weight.zero_()
        net.frame_shift.bias.copy_(torch.tensor([0.3, -0.2, 0.3, -0.2]))
        lifted = net.reconstruction.lift[0]
        lifted.weight[:, : 2 * 8].zero_()  # ignore the unshifted features
        lifted.weight[:, -4:].zero_()  # and the latent
        moved = net.reconstruct(s, xi + torch.tensor([0.3, -0.2]))
        net.frame_shift.bias.zero_()
        at_origin = net.reconstruct(s, xi)
    torch.testing.assert_close(moved, at_origin)
