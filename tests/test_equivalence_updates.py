"""One ResNet50 training step in both APIs: every optimizer's rule, Keras's compiled `fit` (the
path the benchmark times), and the graph in NCHW against NHWC.

RMSprop's and Adam's first steps are nearly sign(g): lr g / sqrt(0.1 g^2 + eps) moves a weight
whose gradient is 1e-6 almost as far as one whose gradient is 1, so the ~1e-7 relative rounding
by which the two APIs' gradients differ becomes a visible part of those updates. The rules are
therefore compared on the *same* gradients (Keras's optimizer applied to the graph's gradients
must give the graph's update), and the gradients themselves on SGD, where an update is
proportional to its gradient.
"""
import keras
import numpy as np
import pytest

from keras_api.weights import keras_variables

from equivalence_helpers import (
    batch,
    graph_logits,
    graph_rule_steps,
    graph_steps,
    grappler_options,
    keras_model,
    keras_steps,
    snapshot,
)

pytestmark = pytest.mark.slow  # end-to-end: commands, trainings or ResNet50 in both APIs

SIZE = 32


def _pre_bn_bias(key: str) -> bool:
    """A ResNet50 conv bias: every conv is followed by a BN, which subtracts the batch mean, so
    the exact gradient of the bias is 0 and what either API computes for it is rounding noise."""
    return key.endswith("_conv/bias")


def _updates_agree(got: dict, want: dict, initial: dict, relative: float, skip=lambda key: False) -> float:
    """Every update (`after - initial`) in `got` equals `want`'s to `relative` of the tensor's
    largest update, plus two float32 spacings of its largest weight (the rounding of
    ``w - u``); returns the worst ratio |difference| / largest update seen."""
    worst = 0.0
    for key, want_after in want.items():
        if skip(key):
            continue
        update_want, update_got = want_after - initial[key], got[key] - initial[key]
        scale = float(np.abs(update_want).max())
        rounding = 2 * float(np.spacing(np.abs(initial[key]).max().astype(np.float32)))
        difference = float(np.abs(update_got - update_want).max())
        assert difference <= relative * scale + rounding, f"{key}: {difference:.3g} vs update {scale:.3g}"
        worst = max(worst, difference / scale if scale else 0.0)
    return worst


# The graph's optimizers by name and options -> the Keras optimizer with the same rule.
OPTIMIZERS = {
    "rmsprop": (("rmsprop", {}), lambda lr: keras.optimizers.RMSprop(lr, rho=0.9, momentum=0.0, epsilon=1e-7)),
    "adam": (("adam", {}), lambda lr: keras.optimizers.Adam(lr)),
    "sgd_momentum": (("sgd", {"momentum": 0.9}), lambda lr: keras.optimizers.SGD(lr, momentum=0.9)),
    "sgd_nesterov": (("sgd", {"momentum": 0.9, "nesterov": True}),
                     lambda lr: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)),
}


def test_resnet50_one_step_every_optimizer_is_kerass_rule():
    """RMSprop through the training graph's own step, the other rules applied by graph_api to
    the same gradients (`graph_rule_steps`): each equals Keras's optimizer applied to them."""
    model = keras_model("resnet50", SIZE)
    initial = snapshot(model)
    afters, grads = graph_rule_steps("resnet50", SIZE, model, {k: v[0] for k, v in OPTIMIZERS.items()},
                                     batch(SIZE, n=8))
    assert len(grads) == 214  # every trainable weight: 53 convs and 53 BNs (two each), the dense layer
    reference, start = keras.models.clone_model(model), model.get_weights()
    variables = keras_variables(reference)
    for which, (_, make_keras) in OPTIMIZERS.items():
        # Keras's optimizer on the graph's own gradients, from the same weights (`model` still holds them)
        reference.set_weights(start)
        make_keras(1e-3).apply_gradients([(grads[key], variables[key]) for key in grads])
        want = {key: after_value for key, after_value in snapshot(reference).items() if key in grads}
        assert set(afters[which]) >= set(want), which
        _updates_agree(afters[which], want, initial, relative=1e-5)


