"""Broadcasts, DistributedOptimizer (its ops, synchronize and skip_synchronize) and the
replica check, at any world size."""
import contextlib
import copy
import gc
import pickle

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import distributed, nn, optim
from numpy_dl.distributed import DistributedOptimizer, ReplicaMismatchError
from numpy_dl.distributed.adasum import adasum_in_tree_order
from numpy_dl.distributed.broadcast import _whole_buffers
from numpy_dl.nn.utils import clip_grad_norm_

from distributed_helpers import (PROBE_SHAPES, WORLD, Probe, adasum_reference, backward_known,
                                 combined_reference, digest, global_batch, known_gradient,
                                 local_part, mse, needs_power_of_two_world, on_every_rank,
                                 small_model)

comm = WORLD
LOCAL_BATCH, STEPS = 4, 20


class RecordingComm:
    """The world communicator, recording every array passed to allreduce_."""

    def __init__(self, inner):
        self.inner, self.reduced, self.step = inner, [], 0

    def allreduce_(self, array, op="sum"):
        self.reduced.append(array)
        return self.inner.allreduce_(array, op)

    def iallreduce_(self, array, op="sum"):
        self.reduced.append(array)
        return self.inner.iallreduce_(array, op)

    def duplicate(self):
        twin = RecordingComm(self.inner.duplicate())
        twin.reduced = self.reduced  # one record of both
        return twin

    def __getattr__(self, name):
        return getattr(self.inner, name)


# ---------------------------------------------------------------------------- broadcasts
@pytest.mark.parametrize("with_optimizer", [True, False])
def test_broadcast_parameters_makes_differently_seeded_ranks_equal(with_optimizer):
    model = small_model(seed=100 + comm.rank, batch_norm=True)
    model(ndl.tensor(np.full((4, 6), comm.rank, dtype=np.float32)))  # rank-specific BN stats
    optimizer = optim.Adam(model.parameters()) if with_optimizer else None
    root_before = comm.bcast_object(digest(model.state_dict()))
    distributed.broadcast_parameters(model, comm)
    digests = on_every_rank(comm, digest(model.state_dict()))
    assert digests == [root_before] * comm.size
    if optimizer is not None:  # still views into the optimizer's flat buffer
        flat = optimizer.flat_groups[0]
        assert all(param.data is view for param, view in zip(flat.params, flat.data_views))


def test_flat_parameters_go_as_one_message():
    model = small_model(seed=0)
    params = [param.data for param in model.parameters()]
    assert len(_whole_buffers(params)) == len(params)
    flat = optim.SGD(model.parameters()).flat_groups[0]
    params = [param.data for param in model.parameters()]
    assert [message is flat.data for message in _whole_buffers(params)] == [True]
    assert len(_whole_buffers(params[1:])) == len(params) - 1  # a partial cover goes apart


def test_broadcast_parameters_rejects_models_that_differ():
    if comm.size == 1:
        pytest.skip("needs two ranks with different models")
    model = small_model(seed=0) if comm.rank == 0 else nn.Sequential(nn.Linear(6, 5))
    with pytest.raises(ValueError, match="model differs from rank 0"):
        distributed.broadcast_parameters(model, comm)


def test_broadcast_optimizer_state_includes_hyper_parameters():
    model = small_model(seed=comm.rank)
    optimizer = optim.Adam(model.parameters(), lr=0.01 * (comm.rank + 1), betas=(0.8, 0.9))
    for param in model.parameters():
        param.grad = np.random.default_rng(comm.rank).normal(size=param.shape).astype(np.float32)
    optimizer.step()
    root_state = comm.bcast_object(optimizer.state_dict())
    distributed.broadcast_optimizer_state(DistributedOptimizer(optimizer, comm=comm), comm)
    state = optimizer.state_dict()
    everyone = on_every_rank(comm, (digest({f"{i}/{k}": v for i, entry in state["state"].items()
                                            for k, v in entry.items()}), state["param_groups"]))
    assert state["param_groups"] == root_state["param_groups"]
    assert state["param_groups"][0]["lr"] == 0.01
    assert all(other == everyone[0] for other in everyone)


