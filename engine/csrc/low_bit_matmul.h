// Matmuls of a few rows by int8 weights with AVX2 (engine/csrc/low_bit_matmul.cpp).
#pragma once

#include <ATen/ATen.h>

namespace engine_native {

// True where the CPU has AVX2 and FMA, which int8_rows needs.
bool fast_kernels();

// x (M, K) floats -> (M, N) float32 by int8 weights (N, K) with one bfloat16 scale a row (N,); K a multiple of 32.
at::Tensor int8_rows(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scales);

// int8_rows, then each row's outputs within relative * |best| + absolute of its best scored again from the float
// activations: weight rows times float_scales (N,) float32.
at::Tensor int8_logits(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scales,
                       const at::Tensor& float_scales, double relative, double absolute);

}  // namespace engine_native
