"""Network torsos and heads built from `NetSpec`: MLPs, Nature-style ConvNets, recurrent torsos (TorchRL's
`LSTMModule` / `GRUModule`; SLM-Lab's stateless RecurrentNet), dueling Q heads; and the
log-densities of the Gaussian policy heads' distributions, in plain torch, for the losses that skip TorchRL's
distribution objects (PPO, SAC)."""

import math

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torch.nn import functional as F
from torchrl.modules import MLP, GRUModule, LSTMModule

from zoo.spec import NetSpec, SpecError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid,
    "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity,
}


def init_weights(module: nn.Module, init_fn: str, gain: float = 1.0) -> None:
    """Initialise every Linear / Conv layer of `module` in place (biases to zero)."""
    if init_fn == "default":
        return
    for layer in module.modules():
        if not isinstance(layer, nn.Linear | nn.Conv2d):
            continue
        if init_fn == "orthogonal":
            nn.init.orthogonal_(layer.weight, gain=gain)
        elif init_fn == "xavier_uniform":
            nn.init.xavier_uniform_(layer.weight, gain=gain)
        elif init_fn == "kaiming_uniform":
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)


def init_gain(net_spec: NetSpec) -> float:
    """The gain of `init_fn` on the spec's layers: `init_gain`, else ReLU's for orthogonal and 1 for the others."""
    if net_spec.init_gain is not None:
        return net_spec.init_gain
    return nn.init.calculate_gain("relu") if net_spec.init_fn == "orthogonal" else 1.0


def build_mlp(in_dim: int, out_dim: int, net_spec: NetSpec, hid_layers: list[int] | None = None) -> nn.Module:
    """MLP `in_dim -> hid_layers -> out_dim` with the spec's activation and initialisation."""
    hid_layers = net_spec.hid_layers if hid_layers is None else hid_layers
    norm = {"norm_class": nn.LayerNorm, "norm_kwargs": [{"normalized_shape": w} for w in hid_layers]} if (
        net_spec.layer_norm and hid_layers) else {}
    mlp = MLP(in_features=in_dim, out_features=out_dim, num_cells=list(hid_layers),
              activation_class=ACTIVATIONS[net_spec.hid_layers_activation], **norm)
    init_weights(mlp, net_spec.init_fn, gain=init_gain(net_spec))
    return mlp


def conv_output_size(size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1) -> int:
    """Height (or width) after one `nn.Conv2d` layer (the formula of its docs)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ConvTorso(nn.Module):
    """Nature-DQN style conv stack over uint8 frames: scales pixels to [0, 1] inside the net, then flattens.

    Layers are `[out_channels, kernel, stride]` or SLM-Lab's `[out_channels, kernel, stride, padding, dilation]`."""

    def __init__(self, in_shape: tuple[int, ...], net_spec: NetSpec):
        super().__init__()
        if len(in_shape) != 3:
            raise SpecError("agent.net.type", f"{net_spec.type} needs image observations [channels, height, width]; "
                            f"these have shape {list(in_shape)} (use MLPNet)")
        layers: list[nn.Module] = []
        channels, height, width = in_shape
        for i, (out_channels, kernel, stride, *rest) in enumerate(net_spec.conv_hid_layers):
            padding, dilation = rest or (0, 1)
            height, width = (conv_output_size(n, kernel, stride, padding, dilation) for n in (height, width))
            if height < 1 or width < 1:
                raise SpecError(f"agent.net.conv_hid_layers[{i}]", f"shrinks the {in_shape[1]}x{in_shape[2]} input "
                                f"below 1x1 (to {height}x{width}); use smaller kernels or strides, or fewer layers")
            layers += [nn.Conv2d(channels, out_channels, kernel, stride, padding, dilation),
                       ACTIVATIONS[net_spec.hid_layers_activation]()]
            channels = out_channels
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.out_dim = self.convs(torch.zeros(1, *in_shape)).shape[-1]
        init_weights(self, net_spec.init_fn, gain=init_gain(net_spec))
        # channels_last (NHWC) weights make the convs run NHWC (oneDNN's faster CPU kernels; same maths). Nature
        # CNN forward + backward on 256 Pong frames, 1 thread, 2-core CPU: 340-450 ms NCHW, 275-300 ms NHWC
        self.to(memory_format=torch.channels_last)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = pixels.shape[:-3]
        # a copy scaled in place: half the time of `.float() / 255` (6 vs 13 ms for 256 frames), same values
        x = self.convs(pixels.reshape(-1, *pixels.shape[-3:]).to(torch.float32, copy=True).div_(255.0))
        return x.reshape(*batch, -1)


