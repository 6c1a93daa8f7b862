#include "kernels/cpu/gemm.h"
// Placeholder: implementation lands in a following commit.