# ---------------------------------------------------------------------------- equivalence
def train_distributed(make_optimizer, passes=1, compression=None, steps=STEPS, **options):
    """`steps` updates on this rank's share of the global batches, after a broadcast from
    a rank-specific initialisation."""
    model = small_model(seed=comm.rank)
    optimizer = DistributedOptimizer(make_optimizer(model.parameters()), comm=comm,
                                     backward_passes_per_step=passes, compression=compression,
                                     **options)
    distributed.broadcast_parameters(model, comm)
    for batch in range(steps * passes):
        x, y = global_batch(batch, LOCAL_BATCH * comm.size)
        optimizer.zero_grad()
        mse(model, local_part(x, comm), local_part(y, comm)).backward()
        optimizer.step()
    return model


def train_reference(make_optimizer, passes=1, steps=STEPS):
    """The same run in one process: each update on the `passes` global batches at once."""
    model = small_model(seed=0)
    optimizer = make_optimizer(model.parameters())
    for step in range(steps):
        batches = [global_batch(step * passes + p, LOCAL_BATCH * comm.size) for p in range(passes)]
        optimizer.zero_grad()
        mse(model, *map(np.concatenate, zip(*batches))).backward()
        optimizer.step()
    return model


OPTIMIZERS = {
    "adam": lambda params: optim.Adam(params, lr=1e-2),
    "sgd-momentum": lambda params: optim.SGD(params, lr=0.05, momentum=0.9),
}


# A bucket per parameter or two: small_model's are 96 to 16 floats.
OVERLAP = {"fused": {}, "overlap": dict(overlap=True, bucket_mb=200 / 2 ** 20)}


@pytest.mark.parametrize("overlap", OVERLAP)
@pytest.mark.parametrize("name, passes", [("adam", 1), ("sgd-momentum", 1), ("adam", 2),
                                          ("sgd-momentum", 2)])
def test_matches_single_process_on_the_global_batch(name, passes, overlap):
    model = train_distributed(OPTIMIZERS[name], passes, **OVERLAP[overlap])
    distributed.check_replicas(model, comm)
    digests = on_every_rank(comm, digest(model.state_dict()))
    reference = train_reference(OPTIMIZERS[name], passes)
    assert len(set(digests)) == 1  # bitwise replicas
    for (key, value), expected in zip(model.state_dict().items(), reference.state_dict().values()):
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=2e-5, err_msg=key)


def test_fp16_compression_stays_close_and_sends_float16():
    model = train_distributed(OPTIMIZERS["adam"], compression="fp16")
    digests = on_every_rank(comm, digest(model.state_dict()))
    reference = train_reference(OPTIMIZERS["adam"])
    recording = RecordingComm(comm)
    optimizer = DistributedOptimizer(optim.SGD(model.parameters()), comm=recording,
                                     compression="fp16")
    mse(model, *global_batch(0, 2)).backward()
    optimizer.step()
    assert len(set(digests)) == 1
    assert [array.dtype for array in recording.reduced] == [np.float16]  # grads + flags
    for value, expected in zip(model.state_dict().values(), reference.state_dict().values()):
        np.testing.assert_allclose(value, expected, rtol=0.05, atol=0.01)


def test_replica_check_catches_a_perturbed_rank():
    if comm.size == 1:
        pytest.skip("needs two ranks to disagree")
    model = train_distributed(OPTIMIZERS["adam"], steps=2)
    distributed.check_replicas(model, comm)
    if comm.rank == comm.size - 1:
        model[2].bias.data[0] += 1e-3
    with pytest.raises(ReplicaMismatchError, match=r"'2.bias'.*\[\[0.*\], \[%d\]\]" % (comm.size - 1)):
        distributed.check_replicas(model, comm)


