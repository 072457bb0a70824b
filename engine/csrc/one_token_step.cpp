// A decode step on a CPU, in C++: engine/one_token.py's one_token_step without Python's cost per
// operation. Built on first use by engine/native_step.py (torch.utils.cpp_extension) and called as
//
//     plan = torch.classes.engine_native.OneTokenPlan(heads, kv_heads, head_dim, eps, cos, sin, tensors, kinds)
//     h = plan.step(h, positions, keys, values)    # h (B, C) float32, positions (B,) -> (B, C) float32
//
// The plan holds the layers' weights (the tensors themselves, so in-place changes are seen); each
// step writes each row's keys and values at its position of the layer's cache (B, KV, capacity, D).
// The matmuls are PyTorch's own kernels (4-bit, dense) or, for int8 weights on a CPU with AVX2,
// engine/csrc/low_bit_matmul.cpp's; the norms, the rotation, the cache write and attention over one
// query are loops here, in float32, on the calling thread (engine/native_step.py says why not OpenMP).

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "low_bit_matmul.h"

namespace {

enum Kind : int64_t { kDense = 0, kInt8 = 1, kInt4 = 2 };
constexpr int64_t kGroup = 32;  // inputs sharing a 4-bit scale and offset (engine/quantize.py GROUP)

// One linear layer as engine/quantize.py packs it, or a plain nn.Linear (kDense).
struct Linear {
  int64_t kind = kDense, max_rows = 0;
  at::Tensor packed, scales, dense, bias;  // kInt8: int8 weight, scales; kInt4: packed codes, scales and zeros

  // x (M, K) float32 -> (M, N) float32
  at::Tensor rows(const at::Tensor& x) const {
    at::Tensor y;
    if (kind == kDense) {
      y = at::linear(x.to(dense.scalar_type()), dense, bias);
    } else {
      if (dense.defined() && x.size(0) > max_rows) {
        y = at::linear(x.to(at::kBFloat16), dense);
      } else if (kind == kInt8 && engine_native::fast_kernels() && packed.size(1) % 32 == 0) {
        y = engine_native::int8_rows(x, packed, scales);
      } else if (kind == kInt8 && packed.size(1) % 16 != 0) {  // PyTorch's kernel reads 16 inputs at a time
        y = at::linear(x.to(at::kBFloat16), packed.to(at::kBFloat16) * scales.unsqueeze(1));
      } else if (kind == kInt8) {
        y = at::_weight_int8pack_mm(x.to(at::kBFloat16), packed, scales);
      } else {
        y = at::_weight_int4pack_mm_for_cpu(x.to(at::kBFloat16), packed, kGroup, scales);
      }
      if (bias.defined()) y = y + bias;
    }
    return y.to(at::kFloat).contiguous();
  }
};

struct Layer {
  at::Tensor attention_norm, ffn_norm;
  Linear qkv, out, gate_up, down;
};

// x (B, C) float32 -> x / rms(x) * weight, float32
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const int64_t B = x.size(0), C = x.size(1);
  at::Tensor w = weight.to(at::kFloat).contiguous();
  at::Tensor y = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    const float* row = xp + b * C;
    double squares = 0;
    for (int64_t c = 0; c < C; ++c) squares += double(row[c]) * row[c];
    const float scale = float(1.0 / std::sqrt(squares / C + eps));
    for (int64_t c = 0; c < C; ++c) yp[b * C + c] = row[c] * scale * wp[c];
  }
  return y;
}

template <typename T>
void write_cache(at::Tensor& cache, const float* source, int64_t b, int64_t kv_head, int64_t position, int64_t D) {
  // cache (B, KV, capacity, D): row b, head kv_head, slot `position` <- source (D,)
  T* slot = cache.data_ptr<T>() + ((b * cache.size(1) + kv_head) * cache.size(2) + position) * D;
  for (int64_t d = 0; d < D; ++d) slot[d] = T(source[d]);
}

