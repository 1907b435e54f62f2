"""The ten class decoders of ABS evaluated as one computation (the inference hot path).

The per-class Keras decoders (`abs_tf.vae.build_decoder`) are exact but run one class at a
time. Here the ten decoders become one stack with the class in the channel axis:

* BatchNorm (eval mode) is folded into the preceding transposed conv's kernel and bias.
* layer 0 (4x4 transposed conv of a 1x1 input) is a per-class dense map, one einsum;
* layers 1-2 (5x5, stride 2 transposed convs) are rewritten as stride-1 3x3 *grouped*
  convolutions producing the four 2x2 output phases, interleaved with `depth_to_space`;
* layer 3 (4x4, stride 1 transposed conv to one channel) is a depthwise 4x4 convolution of
  the zero-padded input with the spatially flipped kernel, summed over each class's channels.
* with oneDNN on, layers 1-2 instead run as grouped `Conv2DBackpropInput` (the adjoint of the
  strided grouped conv), which needs no phases; TF has no grouped CPU kernel for it without
  oneDNN.

Shapes: latents [N, 10, 8] -> decoder logits [N, 28, 28, 10] (class c in channel c); the
image of class c is sigmoid of channel c. Only input gradients are ever needed (the weights
are constants), so the weights are tf.constants, not variables.

Cost per (image, class) forward: 1.14 M multiply-adds of the original layers (2.29 MFLOP);
the phase form computes 36/25 of that for layers 1-2 because of zero taps.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NUM_CLASSES = 10
LATENT_DIM = 8

# Multiply-adds of the original decoder per (image, class), by layer, for FLOP counting.
DECODER_MACS = (1 * 1 * 8 * 16 * 32,        # convT 4x4/1: 16 output px * 32 ch * 8 in
                4 * 4 * 32 * 25 * 16,        # convT 5x5/2: 16 input px
                11 * 11 * 16 * 25 * 16,      # convT 5x5/2: 121 input px
                25 * 25 * 16 * 16 * 1)       # convT 4x4/1: 625 input px
DECODER_FLOPS = 2 * sum(DECODER_MACS)


def onednn_enabled() -> bool:
    """Whether TensorFlow runs with oneDNN (TF_ENABLE_ONEDNN_OPTS; default off on some CPUs)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def folded_decoder_weights(decoders):
    """BN-folded kernels of ten Keras decoders (layer names conv_i / bn_i, eval mode).

    Returns a list of 4 (kernel [C,kh,kw,out,in], bias [C,out]) numpy float32 pairs, where
    C = number of decoders and the kernel uses the Conv2DTranspose layout.
    """
    layers = []
    for i in range(4):
        kernels, biases = [], []
        for dec in decoders:
            kernel, bias = (np.asarray(w, np.float64) for w in dec.get_layer(f"conv_{i}").get_weights())
            try:
                bn = dec.get_layer(f"bn_{i}")
            except ValueError:
                bn = None
            if bn is not None:
                gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
                scale = gamma / np.sqrt(var + bn.epsilon)
                kernel = kernel * scale[None, None, :, None]
                bias = (bias - mean) * scale + beta
            kernels.append(kernel)
            biases.append(bias)
        layers.append((np.stack(kernels).astype(np.float32), np.stack(biases).astype(np.float32)))
    return layers


def _phase_filter(kernel):
    """[C,5,5,out,in] stride-2 transposed-conv kernels -> grouped conv filter [3,3,in,C*4*out].

    Output channel order (class, phase (py, px), out). Phase (py, px) tap (ey, ex) uses
    kernel entry (2(2-ey)+py, 2(2-ex)+px), zero where that index exceeds 4.
    """
    c, kh, kw, out, cin = kernel.shape
    assert kh == kw == 5
    f = np.zeros((3, 3, cin, c, 2, 2, out), np.float32)
    for ey in range(3):
        for ex in range(3):
            for py in range(2):
                for px in range(2):
                    ty, tx = 2 * (2 - ey) + py, 2 * (2 - ex) + px
                    if ty < 5 and tx < 5:
                        f[ey, ex, :, :, py, px, :] = kernel[:, ty, tx].transpose(2, 0, 1)  # [in, C, out]
    return f.reshape(3, 3, cin, c * 4 * out)


