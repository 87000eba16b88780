"""watch() on code written elsewhere: the Transformer language model of pytorch/examples (F.relu
inside nn.TransformerEncoderLayer) and a GAN generator written with F.relu, trained for real.
The activations' rows are checked against the naive per-unit reference, and a generator layer
pushed dead must turn `dead_relu` red with the layer named."""

from __future__ import annotations

from pathlib import Path
from pydoc_data import topics

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.collectors.test_activations import assert_same, by_layer, naive_windows, watch
from tests.support.word_language_model import TransformerModel
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.schema import StoreLayout


def corpus(n_tokens: int) -> tuple[torch.Tensor, int]:
    """Word ids of Python's own documentation text (shipped with the interpreter)."""
    words = " ".join(topics.topics.values()).split()[:n_tokens]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    return torch.tensor([vocab[w] for w in words]), len(vocab)


def test_transformer_lm_feed_forward_relus_are_watched_per_feature() -> None:
    torch.manual_seed(0)
    data, ntokens = corpus(3000)
    bsz, bptt, nhid = 8, 16, 64
    batches = data[: data.size(0) // bsz * bsz].view(bsz, -1).t().contiguous()  # main.py's batchify
    model = TransformerModel(ntokens, ninp=32, nhead=2, nhid=nhid, nlayers=2, dropout=0.2)
    relus: dict[str, list[torch.Tensor]] = {"0": [], "1": []}
    for i, layer in enumerate(model.encoder.layers):
        layer.linear1.register_forward_hook(  # type: ignore[union-attr]
            lambda m, a, out, i=i: relus[str(i)].append(out.detach().clamp(min=0))
        )
    watcher, problems = watch(model, window=4 * bptt)  # windows count sequence positions
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for start in range(0, 12 * bptt, bptt):
        source, targets = batches[start : start + bptt], batches[start + 1 : start + 1 + bptt]
        output = model(source)
        loss = F.nll_loss(output.view(-1, ntokens), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    got = by_layer(watcher.collect())
    names = [f"encoder.layers.{i}.linear1→relu" for i in (0, 1)]
    assert set(got) == set(names)  # the (unused) decoder layers never ran
    for i, name in enumerate(names):
        assert [sum(w["hist"]) for w in got[name]] == [nhid] * 3  # units: the features
        assert_same(got[name], naive_windows(relus[str(i)], window=4 * bptt, unit_dim=-1))
    assert problems.snapshot() == {}


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(16, 64), nn.Linear(64, 64), nn.Linear(64, 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(z))
        h = F.relu(self.fc2(h))
        return torch.tanh(self.out(h))


class Discriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(x), 0.2))


def train_gan(store: Path, name: str, first_bias: float | None, steps: int = 64) -> str:
    """A GAN on random-phase sine waves; `first_bias` pushes the generator's fc1 dead."""
    torch.manual_seed(0)
    gen, disc = Generator(), Discriminator()
    if first_bias is not None:
        with torch.no_grad():
            gen.fc1.bias.fill_(first_bias)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    t = torch.linspace(0, 6.28, 32)
    bce = nn.functional.binary_cross_entropy_with_logits
    with Monitor(run=name, store=store, flush_interval=0.1) as mon:
        mon.watch(gen, every=1, window=512)
        for step in range(steps):
            real = torch.sin(t + torch.rand(64, 1) * 6.28)
            fake = gen(torch.randn(64, 16))
            d_loss = bce(disc(real), torch.ones(64, 1)) + bce(
                disc(fake.detach()), torch.zeros(64, 1)
            )
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = bce(disc(fake), torch.ones(64, 1))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            mon.log(step, loss=g_loss, d_loss=d_loss)
        return mon.run_id


def dead_relu_history(store_dir: Path, run_id: str) -> list[tuple[str, int, str]]:
    store = Store(StoreLayout.resolve(store_dir))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            return cur.execute(
                "SELECT state, step, reason FROM health WHERE run_id = ? AND signal = 'dead_relu' "
                "ORDER BY rowid",
                [run_id],
            ).fetchall()
    finally:
        store.close()


@pytest.mark.parametrize("first_bias", [None, -20.0], ids=["healthy", "fc1-pushed-dead"])
def test_gan_generator_written_with_f_relu_gets_dead_relu_verdicts(
    tmp_path: Path, first_bias: float | None
) -> None:
    history = dead_relu_history(tmp_path, train_gan(tmp_path, "gan", first_bias))
    assert history, "no dead_relu verdict at all"
    state, _, reason = history[-1]
    if first_bias is None:
        assert {s for s, _, _ in history} == {"green"}
    else:
        assert state == "red" and "layer 'fc1→relu'" in reason and "100% dead" in reason