// The attention loops are compiled for x86-64-v3 (AVX2, FMA) as well as for any x86-64 and picked when the
// library loads (GCC's function multiversioning), so a build copied to an older CPU still runs.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ENGINE_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ENGINE_VECTOR_CLONES
#endif
#define ENGINE_INLINE inline __attribute__((always_inline))

// sum of a[d] * b[d] over d < D, in 8 independent partial sums the compiler turns into vector lanes
ENGINE_INLINE float dot(const float* a, const float* b, int64_t D) {
  float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    for (int j = 0; j < 8; ++j) partial[j] += a[d + j] * b[d + j];
  }
  float total = 0;
  for (; d < D; ++d) total += a[d] * b[d];
  for (int j = 0; j < 8; ++j) total += partial[j];
  return total;
}

template <typename T>
ENGINE_INLINE void to_float(const T* source, float* target, int64_t D) {
  for (int64_t d = 0; d < D; ++d) target[d] = float(source[d]);
}

// scores (G, stride) <- q (G, D) . keys[l] / sqrt(D) for slots l <= last, -inf after (up to `stride`)
template <typename T>
ENGINE_INLINE void score_keys(const float* q, const T* keys, int64_t last, int64_t G, int64_t D, float* scores,
                              int64_t stride) {
  float row[256];
  const float scale = 1.0f / std::sqrt(float(D));
  for (int64_t l = 0; l <= last; ++l) {
    to_float(keys + l * D, row, D);
    for (int64_t g = 0; g < G; ++g) scores[g * stride + l] = dot(q + g * D, row, D) * scale;
  }
  for (int64_t g = 0; g < G; ++g) {
    std::fill(scores + g * stride + last + 1, scores + (g + 1) * stride, -std::numeric_limits<float>::infinity());
  }
}

// out (G, D) <- sum over slots l <= last of weights (G, stride)[l] * values[l]
template <typename T>
ENGINE_INLINE void mix_values(const float* weights, const T* values, int64_t last, int64_t G, int64_t D, float* out,
                              int64_t stride) {
  float row[256];
  std::fill(out, out + G * D, 0.0f);
  for (int64_t l = 0; l <= last; ++l) {
    to_float(values + l * D, row, D);
    for (int64_t g = 0; g < G; ++g) {
      const float p = weights[g * stride + l];
      float* o = out + g * D;
      for (int64_t d = 0; d < D; ++d) o[d] += p * row[d];
    }
  }
}

#define ENGINE_ATTENTION_LOOPS(T, suffix)                                                                        \
  ENGINE_VECTOR_CLONES void score_keys_##suffix(const float* q, const T* keys, int64_t last, int64_t G,          \
                                                int64_t D, float* scores, int64_t stride) {                      \
    score_keys<T>(q, keys, last, G, D, scores, stride);                                                          \
  }                                                                                                              \
  ENGINE_VECTOR_CLONES void mix_values_##suffix(const float* weights, const T* values, int64_t last, int64_t G, \
                                                int64_t D, float* out, int64_t stride) {                         \
    mix_values<T>(weights, values, last, G, D, out, stride);                                                     \
  }
ENGINE_ATTENTION_LOOPS(float, float)
ENGINE_ATTENTION_LOOPS(c10::BFloat16, bfloat16)
ENGINE_ATTENTION_LOOPS(c10::Half, half)

