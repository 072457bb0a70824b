// Matmuls of a few rows by int8 weights on a CPU with AVX2, as llama.cpp multiplies its Q8_0 weights: each row of
// activations is rounded to int8 per block of 32 inputs (a float32 scale a block), and blocks are multiplied in
// integers. Built with engine/csrc/one_token_step.cpp by engine/native_step.py, and called as
//
//     torch.ops.engine_native.fast_kernels()                     # True where the CPU has AVX2
//     y = torch.ops.engine_native.int8_rows(x, weight, scales)   # x (M, K) -> (M, N) float32
//     logits = torch.ops.engine_native.int8_logits(x, weight, scales, float_scales, relative, absolute)
//
// int8_logits is int8_rows with each row's near-best outputs (within relative * |best| + absolute of it) scored
// again from the float activations (engine/quantize.py Int8Head), in one call instead of ~10 tensor operations.
//
// with the weights of engine/quantize.py's Int8Linear: weight (N, K) int8 and one bfloat16 scale a row,
// w = weight * scale. On SmolLM2's output head (49152 x 576) one row took ~1.06 ms on one core here against
// 1.6-2.0 ms for torch._weight_int8pack_mm on two. Where the CPU lacks AVX2 the callers keep PyTorch's kernel.

#include "low_bit_matmul.h"

#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ENGINE_HAS_X86 1
#define ENGINE_AVX2 __attribute__((target("avx2,fma")))
#else
#define ENGINE_HAS_X86 0
#endif

namespace engine_native {

namespace {

constexpr int64_t kBlock = 32;  // inputs sharing an activation scale
constexpr int64_t kTile = 4;    // activation rows multiplied by one weight row while its block is in registers

// Activation rows rounded to int8 per block of kBlock inputs: x[m, i] ~ q[m, i] * scale[m, g] for i in block g.
struct QuantizedRows {
  at::Tensor q;      // (M, K) int8
  at::Tensor scale;  // (M, K / kBlock) float32
};

QuantizedRows quantize_rows(const at::Tensor& x) {
  at::Tensor xf = x.to(at::kFloat).contiguous();
  const int64_t M = xf.size(0), K = xf.size(1), G = K / kBlock;
  QuantizedRows rows{at::empty({M, K}, xf.options().dtype(at::kChar)), at::empty({M, G}, xf.options())};
  const float* xp = xf.data_ptr<float>();
  int8_t* qp = rows.q.data_ptr<int8_t>();
  float* sp = rows.scale.data_ptr<float>();
  for (int64_t block = 0; block < M * G; ++block) {  // block = m * G + g: inputs block * kBlock onwards
    const float* source = xp + block * kBlock;
    float largest = 0;
    for (int64_t i = 0; i < kBlock; ++i) largest = std::max(largest, std::abs(source[i]));
    const float scale = largest / 127.0f, inverse = largest > 0 ? 127.0f / largest : 0.0f;
    for (int64_t i = 0; i < kBlock; ++i) qp[block * kBlock + i] = int8_t(std::nearbyint(source[i] * inverse));
    sp[block] = scale;
  }
  return rows;
}

#if ENGINE_HAS_X86

ENGINE_AVX2 inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int32 partial sums of products of 32 unsigned bytes by 32 signed bytes (pairs fit int16: 2 * 128 * 127)
ENGINE_AVX2 inline __m256 products(__m256i unsigned_bytes, __m256i signed_bytes) {
  const __m256i pairs = _mm256_maddubs_epi16(unsigned_bytes, signed_bytes);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// y[m + r, n] for every weight row n and activation rows m + r, r < R, on the calling thread (engine/native_step.py
// says why not OpenMP). Blocks go alternately into two sums a row, so that consecutive multiply-adds do not wait
// for each other.
template <int R>
ENGINE_AVX2 void int8_tile(const int8_t* weight, const c10::BFloat16* scales, const QuantizedRows& x, int64_t m,
                           int64_t K, int64_t N, float* y) {
  const int64_t G = K / kBlock;
  const int8_t* xq = x.q.data_ptr<int8_t>() + m * K;
  const float* xs = x.scale.data_ptr<float>() + m * G;
  for (int64_t n = 0; n < N; ++n) {
    const int8_t* row = weight + n * K;
    __m256 even[R], odd[R];
    for (int r = 0; r < R; ++r) even[r] = _mm256_setzero_ps(), odd[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + g * kBlock));
      const __m256i magnitude = _mm256_sign_epi8(w, w);  // |w| as unsigned bytes, the sign moved onto q
      for (int r = 0; r < R; ++r) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + r * K + g * kBlock));
        const __m256 block = products(magnitude, _mm256_sign_epi8(q, w));
        const __m256 scale = _mm256_broadcast_ss(&xs[r * G + g]);
        if (g % 2 == 0) {
          even[r] = _mm256_fmadd_ps(scale, block, even[r]);
        } else {
          odd[r] = _mm256_fmadd_ps(scale, block, odd[r]);
        }
      }
    }
    const float scale = float(scales[n]);
    for (int r = 0; r < R; ++r) y[(m + r) * N + n] = horizontal_sum(_mm256_add_ps(even[r], odd[r])) * scale;
  }
}