def test_one_step_through_compiled_fit_matches_the_graph():
    """`model.fit` as the benchmark runs it (compiled, not eager) against the graph's step.

    With Grappler's arithmetic optimizer off, compiled Keras computes eager Keras's sums and the
    update of every weight and BN statistic agrees to 1e-5 of its size. With Grappler as it runs
    by default, the graph is no further from compiled Keras than eager Keras is: the difference
    is the rewrite's, not the models' or the rules'.
    """
    batches = [batch(SIZE, n=8)]
    model = keras_model("resnet50", SIZE)
    initial = snapshot(model)
    graph = graph_steps("resnet50", SIZE, model, "sgd", batches)
    with grappler_options(arithmetic_optimization=False):
        compiled = keras_steps(keras_model("resnet50", SIZE), keras.optimizers.SGD(1e-3), batches, eager=False,
                               fit=True)
    _updates_agree(graph, compiled, initial, relative=1e-5, skip=_pre_bn_bias)
    for key in filter(_pre_bn_bias, compiled):  # noise: far below the update of the conv's kernel
        kernel_update = np.abs(compiled[key.replace("/bias", "/kernel")] - initial[key.replace("/bias", "/kernel")])
        for side in (graph, compiled):
            assert np.abs(side[key] - initial[key]).max() <= 1e-2 * kernel_update.max(), key
    default = keras_steps(keras_model("resnet50", SIZE), keras.optimizers.SGD(1e-3), batches, eager=False, fit=True)
    eager = keras_steps(keras_model("resnet50", SIZE), keras.optimizers.SGD(1e-3), batches)
    graph_gap = _updates_agree(graph, default, initial, relative=1.0, skip=_pre_bn_bias)
    eager_gap = _updates_agree(eager, default, initial, relative=1.0, skip=_pre_bn_bias)
    print(f"compiled fit with default Grappler: graph {graph_gap:.3g}, eager Keras {eager_gap:.3g} of an update")
    assert graph_gap <= 1.1 * eager_gap + 1e-5


def _median_gap(got: dict, want: dict, initial: dict) -> float:
    """Median over tensors (weights and BN statistics; pre-BN biases left out) of
    max |update difference| / max |update|."""
    gaps = [np.abs(got[k] - want[k]).max() / np.abs(want[k] - initial[k]).max()
            for k in want if not _pre_bn_bias(k) and np.abs(want[k] - initial[k]).max() > 0]
    return float(np.median(gaps))


def test_nchw_graph_computes_what_nhwc_does():
    """The graph in NCHW (the GPU layout; one transpose at the input, flatten back in NHWC order).

    ResNet50: inference logits agree to 1e-5. BN statistics and weight updates of a training step
    cannot: changing the input by one float32 spacing (2^-23 relative) already moves them by
    ~1.5% (median over tensors; measured at 32 px, batch 8: BN over 8 samples, 53 times, is
    that sensitive), so NCHW's median gap must stay within 3x that of such a nudge. VGG16-transfer's head, well conditioned, updates to 1e-5
    (its flatten is where a wrong NCHW order would show)."""
    from graph_api.model import pools_channels_first  # late: as the helpers, after the runtime is set
    if not pools_channels_first():
        pytest.skip("this CPU's kernels do not pool NCHW (Eigen's, without oneDNN)")
    model = keras_model("resnet50", SIZE)
    initial = snapshot(model)
    x, y = batch(SIZE, n=8)
    rng = np.random.default_rng(1)
    nudged = (x * (1 + rng.choice([-1.0, 1.0], x.shape) * 2.0 ** -23)).astype(np.float32)
    nhwc = graph_logits("resnet50", SIZE, model, x)
    assert np.abs(graph_logits("resnet50", SIZE, model, x, data_format="NCHW") - nhwc).max() <= 1e-5 * nhwc.std()
    nhwc, nudged_step = graph_steps("resnet50", SIZE, model, "sgd", [(x, y), (nudged, y)], independent=True)
    nchw = graph_steps("resnet50", SIZE, model, "sgd", [(x, y)], data_format="NCHW")
    rounding = _median_gap(nudged_step, nhwc, initial)
    layout = _median_gap(nchw, nhwc, initial)
    print(f"ResNet50 update gap: NCHW {layout:.3g}, input nudged by 2^-23 {rounding:.3g} (median over tensors)")
    assert 0 < rounding and layout <= 3 * rounding

    vgg = keras_model("vgg16_transfer", 64)
    for layer in vgg.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    vgg_initial = snapshot(vgg)
    batches = [batch(64, n=8)]
    nhwc = graph_steps("vgg16_transfer", 64, vgg, "rmsprop", batches)
    nchw = graph_steps("vgg16_transfer", 64, vgg, "rmsprop", batches, data_format="NCHW")
    _updates_agree(nchw, nhwc, vgg_initial, relative=1e-5)
