// Fused kernels for training, registered into the TensorFlow runtime that @tensorflow/tfjs-node
// runs on. Loading this library (loadTf() in src/ml/tf.ts) runs the registrations below; tfjs-node's
// binding then executes the ops by name, like any built-in op.
//
// CnnDropout(x, seed[2 or 3]) -> x * mask / (1 - rate), in one pass. The mask is a pure function of
// (seed[0], seed[1], element index + seed[2]): a counter-based hash, so the gradient is the same op
// on dy with the same seed (the mask is recomputed, never stored) and a resumed run draws the
// masks an uninterrupted one would have. seed[2] (default 0) is where x starts within a larger
// batch: a micro-batch draws exactly its part of the whole batch's mask.
//
// CnnDropoutReluGrad(dy, seed, y) -> (dx, sums): CnnDropout's gradient when its input y is a
// ReLU's output, through the ReLU as well, with dx's per-channel sums (a bias' gradient): one pass
// instead of the dropout's gradient and then CnnReluBiasGrad.
//
// CnnReluBiasGrad(dy, y) -> (dz, db): the gradient through a ReLU and a bias add, in one pass over
// dy: dz = dy where y > 0 (else 0), db = dz summed over all but the last (channel) axis. y is the
// ReLU's output, so nothing but the layer's output is kept for it.
//
// CnnBatchNorm(x, scale, offset, mean_avg, var_avg) -> (y, new averages, batch mean, inv_std):
// training-mode batch normalisation over all but the channel axis in two passes (per-channel sums,
// then y), the moving averages moved as Keras moves them (avg - (avg - batch) * rate, with the
// batch's plain variance), and with `relu` the ReLU that follows in the pass that writes y.
// CnnBatchNormGrad(dy, x, y, scale, mean, inv_std) -> (dx, dscale, doffset): its gradient, through
// that ReLU too, in two passes. Sums run in fixed blocks of rows, float within runs of 32 rows and
// double across them.
//
// CnnAddRelu(a, b) -> max(a + b, 0): a residual block's add and ReLU in one pass.
//
// CnnMaxPool(x) -> (y, positions) and CnnMaxPoolGrad(dy, positions, input_shape) -> (dx, sums): max
// pooling (NHWC, VALID or SAME) that keeps where each maximum was, one byte per pooled value, so the
// gradient is one pass that writes each dx value once (non-overlapping windows) and also gives dx's
// per-channel sums (a bias' gradient below the pooling). With relu_input, the input is a ReLU's
// output and windows whose maximum is 0 keep no position: the ReLU's gradient is 0 there, so the
// pooling's gradient is already the ReLU's input gradient.
//
// CnnAdam(var, m, v, grad for N weights, [beta1^t, beta2^t]) -> every weight's new value, m and v:
// TensorFlow's ApplyAdam, bit for bit, for all the weights in one op, into new buffers. The
// resource-variable kernel (ResourceApplyAdam) first copies a weight whose buffer is shared, and
// tfjs' copy of each weight shares it, so every step paid a copy of every weight.
//
// CnnSquaredNorm(x_1..x_N) -> sum of all squares (folded in double), one read pass, no temporaries:
// the trainer skips an update whose gradient norm is not finite.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/util/work_sharder.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;

// A 32-bit integer hash with low bias (Wellons' lowbias32).
inline uint32_t Mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Runs block(b, acc) for every block b in [0, blocks) on the CPU threads, each block adding into
// its own `channels` partial sums, then adds the partials into `sums` in block order: the result
// does not depend on how the thread pool schedules the blocks.
template <typename T, typename Block>
void SumOverBlocks(OpKernelContext* ctx, int64_t blocks, int64_t channels, int64_t cost_per_block, T* sums,
                   const Block& block) {
  std::fill(sums, sums + channels, T(0));
  std::vector<T> partial(blocks * channels, T(0));
  T* parts = partial.data();
  auto work = [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) block(b, parts + b * channels);
  };
  auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(threads->num_threads, threads->workers, blocks, cost_per_block, work);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t c = 0; c < channels; ++c) sums[c] += parts[b * channels + c];
}

// The shared part of CnnReluBiasGrad and CnnDropoutReluGrad: inputs dy and y of one shape with a
// channel axis last; outputs dx (in dy's buffer when nothing else holds it) and dx's per-channel
// sums. rows_of(g, f, o, acc, begin, end, channels) writes rows [begin, end) of dx from dy and y
// and adds them to acc; at most 64 fixed blocks of rows run in parallel (see SumOverBlocks).
template <typename Rows>
void MaskedGradWithSums(OpKernelContext* ctx, const Tensor& dy, const Tensor& y, int64_t cost_per_value,
                        const Rows& rows_of) {
  OP_REQUIRES(ctx, dy.shape() == y.shape(),
              tensorflow::errors::InvalidArgument("dy and y must have the same shape, got ", dy.shape().DebugString(),
                                                  " and ", y.shape().DebugString()));
  OP_REQUIRES(ctx, dy.dims() >= 1, tensorflow::errors::InvalidArgument("dy must have a channel axis"));
  const int64_t channels = dy.dim_size(dy.dims() - 1);
  Tensor* dx = nullptr;
  OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, dy.shape(), &dx));
  Tensor* sums_out = nullptr;
  OP_REQUIRES_OK(ctx, ctx->allocate_output(1, tensorflow::TensorShape({channels}), &sums_out));
  float* sums = sums_out->flat<float>().data();
  if (channels == 0 || dy.NumElements() == 0) {
    std::fill(sums, sums + channels, 0.0f);
    return;
  }
  const int64_t rows = dy.NumElements() / channels;
  const float* g = dy.flat<float>().data();
  const float* f = y.flat<float>().data();
  float* o = dx->flat<float>().data();
  const int64_t blocks = std::min<int64_t>(rows, 64);
  SumOverBlocks(ctx, blocks, channels, (rows / blocks + 1) * channels * cost_per_value, sums, [&](int64_t b, float* acc) {
    rows_of(g, f, o, acc, rows * b / blocks, rows * (b + 1) / blocks, channels);
  });
}

// The dropout mask's keys, from the seed input: (layer seed, step[, element offset]).
struct DropoutKeys {
  uint32_t offset, k1, k2;
};

tensorflow::Status ReadDropoutSeed(const Tensor& seed, int64_t elements, DropoutKeys* keys) {
  if (seed.NumElements() != 2 && seed.NumElements() != 3)
    return tensorflow::errors::InvalidArgument("seed must have 2 or 3 elements, got ", seed.NumElements());
  const auto s = seed.flat<int32_t>();
  keys->offset = seed.NumElements() == 3 ? static_cast<uint32_t>(s(2)) : 0;
  if (static_cast<uint64_t>(keys->offset) + static_cast<uint64_t>(elements) > 0x100000000ULL)
    return tensorflow::errors::InvalidArgument("element offset + size past 2^32 in CnnDropout");
  keys->k1 = Mix32(static_cast<uint32_t>(s(0)) ^ 0x9e3779b9U);
  keys->k2 = Mix32(static_cast<uint32_t>(s(1)) + keys->k1);
  return tensorflow::OkStatus();
}