// Attention of one new token a row over slots 0..positions[b] of its cache, in float32:
// q (B, H + 2 KV, D) (the queries first), keys and values (B, KV, capacity, D) -> out (B, H * D).
// The loops run per row and key/value head on the calling thread.
template <typename T, typename Score, typename Mix>
void attend(const float* q, const at::Tensor& keys, const at::Tensor& values, const int64_t* positions, int64_t B,
            int64_t H, int64_t KV, int64_t D, float* out, Score score, Mix mix) {
  const int64_t G = H / KV, capacity = keys.size(2);
  const int64_t L = *std::max_element(positions, positions + B) + 1;
  at::Tensor scores = at::empty({B, H, L}, at::kFloat);  // (B, KV * G, L): -inf beyond a row's position
  float* sp = scores.data_ptr<float>();
  const T* kp = keys.data_ptr<T>();
  const T* vp = values.data_ptr<T>();
  for (int64_t index = 0; index < B * KV; ++index) {  // index = b * KV + kv
    const int64_t b = index / KV, kv = index % KV;
    score(q + (b * (H + 2 * KV) + kv * G) * D, kp + index * capacity * D, positions[b], G, D, sp + index * G * L, L);
  }
  at::Tensor weights = at::_softmax(scores, -1, false);  // PyTorch's: vectorized, and split over the cores
  const float* wp = weights.data_ptr<float>();
  for (int64_t index = 0; index < B * KV; ++index) {
    mix(wp + index * G * L, vp + index * capacity * D, positions[index / KV], G, D, out + index * G * D, L);
  }
}

class OneTokenPlan : public torch::CustomClassHolder {
 public:
  // tensors: per layer attention_norm, ffn_norm, then for qkv, out, gate_up, down: packed, scales, dense, bias
  // (None where absent); kinds: per linear its Kind and max_rows.
  OneTokenPlan(int64_t heads, int64_t kv_heads, int64_t head_dim, double eps, at::Tensor cos, at::Tensor sin,
               std::vector<std::optional<at::Tensor>> tensors, std::vector<int64_t> kinds)
      : H_(heads), KV_(kv_heads), D_(head_dim), eps_(eps), cos_(cos.contiguous()), sin_(sin.contiguous()) {
    constexpr int64_t per_layer = 2 + 4 * 4;
    TORCH_CHECK(tensors.size() % per_layer == 0 && kinds.size() == (tensors.size() / per_layer) * 8,
                "OneTokenPlan: tensors and kinds do not describe whole layers");
    TORCH_CHECK(head_dim <= 256 && head_dim % 2 == 0 && kv_heads > 0 && heads % kv_heads == 0,
                "OneTokenPlan: heads must group evenly over key/value heads of an even size up to 256");
    TORCH_CHECK(cos_.scalar_type() == at::kFloat && sin_.scalar_type() == at::kFloat, "rotary tables must be float32");
    auto get = [&](size_t i) { return tensors[i].has_value() ? *tensors[i] : at::Tensor(); };
    for (size_t start = 0, linear = 0; start < tensors.size(); start += per_layer) {
      Layer layer;
      layer.attention_norm = get(start);
      layer.ffn_norm = get(start + 1);
      Linear* linears[] = {&layer.qkv, &layer.out, &layer.gate_up, &layer.down};
      for (int i = 0; i < 4; ++i, ++linear) {
        Linear& l = *linears[i];
        const size_t at = start + 2 + 4 * i;
        l.packed = get(at), l.scales = get(at + 1), l.dense = get(at + 2), l.bias = get(at + 3);
        l.kind = kinds[2 * linear], l.max_rows = kinds[2 * linear + 1];
        TORCH_CHECK(l.dense.defined() || l.kind != kDense, "a dense linear needs its weight");
      }
      layers_.push_back(layer);
    }
  }