#endif

void check_rows(const at::Tensor& x, int64_t K, const char* what) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K && x.device().is_cpu() && x.is_floating_point(), what,
              ": x must be (M, ", K, ") floats on the CPU");
  TORCH_CHECK(K % kBlock == 0, what, ": the inputs must be a multiple of ", kBlock);
  TORCH_CHECK(fast_kernels(), what, ": this CPU lacks AVX2 or FMA");
}

}  // namespace

bool fast_kernels() {
#if ENGINE_HAS_X86
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
#else
  return false;
#endif
}

at::Tensor int8_rows(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scales) {
  const int64_t N = weight.size(0), K = weight.size(1);
  check_rows(x, K, "int8_rows");
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.is_contiguous(), "int8_rows: weight must be contiguous int8");
  TORCH_CHECK(scales.scalar_type() == at::kBFloat16 && scales.is_contiguous() && scales.numel() == N,
              "int8_rows: scales must be (N,) bfloat16");
  const int64_t M = x.size(0);
  at::Tensor y = at::empty({M, N}, x.options().dtype(at::kFloat));
#if ENGINE_HAS_X86
  const QuantizedRows rows = quantize_rows(x);
  const int8_t* wp = weight.data_ptr<int8_t>();
  const c10::BFloat16* sp = scales.data_ptr<c10::BFloat16>();
  float* yp = y.data_ptr<float>();
  for (int64_t m = 0; m < M; m += kTile) {
    switch (std::min(kTile, M - m)) {
      case 1: int8_tile<1>(wp, sp, rows, m, K, N, yp); break;
      case 2: int8_tile<2>(wp, sp, rows, m, K, N, yp); break;
      case 3: int8_tile<3>(wp, sp, rows, m, K, N, yp); break;
      default: int8_tile<4>(wp, sp, rows, m, K, N, yp); break;
    }
  }
#endif
  return y;
}

at::Tensor int8_logits(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scales,
                       const at::Tensor& float_scales, double relative, double absolute) {
  at::Tensor logits = int8_rows(x, weight, scales);  // (M, N)
  const int64_t M = logits.size(0), N = logits.size(1), K = weight.size(1);
  TORCH_CHECK(float_scales.scalar_type() == at::kFloat && float_scales.is_contiguous() && float_scales.numel() == N,
              "int8_logits: float_scales must be (N,) float32");
  at::Tensor xf = x.to(at::kFloat).contiguous();
  const float* xp = xf.data_ptr<float>();
  const int8_t* wp = weight.data_ptr<int8_t>();
  const float* fp = float_scales.data_ptr<float>();
  float* lp = logits.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m) {
    float* row = lp + m * N;
    const float best = *std::max_element(row, row + N);
    const float near = best - std::abs(best) * float(relative) - float(absolute);
    const float* input = xp + m * K;
    for (int64_t n = 0; n < N; ++n) {
      if (!(row[n] >= near)) continue;
      double exact = 0;  // the float activations by the int8 row: no rounding of the activations
      for (int64_t k = 0; k < K; ++k) exact += double(input[k]) * wp[n * K + k];
      row[n] = float(exact * fp[n]);
    }
  }
  return logits;
}

}  // namespace engine_native

TORCH_LIBRARY_FRAGMENT(engine_native, m) {
  m.def("fast_kernels", &engine_native::fast_kernels);
  m.def("int8_rows", &engine_native::int8_rows);
  m.def("int8_logits", &engine_native::int8_logits);
}