// The `rate` attribute as the keep threshold (an element is kept when its 32-bit hash is >= rate *
// 2^32) and the scale of kept elements, 1 / (1 - rate).
tensorflow::Status ReadDropoutRate(OpKernelConstruction* ctx, uint32_t* threshold, float* scale) {
  float rate;
  TF_RETURN_IF_ERROR(ctx->GetAttr("rate", &rate));
  if (!(rate >= 0.0f && rate < 1.0f)) return tensorflow::errors::InvalidArgument("rate must be in [0, 1), got ", rate);
  *threshold = static_cast<uint32_t>(static_cast<double>(rate) * 4294967296.0);
  *scale = 1.0f / (1.0f - rate);
  return tensorflow::OkStatus();
}

// Whether element i is kept: its 32-bit hash is >= the threshold.
inline bool Kept(int64_t i, const DropoutKeys& k, uint32_t threshold) {
  return Mix32(Mix32((static_cast<uint32_t>(i) + k.offset) ^ k.k1) + k.k2) >= threshold;
}

// One shard of the dropout: vectorised for the CPU it runs on (the hash is 32-bit multiplies).
__attribute__((target_clones("avx512f", "avx2", "default"))) void DropoutShard(
    const float* in, float* out, int64_t begin, int64_t end, DropoutKeys keys, uint32_t threshold, float scale) {
  for (int64_t i = begin; i < end; ++i) out[i] = Kept(i, keys, threshold) ? in[i] * scale : 0.0f;
}

// Rows [begin, end) of a [rows, channels] dropout gradient below a ReLU: dx = dy * scale where the
// element was kept and the ReLU's output y > 0, else 0; adds dx's rows to `acc`. dx may be dy's
// own buffer (MaskedGradWithSums forwards it), so neither is __restrict__.
__attribute__((target_clones("avx512f", "avx2", "default"))) void DropoutReluGradRows(
    const float* dy, const float* __restrict__ y, float* dx, float* __restrict__ acc,
    int64_t begin, int64_t end, int64_t channels, DropoutKeys keys, uint32_t threshold, float scale) {
  for (int64_t r = begin; r < end; ++r) {
    const float* g = dy + r * channels;
    const float* f = y + r * channels;
    float* o = dx + r * channels;
    const uint32_t first = static_cast<uint32_t>(r * channels);
    for (int64_t c = 0; c < channels; ++c) {
      // Both conditions evaluated (no short circuit), so the loop vectorises.
      const bool keep = Kept(first + static_cast<uint32_t>(c), keys, threshold) & (f[c] > 0.0f);
      const float v = keep ? g[c] * scale : 0.0f;
      o[c] = v;
      acc[c] += v;
    }
  }
}

class CnnDropoutOp : public OpKernel {
 public:
  explicit CnnDropoutOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadDropoutRate(ctx, &threshold_, &scale_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    DropoutKeys keys;
    OP_REQUIRES_OK(ctx, ReadDropoutSeed(ctx->input(1), x.NumElements(), &keys));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    const uint32_t threshold = threshold_;
    const float scale = scale_;
    auto work = [=](int64_t begin, int64_t end) { DropoutShard(in, out, begin, end, keys, threshold, scale); };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, x.NumElements(), 8, work);
  }

 private:
  uint32_t threshold_;
  float scale_;
};

// CnnDropoutReluGrad(dy, seed, y) -> (dx, sums): the gradient of a dropout (same rate and seed)
// whose input y is a ReLU's output, through that ReLU too, and dx summed per channel (the gradient
// of a bias before the ReLU), in one pass.
class CnnDropoutReluGradOp : public OpKernel {
 public:
  explicit CnnDropoutReluGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadDropoutRate(ctx, &threshold_, &scale_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    DropoutKeys keys;
    OP_REQUIRES_OK(ctx, ReadDropoutSeed(ctx->input(1), dy.NumElements(), &keys));
    const uint32_t threshold = threshold_;
    const float scale = scale_;
    MaskedGradWithSums(ctx, dy, ctx->input(2), 8,
                       [=](const float* g, const float* f, float* o, float* acc, int64_t begin, int64_t end,
                           int64_t channels) {
                         DropoutReluGradRows(g, f, o, acc, begin, end, channels, keys, threshold, scale);
                       });
  }

 private:
  uint32_t threshold_;
  float scale_;
};

// Rows [begin, end) of a [rows, channels] ReLU + bias gradient: writes dz, adds db's part to acc.
__attribute__((target_clones("avx512f", "avx2", "default"))) void ReluBiasGradRows(
    const float* dy, const float* y, float* dz, float* acc, int64_t begin, int64_t end, int64_t channels) {
  for (int64_t r = begin; r < end; ++r) {
    const float* g = dy + r * channels;
    const float* f = y + r * channels;
    float* o = dz + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float v = f[c] > 0.0f ? g[c] : 0.0f;
      o[c] = v;
      acc[c] += v;
    }
  }
}

class CnnReluBiasGradOp : public OpKernel {
 public:
  explicit CnnReluBiasGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override { MaskedGradWithSums(ctx, ctx->input(0), ctx->input(1), 4, ReluBiasGradRows); }
};

__attribute__((target_clones("avx512f", "avx2", "default"))) double SumOfSquares(const float* x, int64_t n) {
  // Sixteen float lanes summed over short runs, then added in double: the loop vectorises, and a
  // run of 256 squares cannot lose much to float's rounding before it is folded in.
  double total = 0;
  int64_t i = 0;
  for (; i + 256 <= n; i += 256) {
    float lanes[16] = {};
    for (int64_t j = i; j < i + 256; j += 16)
      for (int k = 0; k < 16; ++k) lanes[k] += x[j + k] * x[j + k];
    double run = 0;
    for (float l : lanes) run += l;
    total += run;
  }
  for (; i < n; ++i) total += static_cast<double>(x[i]) * x[i];
  return total;
}

class CnnSquaredNormOp : public OpKernel {
 public:
  explicit CnnSquaredNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const int n = ctx->num_inputs();
    // Fixed chunks across all the tensors, each with its own partial sum: shards evenly however
    // unequal the tensors are, and the result does not depend on scheduling.
    constexpr int64_t kChunk = 1 << 16;
    struct Chunk {
      const float* data;
      int64_t size;
    };
    std::vector<Chunk> chunks;
    for (int i = 0; i < n; ++i) {
      const Tensor& x = ctx->input(i);
      const float* data = x.flat<float>().data();
      for (int64_t at = 0; at < x.NumElements(); at += kChunk)
        chunks.push_back({data + at, std::min<int64_t>(kChunk, x.NumElements() - at)});
    }
    std::vector<double> sums(chunks.size(), 0.0);
    const Chunk* parts = chunks.data();
    double* out = sums.data();
    auto work = [=](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) out[c] = SumOfSquares(parts[c].data, parts[c].size);
    };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, static_cast<int64_t>(chunks.size()), kChunk * 2, work);
    double total = 0;
    for (double v : sums) total += v;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({}), &y));
    // Squares past float's range become inf, as they would in Adam's second moment.
    y->scalar<float>()() = static_cast<float>(total);
  }
};

