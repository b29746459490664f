// Fused kernels for training, registered into the TensorFlow runtime that @tensorflow/tfjs-node
// runs on. Loading this library (src/ml/native-library.ts) runs the registrations below; tfjs-node's
// binding then executes the ops by name, like any built-in op.
//
// CnnDropout(x, seed[2]) -> x * mask / (1 - rate), in one pass. The mask is a pure function of
// (seed, element index): a counter-based hash, so the gradient is the same op on dy with the same
// seed (the mask is recomputed, never stored) and a resumed run draws the masks an uninterrupted
// one would have.
#include <cstdint>

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
    const float* in, float* out, int64_t begin, int64_t end, uint32_t k1, uint32_t k2, uint32_t threshold,
    float scale) {
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t h = Mix32(Mix32(static_cast<uint32_t>(i) ^ k1) + k2);
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
    OP_REQUIRES(ctx, seed.NumElements() == 2,
                tensorflow::errors::InvalidArgument("seed must have 2 elements, got ", seed.NumElements()));
    OP_REQUIRES(ctx, x.NumElements() <= 0xffffffffLL,
                tensorflow::errors::InvalidArgument("tensor too large for CnnDropout"));
    const auto s = seed.flat<int32_t>();
    const uint32_t k1 = Mix32(static_cast<uint32_t>(s(0)) ^ 0x9e3779b9U);
    const uint32_t k2 = Mix32(static_cast<uint32_t>(s(1)) + k1);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    const uint32_t threshold = threshold_;
    const float scale = scale_;
    auto work = [=](int64_t begin, int64_t end) { DropoutShard(in, out, begin, end, k1, k2, threshold, scale); };
    auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, x.NumElements(), 8, work);
  }

 private:
  uint32_t threshold_;
  float scale_;
};

}  // namespace

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
