#include "kernels/cpu/layer_norm.h"
// Placeholder: implementation lands in a following commit.
