#include "model/config.h"
// Placeholder: implementation lands in a following commit.