class StackedDecoder(tf.Module):
    """Ten decoders as one computation. Call: latents [N, C, 8] -> logits [N, 28, 28, C]."""

    def __init__(self, decoders, transposed_conv: str = "auto", name="stacked_decoder"):
        """transposed_conv: how layers 1-2 run. "backprop_input": grouped Conv2DBackpropInput
        (fastest; needs oneDNN, since TF's CPU kernel has no grouped version without it);
        "phase": stride-1 grouped convs + depth_to_space (works everywhere); "auto": the
        first when oneDNN is on."""
        super().__init__(name=name)
        if transposed_conv == "auto":
            transposed_conv = "backprop_input" if onednn_enabled() else "phase"
        if transposed_conv not in ("backprop_input", "phase"):
            raise ValueError(f"transposed_conv must be 'auto', 'backprop_input' or 'phase', got {transposed_conv!r}")
        self.transposed_conv = transposed_conv
        (k0, b0), (k1, b1), (k2, b2), (k3, b3) = folded_decoder_weights(decoders)
        self.num_classes = k0.shape[0]
        # layer 0: y[n,p,q,c,o] = sum_i z[n,c,i] k0[c,p,q,o,i]
        self.k0 = tf.constant(k0)                                         # [C,4,4,32,8]
        self.b0 = tf.constant(b0.reshape(-1))                             # [C*32], class-major
        self.c1_out, self.c2_out = k1.shape[3], k2.shape[3]
        if transposed_conv == "phase":
            self.f1 = tf.constant(_phase_filter(k1))                      # [3,3,32,C*4*16]
            self.f2 = tf.constant(_phase_filter(k2))                      # [3,3,16,C*4*16]
        self.b1 = tf.constant(b1.reshape(-1))                             # [C*16]
        self.b2 = tf.constant(b2.reshape(-1))
        self.b3 = tf.constant(b3[:, 0])                                   # [C]
        # Backward pass filters (input gradients only). The adjoint of a transposed conv is
        # a plain strided conv with the same kernel, so every backward step is a forward
        # (grouped or depthwise) convolution, which TF supports on CPU with or without oneDNN.
        self.g3 = tf.constant(np.ascontiguousarray(k3[:, :, :, 0, :].transpose(1, 2, 0, 3)))  # [4,4,C,16] depthwise
        self.g2 = tf.constant(np.ascontiguousarray(k2.transpose(1, 2, 3, 0, 4).reshape(5, 5, k2.shape[3], -1)))
        # [5,5,out,in] per class: the conv from the layer's output channels back to its input channels.
        self.g2_per_class = [tf.constant(np.ascontiguousarray(kernel)) for kernel in k2]
        self.g1 = tf.constant(np.ascontiguousarray(k1.transpose(1, 2, 3, 0, 4).reshape(5, 5, k1.shape[3], -1)))
        # layer 3 forward as a depthwise conv (per class-channel) followed by a sum over the 16
        # channels of each class: 3x faster on CPU than a grouped conv with one output per group.
        self.f3_depthwise = tf.constant(np.ascontiguousarray(
            k3[:, ::-1, ::-1, 0, :].transpose(1, 2, 0, 3).reshape(4, 4, -1, 1)))  # [4,4,C*16,1]

    def _phase_layer(self, h, filt, bias, out_ch):
        """Stride-2 5x5 transposed conv of h [N,H,W,C*in] -> [N,2H+3,2W+3,C*out]."""
        n, hh, ww = tf.shape(h)[0], h.shape[1], h.shape[2]
        hp = tf.pad(h, [[0, 0], [2, 2], [2, 2], [0, 0]])
        y = tf.nn.conv2d(hp, filt, strides=1, padding="VALID")           # [N,H+2,W+2,C*4*out]
        y = tf.reshape(y, [n, hh + 2, ww + 2, self.num_classes, 4, out_ch])
        y = tf.transpose(y, [0, 1, 2, 4, 3, 5])
        y = tf.reshape(y, [n, hh + 2, ww + 2, 4 * self.num_classes * out_ch])
        y = tf.nn.depth_to_space(y, 2)[:, :2 * hh + 3, :2 * ww + 3, :]
        return y + bias

    def _forward(self, latents):
        n = tf.shape(latents)[0]
        h0 = tf.einsum("nci,cpqoi->npqco", latents, self.k0)
        h0 = tf.nn.elu(tf.reshape(h0, [n, 4, 4, self.num_classes * 32]) + self.b0)
        if self.transposed_conv == "phase":
            h1 = tf.nn.elu(self._phase_layer(h0, self.f1, self.b1, self.c1_out))   # [N,11,11,C*16]
            h2 = tf.nn.elu(self._phase_layer(h1, self.f2, self.b2, self.c2_out))   # [N,25,25,C*16]
        else:
            # The transposed conv is the input-gradient of the strided conv used in `vjp`.
            h1 = tf.nn.elu(tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.stack([n, 11, 11, self.num_classes * self.c1_out]), filter=self.g1,
                out_backprop=h0, strides=[1, 2, 2, 1], padding="VALID") + self.b1)
            h2 = tf.nn.elu(tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.stack([n, 25, 25, self.num_classes * self.c2_out]), filter=self.g2,
                out_backprop=h1, strides=[1, 2, 2, 1], padding="VALID") + self.b2)
        per_channel = tf.nn.depthwise_conv2d(tf.pad(h2, [[0, 0], [3, 3], [3, 3], [0, 0]]), self.f3_depthwise,
                                             [1, 1, 1, 1], "VALID")               # [N,28,28,C*16]
        out = tf.reduce_sum(tf.reshape(per_channel, [n, 28, 28, self.num_classes, self.c2_out]), -1) + self.b3
        return out, (h0, h1, h2)

    def __call__(self, latents):
        return self._forward(latents)[0]

    def vjp(self, activations, upstream):
        """Input gradient of the decoder: upstream d/d logits [N,28,28,C] -> d/d latents [N,C,8].

        ``activations`` are the ELU outputs (h0, h1, h2) of the forward pass; ELU's derivative
        is 1 for positive pre-activations and h + 1 otherwise (h = exp(a) - 1).
        """
        h0, h1, h2 = activations
        n = tf.shape(upstream)[0]
        elu_grad = lambda h: 1.0 + tf.minimum(h, 0.0)   # 1 for h > 0, h + 1 = exp(a) otherwise
        d2 = tf.nn.depthwise_conv2d(upstream, self.g3, [1, 1, 1, 1], "VALID") * elu_grad(h2)  # [N,25,25,C*16]
        # Per-class strided convs beat one grouped conv here by ~2x on CPU (measured).
        d1 = tf.concat([tf.nn.conv2d(d, g, strides=2, padding="VALID")
                        for d, g in zip(tf.split(d2, self.num_classes, axis=-1), self.g2_per_class)], -1)
        d1 = d1 * elu_grad(h1)                                                                # [N,11,11,C*16]
        d0 = tf.nn.conv2d(d1, self.g1, strides=2, padding="VALID") * elu_grad(h0)          # [N,4,4,C*32]
        d0 = tf.reshape(d0, [n, 4, 4, self.num_classes, -1])
        return tf.einsum("npqco,cpqoi->nci", d0, self.k0)