# ---------------------------------------------------------------------------- gradients
class TwoHeads(nn.Module):
    """`shared` gets a gradient on every rank, `last` only on the last rank (a branch
    taken by that rank's data alone), `unused` nowhere."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Parameter(np.zeros(3, dtype=np.float32))
        self.last = nn.Parameter(np.zeros(2, dtype=np.float32))
        self.unused = nn.Parameter(np.zeros(2, dtype=np.float32))

    def loss(self, use_last):
        loss = (self.shared * float(comm.rank + 1)).sum()
        return loss + (self.last * 7.0).sum() if use_last else loss


def test_ranks_agree_on_which_parameters_have_gradients():
    model = TwoHeads()
    recording = RecordingComm(comm)
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.0), comm=recording)
    model.loss(use_last=True).backward()  # leaves stale values in every slot of the buffer
    optimizer.step()
    optimizer.zero_grad()
    recording.reduced.clear()
    model.loss(use_last=comm.rank == comm.size - 1).backward()
    optimizer.synchronize()
    flat = optimizer.flat_groups[0]
    assert [array is flat.message for array in recording.reduced] == [True]  # grads + flags
    np.testing.assert_allclose(model.shared.grad, np.full(3, (comm.size + 1) / 2))
    np.testing.assert_allclose(model.last.grad, np.full(2, 7.0 / comm.size))
    assert model.unused.grad is None
    assert model.last.grad.base is flat.message


# ---------------------------------------------------------------------------- overlap
def three_layers():
    ndl.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 3))


@pytest.mark.parametrize("passes", [1, 2])
def test_overlap_starts_the_buckets_in_reverse_order_during_the_last_backward(passes):
    model = three_layers()
    recording = RecordingComm(comm)
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), comm=recording,
                                     backward_passes_per_step=passes, overlap=True,
                                     bucket_mb=300 * 4 / 2 ** 20)
    flat = optimizer.flat_groups[0]
    reference = three_layers()
    reference_optimizer = DistributedOptimizer(optim.SGD(reference.parameters(), lr=0.1),
                                               comm=comm, backward_passes_per_step=passes)
    for number in range(passes):
        x, y = global_batch(number, LOCAL_BATCH * comm.size)
        for net, opt in ((model, optimizer), (reference, reference_optimizer)):
            opt.zero_grad()
            mse(net, local_part(x, comm), local_part(y, comm)).backward()
            if net is model:
                started = list(recording.reduced)
            opt.step()
        if number < passes - 1:
            assert started == []  # only the pass whose step() updates starts buckets
    # Buckets of >= 300 floats from the back: 2.bias, 2.weight, 1.bias, 1.weight (3 + 48 +
    # 16 + 256 floats), then what is left: 0.bias, 0.weight (16 + 96).
    assert [array.size for array in started] == [323, 112]
    address = lambda array: array.__array_interface__["data"][0]  # noqa: E731
    assert [address(array) for array in started] == [address(flat.grad[112:]), address(flat.grad)]
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(ours.data, theirs.data)


def test_overlap_ranks_agree_on_which_parameters_have_gradients():
    model = TwoHeads()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.0), comm=comm,
                                     overlap=True, bucket_mb=1e-6)
    model.loss(use_last=True).backward()
    optimizer.step()
    optimizer.zero_grad()
    model.loss(use_last=comm.rank == comm.size - 1).backward()
    optimizer.synchronize()
    np.testing.assert_allclose(model.shared.grad, np.full(3, (comm.size + 1) / 2))
    np.testing.assert_allclose(model.last.grad, np.full(2, 7.0 / comm.size))
    assert model.unused.grad is None


def test_overlap_refuses_to_touch_gradients_in_flight():
    model = three_layers()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters()), comm=comm, overlap=True)
    x, y = global_batch(0, LOCAL_BATCH)
    mse(model, x, y).backward()
    with pytest.raises(RuntimeError, match="already being all-reduced.*call step"):
        mse(model, x, y).backward()
    optimizer.step()  # every rank started the same buckets: this completes them
    accumulating = DistributedOptimizer(optim.SGD(model.parameters()), comm=comm,
                                        overlap=True, backward_passes_per_step=2)
    mse(model, x, y).backward()
    accumulating.step()
    mse(model, x, y).backward()  # the cycle's last pass: its buckets start
    with pytest.raises(RuntimeError, match=r"zero_grad\(\) while .* inside a cycle"):
        accumulating.zero_grad()
    accumulating.step()


class EncoderDecoder(nn.Module):
    """Two layers, each with an optimizer of its own; `encoder` gets no gradient on odd
    ranks, so their buckets start at different times on different ranks."""

    def __init__(self):
        super().__init__()
        ndl.manual_seed(4)
        self.encoder, self.decoder = nn.Linear(2, 3), nn.Linear(2, 3)

    def loss(self, x):
        loss = (self.decoder(x * (comm.rank + 1)) ** 2).sum()
        return loss + self.encoder(x).sum() if comm.rank % 2 == 0 else loss


@pytest.mark.parametrize("order", ["encoder first", "decoder first"])
def test_overlapped_optimizers_and_the_users_collectives_never_mix(order):
    """Each optimizer's buckets travel on a communicator of their own: the user's
    all-reduce between backward and step() and the other optimizer's buckets come in
    another order on different ranks, and every sum is still right."""
    results = {}
    for overlap in (False, True):
        model = EncoderDecoder()
        optimizers = [DistributedOptimizer(optim.SGD(part.parameters(), lr=0.1), comm=comm,
                                           overlap=overlap, bucket_mb=1e-6)
                      for part in (model.encoder, model.decoder)]
        if order == "decoder first":
            optimizers.reverse()
        for step in range(3):
            x = ndl.tensor(np.full((4, 2), step + 1.0, dtype=np.float32))
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss = model.loss(x)
            loss.backward()
            loss_sum = comm.allreduce_(np.array([loss.item()]))  # the user's own collective
            for optimizer in optimizers:
                optimizer.step()
        results[overlap] = (digest(model.state_dict()), float(loss_sum[0]))
    assert results[True] == results[False]
    assert len(set(on_every_rank(comm, results[True]))) == 1


def test_overlap_lets_a_backward_without_step_be_dropped_by_zero_grad():
    """A GAN's loop: the generator's backward also gives the discriminator's parameters
    gradients (starting its buckets), which the discriminator's zero_grad() drops."""
    def train(overlap):
        ndl.manual_seed(5)
        generator, discriminator = nn.Linear(2, 3), nn.Linear(3, 1)
        g_opt, d_opt = (DistributedOptimizer(optim.SGD(part.parameters(), lr=0.1), comm=comm,
                                             overlap=overlap, bucket_mb=1e-6)
                        for part in (generator, discriminator))
        z = ndl.tensor(np.full((4, 2), comm.rank + 1.0, dtype=np.float32))
        real = ndl.tensor(np.ones((4, 3), dtype=np.float32))
        for _ in range(3):
            d_opt.zero_grad()
            (discriminator(real).mean() - discriminator(generator(z).detach()).mean()).backward()
            d_opt.step()
            g_opt.zero_grad()
            discriminator(generator(z)).mean().backward()
            g_opt.step()
        return digest({**generator.state_dict(), **discriminator.state_dict()})
    assert train(True) == train(False)