// Max pooling's geometry, as TensorFlow computes it for NHWC, VALID or SAME.
struct PoolGeometry {
  int64_t n, h, w, c;      // input
  int64_t kh, kw, sh, sw;  // window and strides
  int64_t ho, wo;          // output
  int64_t pt, pl;          // padding before the first row / column
  bool overlapping() const { return sh < kh || sw < kw; }
};

tensorflow::Status ReadPoolAttrs(OpKernelConstruction* ctx, std::vector<int32_t>* ksize, std::vector<int32_t>* strides,
                                 std::string* padding) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("ksize", ksize));
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding", padding));
  if (ksize->size() != 2 || strides->size() != 2)
    return tensorflow::errors::InvalidArgument("ksize and strides must have 2 values (rows, columns)");
  if ((*ksize)[0] < 1 || (*ksize)[1] < 1 || (*strides)[0] < 1 || (*strides)[1] < 1)
    return tensorflow::errors::InvalidArgument("ksize and strides must be positive");
  // A window position is stored in one byte; 255 is never a position.
  if (static_cast<int64_t>((*ksize)[0]) * (*ksize)[1] > 255)
    return tensorflow::errors::InvalidArgument("a pooling window may hold at most 255 values");
  return tensorflow::OkStatus();
}

tensorflow::Status MakePoolGeometry(const std::vector<int32_t>& ksize, const std::vector<int32_t>& strides,
                                    const std::string& padding, const int64_t* shape, PoolGeometry* g) {
  *g = {shape[0], shape[1], shape[2], shape[3], ksize[0], ksize[1], strides[0], strides[1], 0, 0, 0, 0};
  if (padding == "VALID") {
    if (g->h < g->kh || g->w < g->kw) return tensorflow::errors::InvalidArgument("the pooling window is larger than the input");
    g->ho = (g->h - g->kh) / g->sh + 1;
    g->wo = (g->w - g->kw) / g->sw + 1;
  } else if (padding == "SAME") {
    g->ho = (g->h + g->sh - 1) / g->sh;
    g->wo = (g->w + g->sw - 1) / g->sw;
    g->pt = std::max<int64_t>((g->ho - 1) * g->sh + g->kh - g->h, 0) / 2;
    g->pl = std::max<int64_t>((g->wo - 1) * g->sw + g->kw - g->w, 0) / 2;
  } else {
    return tensorflow::errors::InvalidArgument("padding must be VALID or SAME, got ", padding);
  }
  return tensorflow::OkStatus();
}

// A window position that no gradient goes to.
constexpr int32_t kNoPosition = 255;

// Output rows [begin, end) of the flattened (image, row) range: each output value is its window's
// first maximum (row-major order, as TensorFlow's MaxPoolGrad picks it), and `pos` gets the
// maximum's place in the window, one byte per value. With `relu_input`, a window whose maximum is
// not positive gets kNoPosition: the ReLU before the pooling passes no gradient there.
__attribute__((target_clones("avx2", "default"))) void MaxPoolRows(
    const float* __restrict__ x, float* __restrict__ y, uint8_t* __restrict__ pos, int64_t stride, bool relu_input,
    const PoolGeometry& g, int64_t begin, int64_t end) {
  const int64_t C = g.c;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.ho, oh = row % g.ho;
    const int64_t h0 = oh * g.sh - g.pt;
    const int64_t dh0 = std::max<int64_t>(0, -h0), dh1 = std::min(g.kh, g.h - h0);
    for (int64_t ow = 0; ow < g.wo; ++ow) {
      const int64_t w0 = ow * g.sw - g.pl;
      const int64_t dw0 = std::max<int64_t>(0, -w0), dw1 = std::min(g.kw, g.w - w0);
      float* best = y + (row * g.wo + ow) * C;
      uint8_t* out = pos + (row * g.wo + ow) * stride;
      const float* first = x + ((n * g.h + h0 + dh0) * g.w + w0 + dw0) * C;
      for (int64_t c = 0; c < C; ++c) {
        best[c] = first[c];
        out[c] = static_cast<uint8_t>(dh0 * g.kw + dw0);
      }
      for (int64_t dh = dh0; dh < dh1; ++dh)
        for (int64_t dw = dh == dh0 ? dw0 + 1 : dw0; dw < dw1; ++dw) {
          const float* p = x + ((n * g.h + h0 + dh) * g.w + w0 + dw) * C;
          const uint8_t k = static_cast<uint8_t>(dh * g.kw + dw);
          for (int64_t c = 0; c < C; ++c) {
            const bool greater = p[c] > best[c];
            best[c] = greater ? p[c] : best[c];
            out[c] = greater ? k : out[c];
          }
        }
      if (relu_input)
        for (int64_t c = 0; c < C; ++c) out[c] = best[c] > 0.0f ? out[c] : kNoPosition;
      for (int64_t c = C; c < stride; ++c) out[c] = 0;
    }
  }
}

// The same with AVX-512: V x 16 channels at a time through the whole window, in registers (channels
// a multiple of 16 V).
template <int V>
__attribute__((target("avx512f"))) void MaxPoolRowsAvx512(const float* __restrict__ x, float* __restrict__ y,
                                                          uint8_t* __restrict__ pos, bool relu_input,
                                                          const PoolGeometry& g, int64_t begin, int64_t end) {
  const int64_t C = g.c;
  const __m512i none = _mm512_set1_epi32(kNoPosition);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.ho, oh = row % g.ho;
    const int64_t h0 = oh * g.sh - g.pt;
    const int64_t dh0 = std::max<int64_t>(0, -h0), dh1 = std::min(g.kh, g.h - h0);
    for (int64_t ow = 0; ow < g.wo; ++ow) {
      const int64_t w0 = ow * g.sw - g.pl;
      const int64_t dw0 = std::max<int64_t>(0, -w0), dw1 = std::min(g.kw, g.w - w0);
      const float* first = x + ((n * g.h + h0 + dh0) * g.w + w0 + dw0) * C;
      for (int64_t c = 0; c < C; c += 16 * V) {
        __m512 best[V];
        __m512i code[V];
        for (int v = 0; v < V; ++v) {
          best[v] = _mm512_loadu_ps(first + c + 16 * v);
          code[v] = _mm512_set1_epi32(static_cast<int32_t>(dh0 * g.kw + dw0));
        }
        for (int64_t dh = dh0; dh < dh1; ++dh)
          for (int64_t dw = dh == dh0 ? dw0 + 1 : dw0; dw < dw1; ++dw) {
            const float* p = x + ((n * g.h + h0 + dh) * g.w + w0 + dw) * C + c;
            const __m512i k = _mm512_set1_epi32(static_cast<int32_t>(dh * g.kw + dw));
            for (int v = 0; v < V; ++v) {
              const __m512 value = _mm512_loadu_ps(p + 16 * v);
              const __mmask16 greater = _mm512_cmp_ps_mask(value, best[v], _CMP_GT_OQ);
              best[v] = _mm512_mask_mov_ps(best[v], greater, value);
              code[v] = _mm512_mask_mov_epi32(code[v], greater, k);
            }
          }
        for (int v = 0; v < V; ++v) {
          if (relu_input) code[v] = _mm512_mask_mov_epi32(none, _mm512_cmp_ps_mask(best[v], zero, _CMP_GT_OQ), code[v]);
          const int64_t at = (row * g.wo + ow) * C + c + 16 * v;
          _mm512_storeu_ps(y + at, best[v]);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(pos + at), _mm512_cvtepi32_epi8(code[v]));
        }
      }
    }
  }
}