  // h (B, C) float32 at positions (B,) int64 -> (B, C) float32; keys[i], values[i] (B, KV, capacity, D)
  at::Tensor step(at::Tensor h, at::Tensor positions, std::vector<at::Tensor> keys, std::vector<at::Tensor> values) {
    c10::InferenceMode guard;
    TORCH_CHECK(keys.size() == layers_.size() && values.size() == layers_.size(), "one cache per layer");
    h = h.to(at::kFloat).contiguous().clone();
    at::Tensor at_ = positions.to(at::kLong).contiguous();
    const int64_t B = h.size(0), H = H_, KV = KV_, D = D_, G = H / KV, half = D / 2;
    const int64_t* pos = at_.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      TORCH_CHECK(pos[b] >= 0 && pos[b] < keys[0].size(2) && pos[b] < cos_.size(0), "position beyond the cache");
    }
    const float* cos = cos_.data_ptr<float>();
    const float* sin = sin_.data_ptr<float>();
    at::Tensor attended = at::empty({B, H * D}, h.options());
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& layer = layers_[i];
      at::Tensor& k = keys[i];
      at::Tensor& v = values[i];
      TORCH_CHECK(k.is_contiguous() && v.is_contiguous() && k.size(0) == B && k.size(1) == KV && k.size(3) == D,
                  "a cache layer must be contiguous (B, KV, capacity, D)");
      at::Tensor qkv = layer.qkv.rows(rms_norm(h, layer.attention_norm, eps_));  // (B, (H + 2KV) D)
      float* q = qkv.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {  // rotate queries and keys by the row's position
        const float* c = cos + pos[b] * half;
        const float* s = sin + pos[b] * half;
        for (int64_t head = 0; head < H + KV; ++head) {
          float* x = q + (b * (H + 2 * KV) + head) * D;
          for (int64_t d = 0; d < half; ++d) {
            const float first = x[d], second = x[d + half];
            x[d] = first * c[d] - second * s[d];
            x[d + half] = second * c[d] + first * s[d];
          }
        }
        for (int64_t kv = 0; kv < KV; ++kv) {
          const float* key = q + (b * (H + 2 * KV) + H + kv) * D;
          const float* value = q + (b * (H + 2 * KV) + H + KV + kv) * D;
          AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, k.scalar_type(), "write_cache", [&] {
            write_cache<scalar_t>(k, key, b, kv, pos[b], D);
            write_cache<scalar_t>(v, value, b, kv, pos[b], D);
          });
        }
      }
      float* y = attended.data_ptr<float>();
      switch (k.scalar_type()) {
        case at::kFloat:
          attend<float>(q, k, v, pos, B, H, KV, D, y, score_keys_float, mix_values_float);
          break;
        case at::kBFloat16:
          attend<c10::BFloat16>(q, k, v, pos, B, H, KV, D, y, score_keys_bfloat16, mix_values_bfloat16);
          break;
        case at::kHalf:
          attend<c10::Half>(q, k, v, pos, B, H, KV, D, y, score_keys_half, mix_values_half);
          break;
        default:
          TORCH_CHECK(false, "the cache must be float32, bfloat16 or float16");
      }
      h.add_(layer.out.rows(attended));
      at::Tensor gate_up = layer.gate_up.rows(rms_norm(h, layer.ffn_norm, eps_));  // (B, 2 hidden)
      const int64_t hidden = gate_up.size(1) / 2;
      at::Tensor gated = at::empty({B, hidden}, h.options());
      const float* gu = gate_up.data_ptr<float>();
      float* gp = gated.data_ptr<float>();
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t j = 0; j < hidden; ++j) {
          const float gate = gu[b * 2 * hidden + j], up = gu[b * 2 * hidden + hidden + j];
          gp[b * hidden + j] = gate / (1.0f + std::exp(-gate)) * up;  // silu(gate) * up
        }
      }
      h.add_(layer.down.rows(gated));
    }
    return h;
  }

 private:
  int64_t H_, KV_, D_;
  double eps_;
  at::Tensor cos_, sin_;  // (max_len, D/2) float32
  std::vector<Layer> layers_;
};

}  // namespace

TORCH_LIBRARY(engine_native, m) {
  m.class_<OneTokenPlan>("OneTokenPlan")
      .def(torch::init<int64_t, int64_t, int64_t, double, at::Tensor, at::Tensor,
                       std::vector<std::optional<at::Tensor>>, std::vector<int64_t>>())
      .def("step", &OneTokenPlan::step);
}
