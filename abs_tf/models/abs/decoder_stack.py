"""The ten class decoders of ABS evaluated as one computation (the inference hot path).

The per-class Keras decoders (`abs_tf.models.abs.vae.build_decoder`) are exact but slow to call one by
one. Here the ten decoders run as ten independent chains of plain (non-grouped) ops inside one
graph, which TF's executor interleaves:

* BatchNorm (eval mode) is folded into the preceding transposed conv's kernel and bias.
* layer 0 (4x4 transposed conv of a 1x1 input) is a dense map: matmul + bias + ELU (oneDNN
  fuses the three);
* layers 1-2 (5x5, stride 2 transposed convs) are plain per-class `conv2d_transpose`;
* layer 3 (4x4, stride 1 transposed conv, 16 -> 1 channels) is a matmul of each pixel's 16
  channels with the [16 channels, 16 taps] kernel, followed by the overlap-add of the 16 taps
  (a small XLA-compiled function, or 16 pads and an add in plain TF where XLA is unwanted). Every conv kernel
  tried for this layer is slow because of its single output channel.
* the input gradient (`vjp`) uses per-class strided convs (the adjoints of the transposed
  convs) and `EluGrad` for the ELU derivatives.

Why per class: one op per layer with the class in the channel axis needs grouped convs, which
run at 6-26 GFLOP/s here, and splitting the classes apart for the backward costs a copy of the
largest tensor; per-class ops on batch N need neither (measured in BENCHMARKS.md).

Shapes: latents [N, 10, 8] -> decoder logits [N, 28, 28, 10] (class c in channel c); the
image of class c is sigmoid of channel c. Only input gradients are ever needed (the weights
are constants), so the weights are tf.constants, not variables.

Cost per (image, class) forward: 1.14 M multiply-adds of the original layers (2.29 MFLOP);
this formulation does the same multiply-adds plus 16 adds per layer-3 input pixel.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Multiply-adds of the original decoder per (image, class), by layer, for FLOP counting.
DECODER_MACS = (1 * 1 * 8 * 16 * 32,        # convT 4x4/1: 16 output px * 32 ch * 8 in
                4 * 4 * 32 * 25 * 16,        # convT 5x5/2: 16 input px
                11 * 11 * 16 * 25 * 16,      # convT 5x5/2: 121 input px
                25 * 25 * 16 * 16 * 1)       # convT 4x4/1: 625 input px
DECODER_FLOPS = 2 * sum(DECODER_MACS)


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


def _overlap_add_taps_plain(cols, bias):
    """Layer 3's col2im: cols [N,25,25,16] (tap dy*4+dx of each input pixel) -> [N,28,28,1] + bias.

    out[y, x] = sum over taps of cols[y - dy, x - dx, tap]: 16 shifted adds.
    """
    acc = bias
    for dy in range(4):
        for dx in range(4):
            acc = acc + tf.pad(cols[..., dy * 4 + dx], [[0, 0], [dy, 3 - dy], [dx, 3 - dx]])
    return acc[..., None]


# XLA fuses the 16 pads and adds into one pass (2.5x faster than graph mode here). Graphs that
# must run without XLA (TF Serving keeps XLA:CPU JIT off by default) use the plain version.
_overlap_add_taps_xla = tf.function(_overlap_add_taps_plain, jit_compile=True)


class StackedDecoder(tf.Module):
    """Ten decoders as one computation. Call: latents [N, C, 8] -> logits [N, 28, 28, C]."""

    def __init__(self, decoders, name="stacked_decoder"):
        super().__init__(name=name)
        (k0, b0), (k1, b1), (k2, b2), (k3, b3) = folded_decoder_weights(decoders)
        self.num_classes = c = k0.shape[0]
        const = lambda a: tf.constant(np.ascontiguousarray(a))
        # layer 0: h0[n, (p,q,o)] = sum_i z[n,i] k0[p,q,o,i]; [8, 4*4*32] per class.
        self.w0 = [const(k0[i].transpose(3, 0, 1, 2).reshape(k0.shape[4], -1)) for i in range(c)]
        self.b0 = [const(np.tile(b0[i], k0.shape[1] * k0.shape[2])) for i in range(c)]
        self.k0_shape = k0.shape[1:4]                                         # (4, 4, 32)
        # layers 1-2: Conv2DTranspose kernels [5,5,out,in]; the same kernels serve the strided
        # convs of the backward pass (conv2d's filter [kh,kw,in,out] of the adjoint map).
        self.k1 = [const(k1[i]) for i in range(c)]
        self.b1 = [const(b1[i]) for i in range(c)]
        self.k2 = [const(k2[i]) for i in range(c)]
        self.b2 = [const(b2[i]) for i in range(c)]
        self.c1_out, self.c2_out = k1.shape[3], k2.shape[3]
        # layer 3: k3 [C,4,4,1,16]; forward as [16 channels, 16 taps (dy,dx)], backward as the
        # stride-1 conv with filter [4,4,1,16] (from the 1-channel upstream to the 16 channels).
        self.k3_taps = [const(k3[i, :, :, 0, :].reshape(16, -1).T) for i in range(c)]
        self.k3 = [const(k3[i]) for i in range(c)]
        self.b3 = [const(b3[i]) for i in range(c)]                           # [1]

    def _forward(self, latents, xla_kernels: bool = True):
        """latents [N,C,8] -> (logits [N,28,28,C], per-class activations for `vjp`).

        xla_kernels: run the layer-3 overlap-add as a small XLA-compiled function (faster);
        False keeps the graph free of XLA (for SavedModels served without XLA JIT)."""
        overlap_add = _overlap_add_taps_xla if xla_kernels else _overlap_add_taps_plain
        n = tf.shape(latents)[0]
        logits, activations = [], []
        for c, z in enumerate(tf.unstack(latents, self.num_classes, axis=1)):
            h0 = tf.nn.elu(tf.nn.bias_add(tf.matmul(z, self.w0[c]), self.b0[c]))
            h0 = tf.reshape(h0, [-1, *self.k0_shape])                                   # [N,4,4,32]
            h1 = tf.nn.elu(tf.nn.bias_add(tf.nn.conv2d_transpose(
                h0, self.k1[c], tf.stack([n, 11, 11, self.c1_out]), 2, "VALID"), self.b1[c]))   # [N,11,11,16]
            h2 = tf.nn.elu(tf.nn.bias_add(tf.nn.conv2d_transpose(
                h1, self.k2[c], tf.stack([n, 25, 25, self.c2_out]), 2, "VALID"), self.b2[c]))   # [N,25,25,16]
            cols = tf.matmul(tf.reshape(h2, [-1, self.c2_out]), self.k3_taps[c])         # [N*625, 16 taps]
            logits.append(overlap_add(tf.reshape(cols, [-1, 25, 25, 16]), self.b3[c]))
            activations.append((h0, h1, h2))
        return tf.concat(logits, -1), activations

    def __call__(self, latents, xla_kernels: bool = True):
        return self._forward(latents, xla_kernels)[0]

    def vjp(self, activations, upstream):
        """Input gradient of the decoder: upstream d/d logits [N,28,28,C] -> d/d latents [N,C,8].

        ``activations`` are the ELU outputs (h0, h1, h2) of each class's forward pass; ELU's
        derivative is 1 for positive pre-activations and h + 1 otherwise (`EluGrad`).
        """
        grads = []
        for c, u in enumerate(tf.split(upstream, self.num_classes, axis=-1)):
            h0, h1, h2 = activations[c]
            d2 = tf.raw_ops.EluGrad(gradients=tf.nn.conv2d(u, self.k3[c], 1, "VALID"), outputs=h2)
            d1 = tf.raw_ops.EluGrad(gradients=tf.nn.conv2d(d2, self.k2[c], 2, "VALID"), outputs=h1)
            d0 = tf.raw_ops.EluGrad(gradients=tf.nn.conv2d(d1, self.k1[c], 2, "VALID"), outputs=h0)
            grads.append(tf.matmul(tf.reshape(d0, [tf.shape(d0)[0], -1]), self.w0[c], transpose_b=True))
        return tf.stack(grads, 1)
