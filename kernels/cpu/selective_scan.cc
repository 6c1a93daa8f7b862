#include "kernels/cpu/selective_scan.h"
// Placeholder: implementation lands in a following commit.