// The window positions' tensor: one byte per pooled value, in int32 words (tfjs has no uint8).
tensorflow::TensorShape PositionsShape(const PoolGeometry& g) {
  return tensorflow::TensorShape({g.n, g.ho, g.wo, (g.c + 3) / 4});
}

class CnnMaxPoolOp : public OpKernel {
 public:
  explicit CnnMaxPoolOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadPoolAttrs(ctx, &ksize_, &strides_, &padding_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("relu_input", &relu_input_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 4, tensorflow::errors::InvalidArgument("x must be NHWC, got shape ", x.shape().DebugString()));
    const int64_t shape[4] = {x.dim_size(0), x.dim_size(1), x.dim_size(2), x.dim_size(3)};
    PoolGeometry g;
    OP_REQUIRES_OK(ctx, MakePoolGeometry(ksize_, strides_, padding_, shape, &g));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({g.n, g.ho, g.wo, g.c}), &y));
    Tensor* positions = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, PositionsShape(g), &positions));
    const int64_t rows = g.n * g.ho;
    if (rows == 0 || g.wo == 0 || g.c == 0) return;
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    // Each pooled value's bytes are padded to whole words when channels are not a multiple of 4.
    const int64_t stride = (g.c + 3) / 4 * 4;
    uint8_t* pos = reinterpret_cast<uint8_t*>(positions->flat<int32_t>().data());
    const PoolGeometry geometry = g;
    const bool relu_input = relu_input_;
    const bool avx512 = g.c % 16 == 0 && __builtin_cpu_supports("avx512f");
    auto work = [=](int64_t begin, int64_t end) {
      if (avx512 && geometry.c % 64 == 0)
        MaxPoolRowsAvx512<4>(in, out, pos, relu_input, geometry, begin, end);
      else if (avx512)
        MaxPoolRowsAvx512<1>(in, out, pos, relu_input, geometry, begin, end);
      else
        MaxPoolRows(in, out, pos, stride, relu_input, geometry, begin, end);
    };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, rows, g.wo * g.kh * g.kw * g.c * 2, work);
  }

 private:
  std::vector<int32_t> ksize_, strides_;
  std::string padding_;
  bool relu_input_;
};

// Non-overlapping windows: output rows [begin, end) own the input rows from their window's first
// row to the next window's (to the input's end for an image's last row), so every dx value is
// written exactly once: dy where the maximum was, 0 elsewhere. Adds each row's dy to `sums`
// (except where no position was kept).
__attribute__((target_clones("avx512f", "avx2", "default"))) void MaxPoolGradRows(
    const float* __restrict__ dy, const uint8_t* __restrict__ pos, int64_t stride, float* __restrict__ dx,
    float* __restrict__ sums, const PoolGeometry& g, int64_t begin, int64_t end) {
  const int64_t C = g.c;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.ho, oh = row % g.ho;
    const int64_t h0 = oh * g.sh - g.pt;
    const int64_t first = oh == 0 ? 0 : h0;
    const int64_t last = oh + 1 == g.ho ? g.h : std::min(h0 + g.sh, g.h);
    for (int64_t ow = 0; ow < g.wo; ++ow) {
      const float* d = dy + (row * g.wo + ow) * C;
      const uint8_t* p = pos + (row * g.wo + ow) * stride;
      for (int64_t c = 0; c < C; ++c) sums[c] += p[c] == kNoPosition ? 0.0f : d[c];
    }
    for (int64_t ih = std::max<int64_t>(first, 0); ih < last; ++ih) {
      const int64_t dh = ih - h0;
      float* out = dx + (n * g.h + ih) * g.w * C;
      if (dh >= g.kh) {
        std::fill(out, out + g.w * C, 0.0f);
        continue;
      }
      // Windows left to right; the columns between and after them get 0.
      int64_t iw = 0;
      for (int64_t ow = 0; ow < g.wo && iw < g.w; ++ow) {
        const float* d = dy + (row * g.wo + ow) * C;
        const uint8_t* p = pos + (row * g.wo + ow) * stride;
        const int64_t w0 = ow * g.sw - g.pl;
        const int64_t stop = ow + 1 == g.wo ? g.w : std::min(w0 + g.sw, g.w);
        for (; iw < stop; ++iw) {
          const int64_t dw = iw - w0;
          float* o = out + iw * C;
          if (dw >= g.kw) {
            std::fill(o, o + C, 0.0f);
            continue;
          }
          const uint8_t k = static_cast<uint8_t>(dh * g.kw + dw);
          for (int64_t c = 0; c < C; ++c) o[c] = p[c] == k ? d[c] : 0.0f;
        }
      }
    }
  }
}

// Sixteen window positions, widened to 32 bits.
__attribute__((target("avx512f"))) inline __m512i PositionsAt(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The same with AVX-512 (channels a multiple of 16, so positions are not padded).
__attribute__((target("avx512f"))) void MaxPoolGradRowsAvx512(const float* __restrict__ dy,
                                                              const uint8_t* __restrict__ pos, float* __restrict__ dx,
                                                              float* __restrict__ sums, const PoolGeometry& g,
                                                              int64_t begin, int64_t end) {
  const int64_t C = g.c;
  const __m512i none = _mm512_set1_epi32(kNoPosition);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.ho, oh = row % g.ho;
    const int64_t h0 = oh * g.sh - g.pt;
    const int64_t first = oh == 0 ? 0 : h0;
    const int64_t last = oh + 1 == g.ho ? g.h : std::min(h0 + g.sh, g.h);
    for (int64_t ow = 0; ow < g.wo; ++ow)
      for (int64_t c = 0; c < C; c += 16) {
        const int64_t at = (row * g.wo + ow) * C + c;
        const __mmask16 kept = _mm512_cmpneq_epi32_mask(PositionsAt(pos + at), none);
        _mm512_storeu_ps(sums + c, _mm512_mask_add_ps(_mm512_loadu_ps(sums + c), kept, _mm512_loadu_ps(sums + c),
                                                      _mm512_loadu_ps(dy + at)));
      }
    for (int64_t ih = std::max<int64_t>(first, 0); ih < last; ++ih) {
      const int64_t dh = ih - h0;
      float* out = dx + (n * g.h + ih) * g.w * C;
      if (dh >= g.kh) {
        std::fill(out, out + g.w * C, 0.0f);
        continue;
      }
      int64_t iw = 0;
      for (int64_t ow = 0; ow < g.wo && iw < g.w; ++ow) {
        const int64_t w0 = ow * g.sw - g.pl;
        const int64_t stop = ow + 1 == g.wo ? g.w : std::min(w0 + g.sw, g.w);
        for (; iw < stop; ++iw) {
          const int64_t dw = iw - w0;
          float* o = out + iw * C;
          if (dw >= g.kw) {
            std::fill(o, o + C, 0.0f);
            continue;
          }
          const __m512i k = _mm512_set1_epi32(static_cast<int32_t>(dh * g.kw + dw));
          for (int64_t c = 0; c < C; c += 16) {
            const int64_t at = (row * g.wo + ow) * C + c;
            const __mmask16 here = _mm512_cmpeq_epi32_mask(PositionsAt(pos + at), k);
            _mm512_storeu_ps(o + c, _mm512_maskz_mov_ps(here, _mm512_loadu_ps(dy + at)));
          }
        }
      }
    }
  }
}

