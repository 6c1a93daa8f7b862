#include "kernels/cpu/causal_conv1d.h"
// Placeholder: implementation lands in a following commit.