def test_only_the_newest_wrapper_of_an_optimizer_reduces_it():
    model = three_layers()
    inner = optim.SGD(model.parameters(), lr=0.0)
    first = DistributedOptimizer(inner, comm=comm, overlap=True)  # still referenced
    second = DistributedOptimizer(inner, comm=comm, overlap=True)
    x, y = global_batch(0, LOCAL_BATCH * comm.size)
    mse(model, local_part(x, comm), local_part(y, comm)).backward()
    assert not first._buckets.in_flight
    second.synchronize()
    reference = three_layers()
    mse(reference, x, y).backward()
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(ours.grad, theirs.grad, rtol=1e-5, atol=1e-7)


def test_copies_and_pickles_of_a_model_leave_the_optimizers_hooks_behind():
    model = three_layers()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters()), comm=comm, overlap=True)
    twin = copy.deepcopy(model)
    assert all(not param._post_accumulate_hooks for param in twin.parameters())
    assert all(param._post_accumulate_hooks for param in model.parameters())
    x, y = global_batch(0, LOCAL_BATCH)
    mse(twin, x, y).backward()  # the copy's backward is none of the optimizer's business
    assert not optimizer._buckets.in_flight
    restored = pickle.loads(pickle.dumps(model))
    assert all(not param._post_accumulate_hooks for param in restored.parameters())


def test_overlap_is_automatic_across_nodes_only():
    across_nodes = EqualRanks(4)
    across_nodes.ranks_per_node = 2
    assert DistributedOptimizer(optim.SGD(three_layers().parameters()), comm=across_nodes).overlap
    assert not DistributedOptimizer(optim.SGD(three_layers().parameters()),
                                    comm=EqualRanks(4)).overlap
    assert not DistributedOptimizer(optim.SGD(three_layers().parameters()), comm=across_nodes,
                                    deterministic=True, micro_batches=8).overlap
    assert not DistributedOptimizer(optim.SGD(three_layers().parameters()), comm=across_nodes,
                                    op=distributed.Adasum).overlap


def test_overlap_hooks_go_with_the_optimizer():
    model = three_layers()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters()), comm=comm, overlap=True)
    assert all(len(param._post_accumulate_hooks) == 1 for param in model.parameters())
    del optimizer
    gc.collect()
    assert all(not param._post_accumulate_hooks for param in model.parameters())