def recurrent_state_keys(net_spec: NetSpec, prefix: str) -> list[str]:
    """The root keys of a recurrent torso's hidden state (an LSTM has two: h and c)."""
    return [f"{prefix}_h", f"{prefix}_c"] if net_spec.cell_type == "LSTM" else [f"{prefix}_h"]


def build_recurrent_torso(in_dim: int, net_spec: NetSpec, prefix: str) -> TensorDictSequential:
    """RecurrentNet's torso: observation -> `fc_hid_layers` MLP -> LSTM / GRU -> `<prefix>_features`.

    TorchRL's `LSTMModule` / `GRUModule` read the hidden state under `<prefix>_h` (and `_c`), zero it where
    `is_init` marks an episode start, and write the next one under `("next", <prefix>_h)`, so collection carries
    it (with the env's `TensorDictPrimer`, `get_primers_from_module`) and every stored step keeps the state it was
    acted from. On a `[batch, time]` TensorDict under `set_recurrent_mode(True)` they run whole sequences, each
    from its first step's stored state and split where `is_init` fires: training sees what acting saw.
    """
    modules, rnn_in, rnn_in_dim = [], "observation", in_dim
    if net_spec.fc_hid_layers:
        fc = net_spec.fc_hid_layers
        mlp = nn.Sequential(build_mlp(in_dim, fc[-1], net_spec, fc[:-1]), ACTIVATIONS[net_spec.hid_layers_activation]())
        rnn_in, rnn_in_dim = f"{prefix}_embedding", fc[-1]
        modules.append(TensorDictModule(mlp, ["observation"], [rnn_in]))
    states = recurrent_state_keys(net_spec, prefix)
    cell = LSTMModule if net_spec.cell_type == "LSTM" else GRUModule
    modules.append(cell(input_size=rnn_in_dim, hidden_size=net_spec.rnn_hidden_size, num_layers=net_spec.rnn_num_layers,
                        in_keys=[rnn_in, *states, "is_init"],
                        out_keys=[f"{prefix}_features", *(("next", key) for key in states)]))
    return TensorDictSequential(*modules)