// CnnMaxPoolGrad(dy, positions, input_shape) -> (dx, sums): each pooled gradient goes to where its
// window's maximum was (added up where windows overlap), or nowhere (kNoPosition); `sums` is dx
// summed per channel, from dy: the gradient of a bias added before the pooling.
class CnnMaxPoolGradOp : public OpKernel {
 public:
  explicit CnnMaxPoolGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadPoolAttrs(ctx, &ksize_, &strides_, &padding_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& positions = ctx->input(1);
    const Tensor& input_shape = ctx->input(2);
    OP_REQUIRES(ctx, input_shape.NumElements() == 4,
                tensorflow::errors::InvalidArgument("input_shape must have 4 values, got ", input_shape.NumElements()));
    const auto s = input_shape.flat<int32_t>();
    const int64_t shape[4] = {s(0), s(1), s(2), s(3)};
    for (int64_t v : shape) OP_REQUIRES(ctx, v >= 0, tensorflow::errors::InvalidArgument("negative input_shape"));
    PoolGeometry g;
    OP_REQUIRES_OK(ctx, MakePoolGeometry(ksize_, strides_, padding_, shape, &g));
    const tensorflow::TensorShape pooled({g.n, g.ho, g.wo, g.c});
    OP_REQUIRES(ctx, dy.shape() == pooled,
                tensorflow::errors::InvalidArgument("dy has shape ", dy.shape().DebugString(), ", the pooling gives ",
                                                    pooled.DebugString()));
    OP_REQUIRES(ctx, positions.shape() == PositionsShape(g),
                tensorflow::errors::InvalidArgument("positions has shape ", positions.shape().DebugString(), ", expected ",
                                                    PositionsShape(g).DebugString()));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({g.n, g.h, g.w, g.c}), &dx));
    Tensor* sums_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, tensorflow::TensorShape({g.c}), &sums_out));
    float* sums = sums_out->flat<float>().data();
    std::fill(sums, sums + g.c, 0.0f);
    float* out = dx->flat<float>().data();
    if (dx->NumElements() == 0) return;
    std::fill(out, out + (g.ho == 0 || g.wo == 0 ? dx->NumElements() : 0), 0.0f);
    const int64_t rows = g.n * g.ho;
    if (rows == 0 || g.wo == 0 || g.c == 0) return;
    const float* d = dy.flat<float>().data();
    const uint8_t* pos = reinterpret_cast<const uint8_t*>(positions.flat<int32_t>().data());
    const int64_t stride = (g.c + 3) / 4 * 4;
    // Fixed blocks (see SumOverBlocks). Where windows overlap, a block is one image, so no two
    // blocks add into the same dx value.
    const bool overlapping = g.overlapping();
    const bool avx512 = g.c % 16 == 0 && __builtin_cpu_supports("avx512f");
    const int64_t blocks = overlapping ? g.n : std::min<int64_t>(rows, 64);
    SumOverBlocks(ctx, blocks, g.c, dx->NumElements() / blocks * 4, sums, [&](int64_t b, float* acc) {
      if (!overlapping) {
        if (avx512)
          MaxPoolGradRowsAvx512(d, pos, out, acc, g, rows * b / blocks, rows * (b + 1) / blocks);
        else
          MaxPoolGradRows(d, pos, stride, out, acc, g, rows * b / blocks, rows * (b + 1) / blocks);
        return;
      }
      float* image = out + b * g.h * g.w * g.c;
      std::fill(image, image + g.h * g.w * g.c, 0.0f);
      for (int64_t oh = 0; oh < g.ho; ++oh)
        for (int64_t ow = 0; ow < g.wo; ++ow) {
          const int64_t at = (b * g.ho + oh) * g.wo + ow;
          for (int64_t c = 0; c < g.c; ++c) {
            const int64_t k = pos[at * stride + c];
            if (k == kNoPosition) continue;
            const int64_t ih = oh * g.sh - g.pt + k / g.kw;
            const int64_t iw = ow * g.sw - g.pl + k % g.kw;
            image[(ih * g.w + iw) * g.c + c] += d[at * g.c + c];
            acc[c] += d[at * g.c + c];
          }
        }
    });
  }

 private:
  std::vector<int32_t> ksize_, strides_;
  std::string padding_;
};

// Elements [begin, end) of one weight's Adam update, into new buffers. The same operations in the
// same order as TensorFlow's ApplyAdam (the library is built without floating-point contraction, so
// the results are bit-identical to it).
__attribute__((target_clones("avx512f", "avx2", "default"))) void AdamRange(
    const float* __restrict__ var, const float* __restrict__ m, const float* __restrict__ v,
    const float* __restrict__ g, float* __restrict__ new_var, float* __restrict__ new_m, float* __restrict__ new_v,
    int64_t begin, int64_t end, float alpha, float one_minus_beta1, float one_minus_beta2, float epsilon) {
  for (int64_t i = begin; i < end; ++i) {
    const float mi = m[i] + (g[i] - m[i]) * one_minus_beta1;
    const float vi = v[i] + (g[i] * g[i] - v[i]) * one_minus_beta2;
    new_m[i] = mi;
    new_v[i] = vi;
    new_var[i] = var[i] - (mi * alpha) / (std::sqrt(vi) + epsilon);
  }
}

// The same with AVX-512, the same operations in the same order, and streaming stores: the three
// outputs are new buffers that nothing reads before the op ends, so writing them around the cache
// saves reading each line in first (7 memory streams instead of 10). Outputs must be 64-byte aligned.
__attribute__((target("avx512f"))) void AdamRangeAvx512(const float* var, const float* m, const float* v, const float* g,
                                                        float* new_var, float* new_m, float* new_v, int64_t begin,
                                                        int64_t end, float alpha, float one_minus_beta1,
                                                        float one_minus_beta2, float epsilon) {
  const __m512 a = _mm512_set1_ps(alpha), b1 = _mm512_set1_ps(one_minus_beta1), b2 = _mm512_set1_ps(one_minus_beta2),
               eps = _mm512_set1_ps(epsilon);
  int64_t i = begin;
  for (; i + 16 <= end; i += 16) {
    const __m512 gi = _mm512_loadu_ps(g + i), m0 = _mm512_loadu_ps(m + i), v0 = _mm512_loadu_ps(v + i);
    const __m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(_mm512_sub_ps(gi, m0), b1));
    const __m512 vi = _mm512_add_ps(v0, _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(gi, gi), v0), b2));
    const __m512 step = _mm512_div_ps(_mm512_mul_ps(mi, a), _mm512_add_ps(_mm512_sqrt_ps(vi), eps));
    _mm512_stream_ps(new_m + i, mi);
    _mm512_stream_ps(new_v + i, vi);
    _mm512_stream_ps(new_var + i, _mm512_sub_ps(_mm512_loadu_ps(var + i), step));
  }
  _mm_sfence();
  if (i < end) AdamRange(var, m, v, g, new_var, new_m, new_v, i, end, alpha, one_minus_beta1, one_minus_beta2, epsilon);
}

