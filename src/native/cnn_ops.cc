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
// CnnReluBiasGrad(dy, y) -> (dz, db): the gradient through a ReLU and a bias add, in one pass over
// dy: dz = dy where y > 0 (else 0), db = dz summed over all but the last (channel) axis. y is the
// ReLU's output, so nothing but the layer's output is kept for it.
//
// CnnMovingAverages(mean_avg, var_avg, mean, bessel_var) -> both averages moved towards the batch's
// statistics as Keras moves them, avg - (avg - batch) * rate with rate = 1 - momentum, the variance
// scaled back from Bessel's correction to the plain one: one op per batch-norm layer and step
// instead of seven.
//
// CnnSquaredNorm(x_1..x_N) -> sum of all squares (folded in double), one read pass, no temporaries:
// the trainer skips an update whose gradient norm is not finite.
#include <algorithm>
#include <cstdint>
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

// One shard of the dropout: vectorised for the CPU it runs on (the hash is 32-bit multiplies).
__attribute__((target_clones("avx512f", "avx2", "default"))) void DropoutShard(
    const float* in, float* out, int64_t begin, int64_t end, uint32_t offset, uint32_t k1, uint32_t k2,
    uint32_t threshold, float scale) {
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t h = Mix32(Mix32((static_cast<uint32_t>(i) + offset) ^ k1) + k2);
    out[i] = h >= threshold ? in[i] * scale : 0.0f;
  }
}

class CnnDropoutOp : public OpKernel {
 public:
  explicit CnnDropoutOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float rate;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rate", &rate));
    OP_REQUIRES(ctx, rate >= 0.0f && rate < 1.0f,
                tensorflow::errors::InvalidArgument("rate must be in [0, 1), got ", rate));
    // Keep an element when its 32-bit hash is >= rate * 2^32.
    threshold_ = static_cast<uint32_t>(static_cast<double>(rate) * 4294967296.0);
    scale_ = 1.0f / (1.0f - rate);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& seed = ctx->input(1);
    OP_REQUIRES(ctx, seed.NumElements() == 2 || seed.NumElements() == 3,
                tensorflow::errors::InvalidArgument("seed must have 2 or 3 elements, got ", seed.NumElements()));
    const auto s = seed.flat<int32_t>();
    const uint32_t offset = seed.NumElements() == 3 ? static_cast<uint32_t>(s(2)) : 0;
    OP_REQUIRES(ctx, static_cast<uint64_t>(offset) + static_cast<uint64_t>(x.NumElements()) <= 0x100000000ULL,
                tensorflow::errors::InvalidArgument("element offset + size past 2^32 in CnnDropout"));
    const uint32_t k1 = Mix32(static_cast<uint32_t>(s(0)) ^ 0x9e3779b9U);
    const uint32_t k2 = Mix32(static_cast<uint32_t>(s(1)) + k1);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    const uint32_t threshold = threshold_;
    const float scale = scale_;
    auto work = [=](int64_t begin, int64_t end) { DropoutShard(in, out, begin, end, offset, k1, k2, threshold, scale); };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, x.NumElements(), 8, work);
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

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& y = ctx->input(1);
    OP_REQUIRES(ctx, dy.shape() == y.shape(),
                tensorflow::errors::InvalidArgument("dy and y must have the same shape, got ",
                                                    dy.shape().DebugString(), " and ", y.shape().DebugString()));
    OP_REQUIRES(ctx, dy.dims() >= 1, tensorflow::errors::InvalidArgument("dy must have a channel axis"));
    const int64_t channels = dy.dim_size(dy.dims() - 1);
    Tensor* dz = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, dy.shape(), &dz));
    Tensor* db = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, tensorflow::TensorShape({channels}), &db));
    float* bias = db->flat<float>().data();
    std::fill(bias, bias + channels, 0.0f);
    if (channels == 0 || dy.NumElements() == 0) return;
    const int64_t rows = dy.NumElements() / channels;
    const float* g = dy.flat<float>().data();
    const float* f = y.flat<float>().data();
    float* o = dz->flat<float>().data();
    // Fixed blocks of rows, each with its own partial sum: the result does not depend on how the
    // thread pool schedules them.
    const int64_t blocks = std::min<int64_t>(rows, 64);
    std::vector<float> partial(blocks * channels, 0.0f);
    float* parts = partial.data();
    auto work = [=](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b)
        ReluBiasGradRows(g, f, o, parts + b * channels, rows * b / blocks, rows * (b + 1) / blocks, channels);
    };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, blocks, (rows / blocks + 1) * channels * 4, work);
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t c = 0; c < channels; ++c) bias[c] += parts[b * channels + c];
  }
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

class CnnMovingAveragesOp : public OpKernel {
 public:
  explicit CnnMovingAveragesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rate", &rate_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("variance_scale", &variance_scale_));
  }

  void Compute(OpKernelContext* ctx) override {
    const int64_t n = ctx->input(0).NumElements();
    for (int i = 1; i < 4; ++i)
      OP_REQUIRES(ctx, ctx->input(i).NumElements() == n,
                  tensorflow::errors::InvalidArgument("input ", i, " has ", ctx->input(i).NumElements(),
                                                      " values, expected ", n));
    const float* stats[4];
    for (int i = 0; i < 4; ++i) stats[i] = ctx->input(i).flat<float>().data();
    for (int out = 0; out < 2; ++out) {
      Tensor* y = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(out, ctx->input(out).shape(), &y));
      float* avg = y->flat<float>().data();
      const float* old = stats[out];
      const float* batch = stats[out + 2];
      const float scale = out == 0 ? 1.0f : variance_scale_;
      for (int64_t i = 0; i < n; ++i) avg[i] = old[i] - (old[i] - batch[i] * scale) * rate_;
    }
  }

 private:
  float rate_;
  float variance_scale_;
};

}  // namespace

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

REGISTER_OP("CnnMovingAverages")
    .Input("mean_avg: float")
    .Input("var_avg: float")
    .Input("mean: float")
    .Input("variance: float")
    .Output("new_mean_avg: float")
    .Output("new_var_avg: float")
    .Attr("rate: float")
    .Attr("variance_scale: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("CnnMovingAverages").Device(tensorflow::DEVICE_CPU), CnnMovingAveragesOp);

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

// Loaded with process.dlopen: Node looks for this well-known N-API entry point and is content with
// a module that exports nothing.
extern "C" __attribute__((visibility("default"))) void* napi_register_module_v1(void* /*env*/, void* exports) {
  return exports;
}