class StatelessRecurrentTorso(nn.Module):
    """SLM-Lab v5's RecurrentNet (slm_lab/agent/net/recurrent.py): the observation through `fc_hid_layers`, repeated
    `seq_len` times and run through an LSTM / GRU from a zero state; the last layer's final hidden state is the
    feature vector. SLM-Lab feeds it the current state only (its memories store no history), so the net is a
    feed-forward function of one observation and keeps no state between steps (zoo's RecurrentNet does).

    Initialised as SLM-Lab's init_layers does: `init_fn` on the fc layers and on a GRU's weights (biases zero); an
    LSTM keeps torch's initialisation (SLM-Lab's init_params matches GRU layers by name only)."""

    def __init__(self, in_dim: int, net_spec: NetSpec):
        super().__init__()
        fc = net_spec.fc_hid_layers
        self.fc = nn.Sequential(build_mlp(in_dim, fc[-1], net_spec, fc[:-1]),
                                ACTIVATIONS[net_spec.hid_layers_activation]()) if fc else nn.Identity()
        cell = nn.LSTM if net_spec.cell_type == "LSTM" else nn.GRU
        self.rnn = cell(fc[-1] if fc else in_dim, net_spec.rnn_hidden_size, net_spec.rnn_num_layers, batch_first=True)
        self.seq_len, self.out_dim = net_spec.seq_len, net_spec.rnn_hidden_size
        if isinstance(self.rnn, nn.GRU) and net_spec.init_fn != "default":
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias"):
                    nn.init.zeros_(param)
                elif net_spec.init_fn == "kaiming_uniform":
                    nn.init.kaiming_uniform_(param, nonlinearity="relu")
                else:
                    getattr(nn.init, f"{net_spec.init_fn}_")(param, gain=init_gain(net_spec))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        """The cell equations of torch's GRU / LSTM docs over `self.rnn`'s parameters: the same values as calling
        it, and unlike its fused kernel they run under vmap (TorchRL's value estimators vmap the critic)."""
        batch = observation.shape[:-1]
        x = self.fc(observation.reshape(-1, observation.shape[-1]))
        inputs = [x] * self.seq_len
        for layer in range(self.rnn.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(self.rnn, f"{name}_l{layer}") for name in
                                      ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            # the first layer reads the same observation at every step: its input projection is computed once
            projected = [x @ w_ih.T + b_ih] * self.seq_len if layer == 0 else [s @ w_ih.T + b_ih for s in inputs]
            h = c = x.new_zeros(x.shape[0], self.out_dim)
            outputs = []
            for gi in projected:
                gh = h @ w_hh.T + b_hh
                if isinstance(self.rnn, nn.LSTM):
                    i, f, g, o = (gi + gh).chunk(4, -1)
                    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
                    h = o.sigmoid() * c.tanh()
                else:
                    (i_r, i_z, i_n), (h_r, h_z, h_n) = gi.chunk(3, -1), gh.chunk(3, -1)
                    r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
                    h = (1 - z) * (i_n + r * h_n).tanh() + z * h
                outputs.append(h)
            inputs = outputs
        return inputs[-1].reshape(*batch, self.out_dim)


class DuelingHead(nn.Module):
    """Q = V + A - mean(A) on top of a feature vector (Wang et al. 2016)."""

    def __init__(self, in_dim: int, num_actions: int, net_spec: NetSpec, hid_layers: list[int]):
        super().__init__()
        self.value = build_mlp(in_dim, 1, net_spec, hid_layers)
        self.advantage = build_mlp(in_dim, num_actions, net_spec, hid_layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(-1, keepdim=True)


def build_torso(obs_shape: tuple[int, ...], net_spec: NetSpec) -> tuple[nn.Module, int]:
    """Feature extractor for an observation shape: identity for vectors, ConvTorso for images,
    StatelessRecurrentTorso for StatelessRecurrentNet."""
    if net_spec.type in ("ConvNet", "DuelingConvNet"):
        torso = ConvTorso(obs_shape, net_spec)
        return torso, torso.out_dim
    if net_spec.type == "StatelessRecurrentNet":
        if len(obs_shape) != 1:
            raise SpecError("agent.net.type", f"StatelessRecurrentNet reads vector observations; these have shape "
                            f"{list(obs_shape)} (use ConvNet)")
        torso = StatelessRecurrentTorso(obs_shape[0], net_spec)
        return torso, torso.out_dim
    return nn.Flatten(-len(obs_shape)) if len(obs_shape) > 1 else nn.Identity(), int(torch.tensor(obs_shape).prod())


def build_q_net(obs_shape: tuple[int, ...], num_actions: int, net_spec: NetSpec) -> nn.Module:
    """Q-network: torso, then an MLP head (dueling for the Dueling* types)."""
    torso, feat_dim = build_torso(obs_shape, net_spec)
    if net_spec.type.startswith("Dueling"):
        # the dueling streams share the torso; the last hidden width is split into V and A streams
        shared, stream = net_spec.hid_layers[:-1], net_spec.hid_layers[-1:]
        trunk = build_mlp(feat_dim, shared[-1], net_spec, shared[:-1]) if shared else nn.Identity()
        head = DuelingHead(shared[-1] if shared else feat_dim, num_actions, net_spec, stream)
        return nn.Sequential(torso, trunk, ACTIVATIONS[net_spec.hid_layers_activation]() if shared else nn.Identity(),
                             head)
    head = build_mlp(feat_dim, num_actions, net_spec)
    # vector observations: the bare MLP, so the actor's state dict matches TorchRL's `QValueActor(MLP(...))`
    return head if isinstance(torso, nn.Identity) else nn.Sequential(torso, head)


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_prob(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log-density of Normal(loc, scale) at `x`."""
    return -((x - loc) / scale).pow(2) / 2 - scale.log() - HALF_LOG_2PI


def tanh_normal_log_prob(u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """log-density of a = mid + half * tanh(u), u ~ Normal(loc, scale), summed over the action dims, as TorchRL's
    `TanhNormal`: the change of variables log|da/du| = log(half) + 2 (log 2 - u - softplus(-2u))."""
    normal = normal_log_prob(u, loc, scale)  # before the Jacobian: keeps autograd's summation order (bit-exact runs)
    log_det = half.log() + 2 * (math.log(2) - u - F.softplus(-2 * u))
    return (normal - log_det).sum(-1)