// CnnAdam(var_1..N, m_1..N, v_1..N, grad_1..N, beta_powers) -> (new var, m and v for each weight).
class CnnAdamOp : public OpKernel {
 public:
  explicit CnnAdamOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("lr", &lr_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta1", &beta1_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("beta2", &beta2_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& powers = ctx->input(4 * n_);
    OP_REQUIRES(ctx, powers.NumElements() == 2,
                tensorflow::errors::InvalidArgument("beta_powers must hold [beta1^t, beta2^t], got ", powers.NumElements(),
                                                    " values"));
    const float beta1_power = powers.flat<float>()(0), beta2_power = powers.flat<float>()(1);
    // As ApplyAdam computes it, in float.
    const float alpha = lr_ * std::sqrt(1.0f - beta2_power) / (1.0f - beta1_power);
    struct Chunk {
      int weight;
      int64_t begin, end;
    };
    std::vector<Chunk> chunks;
    std::vector<const float*> in(4 * n_);
    std::vector<float*> out(3 * n_);
    constexpr int64_t kChunk = 1 << 14;
    for (int i = 0; i < n_; ++i) {
      const Tensor& var = ctx->input(i);
      for (int k = 1; k < 4; ++k)
        OP_REQUIRES(ctx, ctx->input(k * n_ + i).shape() == var.shape(),
                    tensorflow::errors::InvalidArgument("weight ", i, ": ", kInputNames[k], " has shape ",
                                                        ctx->input(k * n_ + i).shape().DebugString(), ", the weight ",
                                                        var.shape().DebugString()));
      for (int k = 0; k < 4; ++k) in[k * n_ + i] = ctx->input(k * n_ + i).flat<float>().data();
      for (int k = 0; k < 3; ++k) {
        Tensor* y = nullptr;
        OP_REQUIRES_OK(ctx, ctx->allocate_output(k * n_ + i, var.shape(), &y));
        out[k * n_ + i] = y->flat<float>().data();
      }
      for (int64_t at = 0; at < var.NumElements(); at += kChunk)
        chunks.push_back({i, at, std::min<int64_t>(at + kChunk, var.NumElements())});
    }
    const int n = n_;
    const Chunk* parts = chunks.data();
    const float* const* ins = in.data();
    float* const* outs = out.data();
    const float one_minus_beta1 = 1.0f - beta1_, one_minus_beta2 = 1.0f - beta2_, epsilon = epsilon_;
    // Streaming stores need 64-byte aligned outputs: TensorFlow's allocator aligns every buffer so,
    // and chunks start at multiples of kChunk values; checked all the same.
    bool aligned = __builtin_cpu_supports("avx512f");
    for (float* o : out) aligned = aligned && reinterpret_cast<uintptr_t>(o) % 64 == 0;
    const bool avx512 = aligned;
    auto work = [=](int64_t first, int64_t last) {
      for (int64_t c = first; c < last; ++c) {
        const int w = parts[c].weight;
        (avx512 ? AdamRangeAvx512 : AdamRange)(ins[w], ins[n + w], ins[2 * n + w], ins[3 * n + w], outs[w], outs[n + w],
                                               outs[2 * n + w], parts[c].begin, parts[c].end, alpha, one_minus_beta1,
                                               one_minus_beta2, epsilon);
      }
    };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, static_cast<int64_t>(chunks.size()), kChunk * 40, work);
  }

 private:
  static constexpr const char* kInputNames[4] = {"var", "m", "v", "grad"};
  int n_;
  float lr_, beta1_, beta2_, epsilon_;
};

// Per-channel sums over rows [begin, end) in runs of 32 rows: each run adds into float lanes (t1,
// t2: `channels` each, scratch) that the loop keeps vectorised, and each run's total is folded into
// the double sums s1, s2, so rounding does not grow with the number of rows. add(r, t1, t2) adds row r.
template <typename AddRow>
inline void SumRowsInRuns(double* __restrict__ s1, double* __restrict__ s2, float* __restrict__ t1,
                          float* __restrict__ t2, int64_t begin, int64_t end, int64_t channels, const AddRow& add) {
  for (int64_t r0 = begin; r0 < end; r0 += 32) {
    std::fill(t1, t1 + channels, 0.0f);
    std::fill(t2, t2 + channels, 0.0f);
    for (int64_t r = r0; r < std::min(end, r0 + 32); ++r) add(r, t1, t2);
    for (int64_t c = 0; c < channels; ++c) {
      s1[c] += t1[c];
      s2[c] += t2[c];
    }
  }
}

// Rows [begin, end) of x [rows, channels]: per-channel sums of (x - shift) and of its squares. The
// shift (the first row) keeps E[d^2] - E[d]^2 from cancelling when the mean is large.
__attribute__((target_clones("avx512f", "avx2", "default"))) void MomentRows(const float* __restrict__ x,
                                                                           const float* __restrict__ shift,
                                                                           double* s1, double* s2, float* t1, float* t2,
                                                                           int64_t begin, int64_t end, int64_t channels) {
  SumRowsInRuns(s1, s2, t1, t2, begin, end, channels, [=](int64_t r, float* __restrict__ u1, float* __restrict__ u2) {
    const float* p = x + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float d = p[c] - shift[c];
      u1[c] += d;
      u2[c] += d * d;
    }
  });
}

// Rows [begin, end) of y = x * a + b per channel, with a ReLU when `relu`.
__attribute__((target_clones("avx512f", "avx2", "default"))) void NormalizeRows(const float* __restrict__ x,
                                                                              const float* __restrict__ a,
                                                                              const float* __restrict__ b,
                                                                              float* __restrict__ y, int64_t begin,
                                                                              int64_t end, int64_t channels, bool relu) {
  if (relu)
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < channels; ++c) y[r * channels + c] = std::max(x[r * channels + c] * a[c] + b[c], 0.0f);
  else
    for (int64_t r = begin; r < end; ++r)
      for (int64_t c = 0; c < channels; ++c) y[r * channels + c] = x[r * channels + c] * a[c] + b[c];
}

// Rows [begin, end) of a batch norm's gradient sums: dz = dy (where the ReLU's output y > 0 when
// `relu`), s1 += dz, s2 += dz * (x - mean).
__attribute__((target_clones("avx512f", "avx2", "default"))) void BatchNormGradSumRows(
    const float* __restrict__ dy, const float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ mean,
    double* s1, double* s2, float* t1, float* t2, int64_t begin, int64_t end, int64_t channels, bool relu) {
  if (relu)
    SumRowsInRuns(s1, s2, t1, t2, begin, end, channels, [=](int64_t r, float* __restrict__ u1, float* __restrict__ u2) {
      const int64_t at = r * channels;
      for (int64_t c = 0; c < channels; ++c) {
        const float dz = y[at + c] > 0.0f ? dy[at + c] : 0.0f;
        u1[c] += dz;
        u2[c] += dz * (x[at + c] - mean[c]);
      }
    });
  else
    SumRowsInRuns(s1, s2, t1, t2, begin, end, channels, [=](int64_t r, float* __restrict__ u1, float* __restrict__ u2) {
      const int64_t at = r * channels;
      for (int64_t c = 0; c < channels; ++c) {
        u1[c] += dy[at + c];
        u2[c] += dy[at + c] * (x[at + c] - mean[c]);
      }
    });
}