def test_accumulates_k_passes_then_updates_once():
    model = TwoHeads()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=1.0), comm=comm,
                                     backward_passes_per_step=3)
    for _ in range(2):
        optimizer.zero_grad()
        model.loss(use_last=False).backward()
        optimizer.step()
    assert np.all(model.shared.data == 0)
    np.testing.assert_allclose(model.shared.grad, 2 * (comm.rank + 1))  # summed, not yet sent
    with pytest.raises(RuntimeError, match="does not update"):
        DistributedOptimizer(optim.SGD(TwoHeads().parameters()), comm=comm,
                             backward_passes_per_step=3).synchronize()
    optimizer.zero_grad()
    model.loss(use_last=False).backward()
    optimizer.step()  # the mean of 3 passes, averaged over ranks: (size + 1) / 2
    np.testing.assert_allclose(model.shared.data, np.full(3, -(comm.size + 1) / 2))
    optimizer.zero_grad()
    assert model.shared.grad is None


@pytest.mark.parametrize("inner", [optim.Adam, optim.SGD])
def test_the_update_uses_the_average_which_grad_shows(inner):
    """The update is the wrapped optimizer's on the averages, `.grad` shows the average,
    and a backward after the step adds to the average."""
    model, eager = TwoHeads(), TwoHeads()
    optimizer = DistributedOptimizer(inner(model.parameters(), lr=0.1), comm=comm)
    reference = inner(eager.parameters(), lr=0.1)
    for each in (model, eager):
        each.loss(use_last=True).backward()
    optimizer.step()
    eager.shared.grad = np.full(3, (comm.size + 1) / 2, np.float32)  # the averages
    eager.last.grad = np.full(2, 7.0, np.float32)
    reference.step()
    np.testing.assert_allclose(model.shared.data, eager.shared.data, rtol=1e-6)
    np.testing.assert_allclose(model.last.data, eager.last.data, rtol=1e-6)
    model.loss(use_last=False).backward()  # accumulates onto the average
    np.testing.assert_allclose(model.shared.grad, np.full(3, (comm.size + 1) / 2 + comm.rank + 1))
    np.testing.assert_allclose(model.last.grad, np.full(2, 7.0))
    optimizer.step()
    optimizer.zero_grad()
    assert model.shared.grad is None
    model.loss(use_last=False).backward()  # a fresh gradient is this rank's own
    np.testing.assert_allclose(model.shared.grad, np.full(3, comm.rank + 1))


class EqualRanks:
    """A communicator of `size` ranks that all hold this rank's arrays: a sum is `size`
    times them."""
    rank = 0

    def __init__(self, size):
        self.size, self.step, self.ranks_per_node = size, 0, size

    def duplicate(self):
        return self

    def allreduce_(self, array, op="sum"):
        array *= self.size
        return array


def stepped_on_four_ranks(dtype=np.float32, grad=1.0):
    layer = nn.Linear(2, 1)
    if dtype != np.float32:
        layer.weight, layer.bias = nn.Parameter(layer.weight.data.astype(dtype)), None
    optimizer = DistributedOptimizer(optim.Adam(layer.parameters(), lr=0.1), comm=EqualRanks(4))
    for param in layer.parameters():
        param.grad = np.full(param.shape, grad, dtype)
    before = layer.weight.data.copy()
    optimizer.step()
    return layer, before


def test_a_new_optimizer_or_a_copy_sees_the_averaged_gradients():
    import copy
    import pickle
    layer, _ = stepped_on_four_ranks()
    optim.SGD(layer.parameters(), lr=0.1)  # a second optimizer takes the parameters over
    np.testing.assert_array_equal(layer.weight.grad, [[1.0, 1.0]])
    layer, _ = stepped_on_four_ranks()
    copied, pickled = copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))
    for each in (copied, pickled, layer):
        np.testing.assert_array_equal(each.weight.grad, [[1.0, 1.0]])
    assert copied.weight.grad.base is not layer.weight.grad.base


def test_float16_gradients_summed_over_ranks_do_not_overflow_adam():
    layer, before = stepped_on_four_ranks(np.float16, grad=100.0)  # (4 x 100)^2 > 65504
    np.testing.assert_allclose(layer.weight.data, before - 0.1, atol=2e-3)