// Rows [begin, end) of a batch norm's input gradient: dx = p * dz - r * (x - mean) - q per channel.
// dx may be dy's own buffer (forwarded), so neither is __restrict__.
__attribute__((target_clones("avx512f", "avx2", "default"))) void BatchNormGradRows(
    const float* dy, const float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ mean,
    const float* __restrict__ p, const float* __restrict__ rr, const float* __restrict__ q, float* dx, int64_t begin,
    int64_t end, int64_t channels, bool relu) {
  if (relu)
    for (int64_t at = begin * channels; at < end * channels; at += channels)
      for (int64_t c = 0; c < channels; ++c)
        dx[at + c] = p[c] * (y[at + c] > 0.0f ? dy[at + c] : 0.0f) - rr[c] * (x[at + c] - mean[c]) - q[c];
  else
    for (int64_t at = begin * channels; at < end * channels; at += channels)
      for (int64_t c = 0; c < channels; ++c) dx[at + c] = p[c] * dy[at + c] - rr[c] * (x[at + c] - mean[c]) - q[c];
}

// How many fixed blocks of rows a batch norm's sums run in: enough for the threads to share the
// work, few enough (about 64 K values each) that small tensors do not pay for many partials.
int64_t StatBlocks(int64_t rows, int64_t channels) {
  return std::max<int64_t>(1, std::min<int64_t>({rows, 64, rows * channels / 65536}));
}

// The [rows, channels] view of an NHWC tensor, checked against a per-channel vector's length.
tensorflow::Status ChannelsOf(const Tensor& x, const Tensor& v, const char* name, int64_t* rows, int64_t* channels) {
  if (x.dims() < 1) return tensorflow::errors::InvalidArgument("x must have a channel axis");
  *channels = x.dim_size(x.dims() - 1);
  *rows = *channels == 0 ? 0 : x.NumElements() / *channels;
  if (v.dims() != 1 || v.dim_size(0) != *channels)
    return tensorflow::errors::InvalidArgument(name, " must be a vector of ", *channels, " values, got shape ",
                                               v.shape().DebugString());
  return tensorflow::OkStatus();
}

// CnnBatchNorm(x, scale, offset, mean_avg, var_avg) -> (y, new mean_avg, new var_avg, batch mean,
// batch 1/sqrt(variance + epsilon)): training-mode batch normalisation over all but the last axis,
// the moving averages moved as Keras moves them (avg - (avg - batch) * rate, the batch's plain
// variance), and with `relu` the ReLU that follows, in the same pass that writes y.
class CnnBatchNormOp : public OpKernel {
 public:
  explicit CnnBatchNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rate", &rate_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("relu", &relu_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    int64_t rows = 0, C = 0;
    for (int i = 1; i < 5; ++i) OP_REQUIRES_OK(ctx, ChannelsOf(x, ctx->input(i), kInputNames[i], &rows, &C));
    OP_REQUIRES(ctx, rows >= 1, tensorflow::errors::InvalidArgument("batch norm needs at least one value per channel"));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    std::vector<float*> vec(4);
    for (int i = 0; i < 4; ++i) {
      Tensor* t = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i + 1, tensorflow::TensorShape({C}), &t));
      vec[i] = t->flat<float>().data();
    }
    const float* in = x.flat<float>().data();
    const int64_t blocks = StatBlocks(rows, C);
    std::vector<double> sums(2 * C);
    SumOverBlocks(ctx, blocks, 2 * C, (rows / blocks + 1) * C * 4, sums.data(), [&](int64_t b, double* acc) {
      std::vector<float> scratch(2 * C);
      MomentRows(in, in, acc, acc + C, scratch.data(), scratch.data() + C, rows * b / blocks, rows * (b + 1) / blocks, C);
    });
    const float* scale = ctx->input(1).flat<float>().data();
    const float* offset = ctx->input(2).flat<float>().data();
    const float* mean_avg = ctx->input(3).flat<float>().data();
    const float* var_avg = ctx->input(4).flat<float>().data();
    std::vector<float> a(C), b(C);
    for (int64_t c = 0; c < C; ++c) {
      const double m1 = sums[c] / rows;
      const double variance = std::max(sums[C + c] / rows - m1 * m1, 0.0);
      const float mean = static_cast<float>(in[c] + m1);
      const float inv_std = static_cast<float>(1.0 / std::sqrt(variance + epsilon_));
      vec[0][c] = mean_avg[c] - (mean_avg[c] - mean) * rate_;
      vec[1][c] = var_avg[c] - (var_avg[c] - static_cast<float>(variance)) * rate_;
      vec[2][c] = mean;
      vec[3][c] = inv_std;
      a[c] = scale[c] * inv_std;
      b[c] = offset[c] - mean * a[c];
    }
    float* out = y->flat<float>().data();
    const float *pa = a.data(), *pb = b.data();
    const bool relu = relu_;
    auto work = [=](int64_t begin, int64_t end) { NormalizeRows(in, pa, pb, out, begin, end, C, relu); };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, rows, C * 2, work);
  }

 private:
  static constexpr const char* kInputNames[5] = {"x", "scale", "offset", "mean_avg", "var_avg"};
  float epsilon_, rate_;
  bool relu_;
};

// CnnBatchNormGrad(dy, x, y, scale, mean, inv_std) -> (dx, dscale, doffset): CnnBatchNorm's
// gradient, from the batch statistics it returned; with `relu`, through its ReLU too (y is then
// its output, else unused and may be empty). Two passes: the per-channel sums, then dx.
class CnnBatchNormGradOp : public OpKernel {
 public:
  explicit CnnBatchNormGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("relu", &relu_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& y = ctx->input(2);
    OP_REQUIRES(ctx, dy.shape() == x.shape() && (!relu_ || y.shape() == x.shape()),
                tensorflow::errors::InvalidArgument("dy, x (and y with relu) must have one shape, got ",
                                                    dy.shape().DebugString(), ", ", x.shape().DebugString(), ", ",
                                                    y.shape().DebugString()));
    int64_t rows = 0, C = 0;
    for (int i = 3; i < 6; ++i) OP_REQUIRES_OK(ctx, ChannelsOf(x, ctx->input(i), kInputNames[i], &rows, &C));
    OP_REQUIRES(ctx, rows >= 1, tensorflow::errors::InvalidArgument("batch norm needs at least one value per channel"));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &dx));
    Tensor *dscale = nullptr, *doffset = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, tensorflow::TensorShape({C}), &dscale));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, tensorflow::TensorShape({C}), &doffset));
    const float* g = dy.flat<float>().data();
    const float* in = x.flat<float>().data();
    const float* f = relu_ ? y.flat<float>().data() : nullptr;
    const float* scale = ctx->input(3).flat<float>().data();
    const float* mean = ctx->input(4).flat<float>().data();
    const float* inv_std = ctx->input(5).flat<float>().data();
    const bool relu = relu_;
    const int64_t blocks = StatBlocks(rows, C);
    std::vector<double> sums(2 * C);
    SumOverBlocks(ctx, blocks, 2 * C, (rows / blocks + 1) * C * 5, sums.data(), [&](int64_t b, double* acc) {
      std::vector<float> scratch(2 * C);
      BatchNormGradSumRows(g, f, in, mean, acc, acc + C, scratch.data(), scratch.data() + C, rows * b / blocks,
                           rows * (b + 1) / blocks, C, relu);
    });
    std::vector<float> p(C), r(C), q(C);
    float* ds = dscale->flat<float>().data();
    float* doff = doffset->flat<float>().data();
    for (int64_t c = 0; c < C; ++c) {
      const double a = static_cast<double>(scale[c]) * inv_std[c];
      p[c] = static_cast<float>(a);
      q[c] = static_cast<float>(a * sums[c] / rows);
      r[c] = static_cast<float>(a * inv_std[c] * inv_std[c] * sums[C + c] / rows);
      ds[c] = static_cast<float>(sums[C + c] * inv_std[c]);
      doff[c] = static_cast<float>(sums[c]);
    }
    float* out = dx->flat<float>().data();
    const float *pp = p.data(), *pr = r.data(), *pq = q.data();
    auto work = [=](int64_t begin, int64_t end) { BatchNormGradRows(g, f, in, mean, pp, pr, pq, out, begin, end, C, relu); };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, rows, C * 5, work);
  }

 private:
  static constexpr const char* kInputNames[6] = {"dy", "x", "y", "scale", "mean", "inv_std"};
  bool relu_;
};

// CnnAddRelu(a, b) -> max(a + b, 0), one pass (a residual block's end). Its gradient is ReluGrad.
// y may be a's or b's buffer (forwarded), so none is __restrict__.
__attribute__((target_clones("avx512f", "avx2", "default"))) void AddReluRange(const float* a, const float* b, float* y,
                                                                             int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) y[i] = std::max(a[i] + b[i], 0.0f);
}

class CnnAddReluOp : public OpKernel {
 public:
  explicit CnnAddReluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& b = ctx->input(1);
    OP_REQUIRES(ctx, a.shape() == b.shape(),
                tensorflow::errors::InvalidArgument("a and b must have one shape, got ", a.shape().DebugString(), " and ",
                                                    b.shape().DebugString()));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0, 1}, 0, a.shape(), &y));
    const float* pa = a.flat<float>().data();
    const float* pb = b.flat<float>().data();
    float* out = y->flat<float>().data();
    auto work = [=](int64_t begin, int64_t end) { AddReluRange(pa, pb, out, begin, end); };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, a.NumElements(), 2, work);
  }
};

}  // namespace

REGISTER_OP("CnnAdam")
    .Input("var: N * float")
    .Input("m: N * float")
    .Input("v: N * float")
    .Input("grad: N * float")
    .Input("beta_powers: float")
    .Output("new_var: N * float")
    .Output("new_m: N * float")
    .Output("new_v: N * float")
    .Attr("N: int >= 1")
    .Attr("lr: float")
    .Attr("beta1: float")
    .Attr("beta2: float")
    .Attr("epsilon: float");

REGISTER_KERNEL_BUILDER(Name("CnnAdam").Device(tensorflow::DEVICE_CPU), CnnAdamOp);

REGISTER_OP("CnnMaxPool")
    .Input("x: float")
    .Output("y: float")
    .Output("positions: int32")
    .Attr("ksize: list(int)")
    .Attr("strides: list(int)")
    .Attr("padding: string")
    .Attr("relu_input: bool = false");

REGISTER_KERNEL_BUILDER(Name("CnnMaxPool").Device(tensorflow::DEVICE_CPU), CnnMaxPoolOp);

REGISTER_OP("CnnMaxPoolGrad")
    .Input("dy: float")
    .Input("positions: int32")
    .Input("input_shape: int32")
    .Output("dx: float")
    .Output("sums: float")
    .Attr("ksize: list(int)")
    .Attr("strides: list(int)")
    .Attr("padding: string");

REGISTER_KERNEL_BUILDER(Name("CnnMaxPoolGrad").Device(tensorflow::DEVICE_CPU), CnnMaxPoolGradOp);

REGISTER_OP("CnnReluBiasGrad")
    .Input("dy: float")
    .Input("y: float")
    .Output("dz: float")
    .Output("db: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->Vector(c->Dim(c->input(0), -1)));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CnnReluBiasGrad").Device(tensorflow::DEVICE_CPU), CnnReluBiasGradOp);

REGISTER_OP("CnnSquaredNorm")
    .Input("x: N * float")
    .Output("y: float")
    .Attr("N: int >= 1")
    .SetShapeFn(tensorflow::shape_inference::ScalarShape);

REGISTER_KERNEL_BUILDER(Name("CnnSquaredNorm").Device(tensorflow::DEVICE_CPU), CnnSquaredNormOp);

REGISTER_OP("CnnDropout")
    .Input("x: float")
    .Input("seed: int32")
    .Output("y: float")
    .Attr("rate: float")
    .SetShapeFn(tensorflow::shape_inference::UnchangedShape);

REGISTER_KERNEL_BUILDER(Name("CnnDropout").Device(tensorflow::DEVICE_CPU), CnnDropoutOp);

REGISTER_OP("CnnDropoutReluGrad")
    .Input("dy: float")
    .Input("seed: int32")
    .Input("y: float")
    .Output("dx: float")
    .Output("sums: float")
    .Attr("rate: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->Vector(c->Dim(c->input(0), -1)));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CnnDropoutReluGrad").Device(tensorflow::DEVICE_CPU), CnnDropoutReluGradOp);

REGISTER_OP("CnnBatchNorm")
    .Input("x: float")
    .Input("scale: float")
    .Input("offset: float")
    .Input("mean_avg: float")
    .Input("var_avg: float")
    .Output("y: float")
    .Output("new_mean_avg: float")
    .Output("new_var_avg: float")
    .Output("mean: float")
    .Output("inv_std: float")
    .Attr("epsilon: float")
    .Attr("rate: float")
    .Attr("relu: bool")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      for (int i = 1; i < 5; ++i) c->set_output(i, c->input(1));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CnnBatchNorm").Device(tensorflow::DEVICE_CPU), CnnBatchNormOp);

REGISTER_OP("CnnBatchNormGrad")
    .Input("dy: float")
    .Input("x: float")
    .Input("y: float")
    .Input("scale: float")
    .Input("mean: float")
    .Input("inv_std: float")
    .Output("dx: float")
    .Output("dscale: float")
    .Output("doffset: float")
    .Attr("relu: bool")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(3));
      c->set_output(2, c->input(3));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CnnBatchNormGrad").Device(tensorflow::DEVICE_CPU), CnnBatchNormGradOp);

REGISTER_OP("CnnAddRelu")
    .Input("a: float")
    .Input("b: float")
    .Output("y: float")
    .SetShapeFn(tensorflow::shape_inference::UnchangedShape);

REGISTER_KERNEL_BUILDER(Name("CnnAddRelu").Device(tensorflow::DEVICE_CPU), CnnAddReluOp);

// Loaded with process.dlopen: Node looks for this well-known N-API entry point and is content with
// a module that exports nothing.
extern "C" __attribute__((visibility("default"))) void* napi_register_module_v1(void* /*env*/, void* exports) {
  return exports;
}