@pytest.mark.parametrize("horovod_spelling", [False, True])
def test_synchronize_lets_the_averaged_gradients_be_clipped(horovod_spelling):
    """opt.synchronize(); clip; opt.step(), or Horovod's step() inside skip_synchronize():
    one message, and the update takes the clipped averages."""
    model = small_model(seed=0)
    recording = RecordingComm(comm)
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), comm=recording)
    before = [param.data.copy() for param in model.parameters()]
    x, y = global_batch(0, LOCAL_BATCH * comm.size)
    mse(model, local_part(x, comm), local_part(y, comm)).backward()
    optimizer.synchronize()
    norm = clip_grad_norm_(model.parameters(), 1e-3)
    clipped = [param.grad.copy() for param in model.parameters()]
    with optimizer.skip_synchronize() if horovod_spelling else contextlib.nullcontext():
        optimizer.step()
    digests = on_every_rank(comm, digest(model.state_dict()))
    assert len(recording.reduced) == 1  # one message; step() did not average again
    assert norm > 1e-3 and len(set(digests)) == 1
    assert recording.step == 1
    for param, old, grad in zip(model.parameters(), before, clipped):
        np.testing.assert_allclose(param.data, old - 0.1 * grad, rtol=1e-6, atol=1e-9)


def test_skip_synchronize_refuses_an_update_on_unsynchronized_gradients():
    model = TwoHeads()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=1.0), comm=comm,
                                     backward_passes_per_step=2)
    with optimizer.skip_synchronize():
        model.loss(use_last=False).backward()
        optimizer.step()  # the first of two passes does not update: allowed
        model.loss(use_last=False).backward()
        with pytest.raises(RuntimeError, match="synchronize\\(\\) has not combined"):
            optimizer.step()
    assert np.all(model.shared.data == 0)
    np.testing.assert_allclose(model.shared.grad, 2 * (comm.rank + 1))  # still this rank's own
    optimizer.step()  # outside again: the refused step, averaging as usual
    np.testing.assert_allclose(model.shared.data, np.full(3, -(comm.size + 1) / 2))


# ---------------------------------------------------------------------------- op=
def probe_after_passes(op, passes, gradient=known_gradient, compression=None, **options):
    """A Probe after `passes` backward passes of `gradient(rank, number)` on every rank
    and synchronize(), its `.grad` now the combined gradients; and its optimizer, whose
    step() is still to come."""
    model = Probe()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=1.0), comm=comm, op=op,
                                     backward_passes_per_step=passes, compression=compression,
                                     **options)
    for number in range(passes):
        backward_known(model, gradient(comm.rank, number))
        if number < passes - 1:
            optimizer.step()
    optimizer.synchronize()
    return model, optimizer


@pytest.mark.parametrize("passes", [1, 3])
@pytest.mark.parametrize("op, compression, overlap", [
    (distributed.Average, None, "fused"), (distributed.Sum, None, "fused"),
    (distributed.Sum, "fp16", "fused"), (distributed.Average, None, "overlap"),
    (distributed.Sum, None, "overlap"), (distributed.Average, "fp16", "overlap"),
    (distributed.Sum, "fp16", "overlap"),
    pytest.param(distributed.Adasum, None, "fused", marks=needs_power_of_two_world)])
def test_each_op_combines_gradients_as_defined(op, compression, passes, overlap):
    model, optimizer = probe_after_passes(op, passes, compression=compression,
                                          **OVERLAP[overlap])
    grads = {name: getattr(model, name).grad.copy() for name in PROBE_SHAPES}
    optimizer.step()
    values = {name: getattr(model, name).data.copy() for name in PROBE_SHAPES}
    everyone = on_every_rank(comm, digest(values))
    expected = combined_reference(op, [[known_gradient(rank, number) for number in range(passes)]
                                       for rank in range(comm.size)], passes)
    tolerance = dict(rtol=1e-2, atol=5e-3) if compression else dict(rtol=1e-5, atol=1e-6)
    assert len(set(everyone)) == 1
    for name in PROBE_SHAPES:
        np.testing.assert_allclose(grads[name], expected[name], err_msg=name, **tolerance)
        np.testing.assert_array_equal(values[name], -grads[name])  # SGD, lr=1, from zeros


def whole_number_gradient(rank, number):
    """Whole numbers below 2^19, whose sums over up to 32 passes float32 holds exactly in
    any order. With this seed, at 1, 2, 3, 4 and 8 ranks some of the sums times
    float32(1 / (3 x ranks)) differ in the last bit from the sums divided by 3 x ranks."""
    rng = np.random.default_rng([10, rank, number])
    return {name: rng.integers(0, 2 ** 19, size=shape).astype(np.float32)
            for name, shape in PROBE_SHAPES.items()}


def test_average_multiplies_the_sum_by_the_float32_reciprocal_of_the_passes():
    """The bits of Average: the sum times float32(1 / (ranks x passes)), as it always was,
    not a division."""
    passes = 3
    model, _ = probe_after_passes(distributed.Average, passes, whole_number_gradient)
    grads = {name: getattr(model, name).grad.copy() for name in PROBE_SHAPES}
    reciprocal = np.float32(1.0 / (comm.size * passes))
    for name in PROBE_SHAPES:
        total = sum(whole_number_gradient(rank, number)[name]
                    for rank in range(comm.size) for number in range(passes))
        np.testing.assert_array_equal(grads[name], total * reciprocal, err_msg=name)


class PairedWith:
    """A world of two in which this rank is `rank` and the other one sends `other`."""
    size, step = 2, 0

    def __init__(self, rank, other):
        self.rank, self.other = rank, other

    def exchange_(self, send, receive, partner):
        receive[...] = self.other
        return receive


def test_both_ranks_of_an_adasum_pair_get_the_same_bits():
    """Parameters of 3, 0, 4 and 5 values (the 4 all zero on rank 1), then counters."""
    bounds = np.cumsum([0, 3, 0, 4, 5])
    slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    rng = np.random.default_rng(3)
    low, high = (np.concatenate([rng.normal(size=12), [1, 0, 1, 1, 2]]).astype(np.float32)
                 for _ in range(2))
    high[slices[2]] = 0
    on_rank_0 = adasum_in_tree_order(low.copy(), slices, PairedWith(0, high))
    on_rank_1 = adasum_in_tree_order(high.copy(), slices, PairedWith(1, low))
    np.testing.assert_array_equal(on_rank_0, on_rank_1)
    np.testing.assert_array_equal(on_rank_0[12:], [2, 0, 2, 2, 4])  # counters are summed
    np.testing.assert_array_equal(on_rank_0[slices[2]], low[slices[2]])  # adasum(a, 0) = a
    for where in slices:
        expected = adasum_reference([low[where].astype(np.float64),
                                     high[where].astype(np.float64)])
        np.testing.assert_allclose(on_rank_0[where], expected, rtol=1e-6)


@needs_power_of_two_world
def test_adasum_keeps_a_shared_gradient_and_adds_orthogonal_ones():
    def gradient(rank, number):
        orthogonal = np.zeros(PROBE_SHAPES["b"], dtype=np.float32)
        orthogonal.flat[rank] = rank + 1
        return {"a": np.array([1.0, -2.0, 0.5], dtype=np.float32),  # the same on every rank
                "b": orthogonal,                                      # rank r's own axis
                "c": np.full(5, 3.0, dtype=np.float32) if rank == 0 else None}  # zero elsewhere
    model, _ = probe_after_passes(distributed.Adasum, 1, gradient)
    grads = {name: getattr(model, name).grad.copy() for name in PROBE_SHAPES}
    everyone = on_every_rank(comm, digest(grads))
    assert len(set(everyone)) == 1
    np.testing.assert_array_equal(grads["a"], [1.0, -2.0, 0.5])
    np.testing.assert_array_equal(grads["b"].flat[:comm.size], np.arange(1, comm.size + 1))
    np.testing.assert_array_equal(grads["b"].flat[comm.size:], 0)
    np.testing.assert_array_equal(grads["c"], np.full(5, 3.0))


def test_wraps_the_optimizer_transparently():
    model = small_model(seed=0)
    inner = optim.Adam(model.parameters(), lr=0.1)
    optimizer = DistributedOptimizer(inner, comm=comm)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scheduler.step()
    assert optimizer.param_groups is inner.param_groups
    assert optimizer.defaults == inner.defaults
    assert optimizer.state_dict() == inner.state_dict()
    assert inner.param_groups[0]["lr"] == 0.05
    assert "Adam" in repr(optimizer)


def test_rejects_bad_arguments():
    inner = optim.SGD(small_model(seed=0).parameters())
    with pytest.raises(TypeError, match="numpy_dl optimizer"):
        DistributedOptimizer(object())
    with pytest.raises(TypeError, match="already distributed"):
        DistributedOptimizer(DistributedOptimizer(inner))
    with pytest.raises(ValueError, match="backward_passes_per_step"):
        DistributedOptimizer(inner, backward_passes_per_step=0)
    with pytest.raises(ValueError, match="compression"):
        DistributedOptimizer(inner, compression="int8")
    with pytest.raises(ValueError, match="op must be distributed.Average, Sum or Adasum"):
        DistributedOptimizer(inner, op="mean")
    with pytest.raises(ValueError, match="Adasum takes no compression"):
        DistributedOptimizer(inner, op=distributed.Adasum, compression="fp16")
    with pytest.raises(ValueError, match="power-of-two number of ranks.*got 6"):
        DistributedOptimizer(inner, comm=EqualRanks(6), op=distributed.Adasum)
    with pytest.raises(ValueError, match="deterministic mode averages"):
        DistributedOptimizer(inner, comm=EqualRanks(2), op=distributed.Sum, deterministic=True)
    with pytest.raises(ValueError, match="overlap must be True, False or None"):
        DistributedOptimizer(inner, overlap="yes")
    for bucket_mb in (0, -1, "0.5"):
        with pytest.raises(ValueError, match="bucket_mb must be a number of MiB > 0"):
            DistributedOptimizer(inner, bucket_mb=bucket_mb)
    with pytest.raises(ValueError, match="take overlap=False"):
        DistributedOptimizer(inner, comm=EqualRanks(2), op=distributed.Adasum, overlap=True)
    with pytest.raises(ValueError, match="take overlap=False"):
        DistributedOptimizer(inner, comm=EqualRanks(2), deterministic=True, overlap=True)
    with pytest.raises(ValueError, match="counts up to 2048 backward passes exactly.*4096"):
        DistributedOptimizer(inner, comm=EqualRanks(1024), backward_passes_per_step=4,
                             compression="fp16")


@pytest.fixture
def without_mpi_float16():
    """The MPI communicator as on an MPI without a float16 datatype (Open MPI 4.1): its
    float16 sums take the user-defined op over 16-bit words."""
    if not hasattr(comm, "native_float16"):
        pytest.skip("needs the MPI communicator (run under mpirun)")
    native, comm.native_float16 = comm.native_float16, False
    yield
    comm.native_float16 = native


@pytest.mark.parametrize("overlap", OVERLAP)
def test_fp16_compression_on_an_mpi_without_float16(without_mpi_float16, overlap):
    portable = train_distributed(OPTIMIZERS["adam"], compression="fp16", **OVERLAP[overlap])
    assert len(set(on_every_rank(comm, digest(portable.state_dict())))) == 1
    reference = train_reference(OPTIMIZERS["adam"])
    for value, expected in zip(portable.state_dict().values(), reference.state_dict().values()):
        np.testing.assert_allclose(value, expected, rtol=0.05, atol=0.01)


@pytest.mark.parametrize("scale", [1.0, 1e-6])  # 1e-6: subnormal in float16
def test_float16_sums_match_float16_rounding(scale):
    """The float16 user op's sums (on any MPI) against NumPy's float16 additions in rank
    order, where the order of two or three operands cannot change a rounded sum."""
    values = (np.random.default_rng(comm.rank).standard_normal(1001) * scale).astype(np.float16)
    summed = comm.allreduce_(values.copy())
    assert summed.dtype == np.float16
    everyone = [(np.random.default_rng(r).standard_normal(1001) * scale).astype(np.float16)
                for r in range(comm.size)]
    if comm.size <= 2:
        np.testing.assert_array_equal(summed, sum(everyone[1:], everyone[0]))
    np.testing.assert_allclose(summed, np.sum(np.float64(everyone), axis=0),
                               rtol=2e-3 * comm.size, atol=2e-3 * scale)
    assert len(set(on_every_rank(comm, summed.tobytes()))) == 1


def test_float16_maxima_need_an_mpi_float16_type(without_mpi_float16):
    values = np.random.default_rng(comm.rank).standard_normal(1001).astype(np.float16)
    with pytest.raises(ValueError, match="only op='sum' is implemented for float16"):
        comm.allreduce_(values.copy(), op="max")
